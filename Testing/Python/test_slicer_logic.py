"""SAMIHSMRMLLogic on real MRML nodes (PyPI slicer-core): volume, markups, segmentation."""

import numpy as np
import pytest

from conftest import real_whole_ct, require

slicer = require("slicer", module_level=True)

from SAMIHSSlicer import mrml_nodes as nodes  # noqa: E402
from SAMIHSSlicer.mrml_logic import SAMIHSMRMLLogic  # noqa: E402

from SAMIHSLib.metrics import dice  # noqa: E402
from SAMIHSLib.phantom import oblique_direction  # noqa: E402
from SAMIHSLib.io.volume_io import CTVolume, write_ct  # noqa: E402
from SAMIHSLib.interaction.regions import deepest_point, slice_with_most  # noqa: E402
from SAMIHSLib.interaction.session import changed_extent  # noqa: E402
from mrml_files import load_segmentation, load_volume  # noqa: E402


@pytest.fixture(scope="module")
def logic(lite_model):
    # The test session's embedded model, loaded once for all tests.
    return SAMIHSMRMLLogic(engine="torch", model_loader=lambda spec, device: lite_model)


@pytest.fixture
def scene_with_ct(tmp_path, small_phantom):
    volume = CTVolume(small_phantom.volume_hu, (0.9, 0.9, 5.0), (-110.0, 95.0, -30.0), oblique_direction(10.0))
    path = write_ct(tmp_path / "head_ct.nrrd", volume)
    scene = slicer.vtkMRMLScene()
    node = load_volume(scene, path, "head CT")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Segmentation")
    return scene, node, segmentation, volume


def click_ras(volume, phantom, bleed=0):
    truth = phantom.bleed_mask(bleed)
    k = slice_with_most(truth)
    x, y = deepest_point(truth[k])
    return k, tuple((volume.ijk_to_ras_matrix() @ np.array([x, y, k, 1.0]))[:3])


def add_points(scene, name, points):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    for point in points:
        node.AddControlPoint(*point)
    return node


def test_click_fills_the_segment_other_segments_untouched_and_undo(scene_with_ct, logic, small_phantom):
    scene, volume_node, segmentation_node, volume = scene_with_ct
    assert np.allclose(nodes.ijk_to_ras(volume_node), volume.ijk_to_ras_matrix(), atol=1e-4)
    # A segment the user drew by hand, overlapping the bleed.
    manual_id = segmentation_node.GetSegmentation().AddEmptySegment("manual", "Manual", (0.2, 0.8, 0.2))
    manual = np.zeros(small_phantom.volume_hu.shape, bool)
    k, ras = click_ras(volume, small_phantom)
    truth = small_phantom.bleed_mask(0)
    rows, cols = np.nonzero(truth[k])
    manual[k, rows.min():rows.min() + 4, :] = True
    nodes.write_segment_region(segmentation_node, manual_id, volume_node, manual,
                              (slice(0, manual.shape[0]), slice(0, manual.shape[1]), slice(0, manual.shape[2])))
    manual_before = nodes.read_segment_mask(segmentation_node, manual_id, volume_node)
    assert np.array_equal(manual_before, manual)

    positive = add_points(scene, "positive", [ras])
    segment_id, update = logic.segment_from_points(volume_node, segmentation_node, positive)
    mask = nodes.read_segment_mask(segmentation_node, segment_id, volume_node)
    assert dice(mask, truth & ~manual) >= 0.85
    assert not (mask & manual).any(), "the hand-drawn segment lost voxels"
    assert np.array_equal(nodes.read_segment_mask(segmentation_node, manual_id, volume_node), manual_before)
    assert update.volume_ml == pytest.approx(mask.sum() * 0.9 * 0.9 * 5.0 / 1000.0, rel=1e-6)
    # the extent written is the box of what changed (the new bleed), not the volume
    assert tuple(update.extent) == changed_extent(np.zeros_like(mask), mask)
    # the report and status the panel and the web page show describe this segment
    report = logic.report(volume_node)
    assert report.filled_slices == [int(z) for z in np.nonzero(mask.any(axis=(1, 2)))[0]]
    assert report.measurements["volume_ml"] == pytest.approx(update.volume_ml, rel=1e-6)
    assert report.predicted_iou and set(report.predicted_iou) <= set(report.filled_slices)
    status = logic.status(volume_node)
    assert status[0].startswith(f"Hemorrhage: {update.volume_ml:.2f} mL") and "Bleed on axial slices" in status[1]

    logic.undo(volume_node, segmentation_node, segment_id)
    assert not nodes.read_segment_mask(segmentation_node, segment_id, volume_node).any()
    assert logic.status(volume_node) == ["No slice segmented yet."] and not logic.report(volume_node).filled_slices
    logic.undo(volume_node, segmentation_node, segment_id, redo=True)
    assert np.array_equal(nodes.read_segment_mask(segmentation_node, segment_id, volume_node), mask)


def test_hand_edits_in_the_segment_are_respected(scene_with_ct, logic, small_phantom):
    scene, volume_node, segmentation_node, volume = scene_with_ct
    k, ras = click_ras(volume, small_phantom)
    segment_id, _ = logic.segment_from_points(volume_node, segmentation_node, add_points(scene, "p", [ras]))
    mask = nodes.read_segment_mask(segmentation_node, segment_id, volume_node)
    edited_slice = k + 1
    assert mask[edited_slice].any()
    mask[edited_slice] = False
    mask[edited_slice, 5:9, 5:9] = True  # as if drawn in the Segment Editor
    nodes.write_segment_region(segmentation_node, segment_id, volume_node, mask,
                              (slice(edited_slice, edited_slice + 1), slice(0, mask.shape[1]), slice(0, mask.shape[2])))
    logic.propagate(volume_node, segmentation_node, segment_id, slice_index=k)
    after = nodes.read_segment_mask(segmentation_node, segment_id, volume_node)
    assert np.array_equal(after[edited_slice], mask[edited_slice])


def test_segmentation_saved_as_seg_nrrd_reloads_identical(tmp_path, scene_with_ct, logic, small_phantom):
    scene, volume_node, segmentation_node, volume = scene_with_ct
    _, ras = click_ras(volume, small_phantom)
    segment_id, _ = logic.segment_from_points(volume_node, segmentation_node, add_points(scene, "p", [ras]),
                                              propagate=False)
    expected = nodes.read_segment_mask(segmentation_node, segment_id, volume_node)
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(tmp_path / "hemorrhage.seg.nrrd"))
    assert storage.WriteData(segmentation_node)

    fresh = slicer.vtkMRMLScene()
    volume_again = load_volume(fresh, tmp_path / "head_ct.nrrd", "CT")
    reloaded = load_segmentation(fresh, tmp_path / "hemorrhage.seg.nrrd")
    reloaded_id = reloaded.GetSegmentation().GetSegmentIdBySegmentName("Hemorrhage")
    assert np.array_equal(nodes.read_segment_mask(reloaded, reloaded_id, volume_again), expected)


@pytest.mark.real_data
def test_segment_all_loaded_volumes_gives_each_detected_region_its_own_segment(tmp_path, logic):
    """Real CTs: the bleed head gets a segmentation node with one segment per detected region (named
    with its score, so a reader can delete one) on its bleed; the bleed-free head gets no node and
    "no bleed found" with the detector's highest score."""
    scene = slicer.vtkMRMLScene()
    bleed_ct, truth = real_whole_ct("075", slice(12, 34))
    load_volume(scene, write_ct(tmp_path / "bleed.nrrd", bleed_ct), "bleed head")
    free_ct, _ = real_whole_ct("056", slice(10, 30))
    load_volume(scene, write_ct(tmp_path / "free.nrrd", free_ct), "bleed-free head")
    progress = []
    results = {r["volume"]: r for r in logic.segment_all_loaded_volumes(
        scene, progress=lambda d, t, m: progress.append((d, t)))}
    assert [r["error"] for r in results.values()] == ["", ""]
    free = results["bleed-free head"]
    assert free["segmentation"] is None and free["detection"].startswith("no bleed found: highest detector score")
    found = results["bleed head"]
    segmentation = found["segmentation"].GetSegmentation()
    assert segmentation.GetNumberOfSegments() == len(found["regions"]) >= 1
    assert segmentation.GetNthSegment(0).GetName() == f"Hemorrhage 1 (score {found['regions'][0]['score']:.3f})"
    volume_node = nodes.nodes_of_class(scene, "vtkMRMLScalarVolumeNode")[0]
    joined = np.logical_or.reduce([nodes.read_segment_mask(found["segmentation"], segmentation.GetNthSegmentID(n),
                                                           volume_node)
                                   for n in range(segmentation.GetNumberOfSegments())])
    assert dice(joined, truth) >= 0.5
    assert found["volume_ml"] == pytest.approx(joined.sum() * 0.45 * 0.45 * 5.0 / 1000.0, rel=1e-6)
    assert progress[-1] == (2, 2)
    assert len(nodes.nodes_of_class(scene, "vtkMRMLSegmentationNode")) == 1

    # The report (panel status, web downloads) measures the regions the reader keeps and names them.
    report = logic.report(volume_node)
    assert (report.detected_regions, report.detection_score) == (len(found["regions"]), pytest.approx(
        max(r["score"] for r in found["regions"]), abs=5e-4))
    assert report.reason.startswith("region 1: slices ") and report.reason.count("region ") == len(found["regions"])
    assert report.measurements["volume_ml"] == pytest.approx(found["volume_ml"], rel=1e-6)
    assert logic.status(volume_node)[0].startswith(f"Hemorrhage: {found['volume_ml']:.2f} mL")
    first_id = segmentation.GetNthSegmentID(0)
    segmentation.RemoveSegment(first_id)  # the reader rejects region 1
    kept = [nodes.read_segment_mask(found["segmentation"], segmentation.GetNthSegmentID(n), volume_node)
            for n in range(segmentation.GetNumberOfSegments())]
    kept_ml = np.logical_or.reduce(kept).sum() * 0.45 * 0.45 * 5.0 / 1000.0 if kept else 0.0
    report = logic.report(volume_node)
    assert report.detected_regions == len(found["regions"]) - 1 and "region 1:" not in report.reason
    assert report.reason.endswith("1 detected region deleted by the reader")
    assert report.measurements["volume_ml"] == pytest.approx(kept_ml, rel=1e-6)
    free_report = logic.report(nodes.nodes_of_class(scene, "vtkMRMLScalarVolumeNode")[1])
    assert free_report.status == "no bleed found" and free_report.detected_regions == 0
    assert free_report.headline() == f"{free['detection'][0].upper()}{free['detection'][1:]}."

    # Searching the same CTs again adds none of the regions found before (the rejected one included)
    # and no second node; the report stays as it was.
    again = {r["volume"]: r for r in logic.segment_all_loaded_volumes(scene)}
    repeated = len(found["regions"])
    assert again["bleed head"]["segment_ids"] == [] and again["bleed head"]["segmentation"] is found["segmentation"]
    assert again["bleed head"]["detection"] == \
        f"{repeated} region{'s' if repeated > 1 else ''} found by this CT's earlier search, not added again"
    assert segmentation.GetNumberOfSegments() == repeated - 1
    assert len(nodes.nodes_of_class(scene, "vtkMRMLSegmentationNode")) == 1
    assert logic.report(volume_node).reason == report.reason
    assert again["bleed-free head"]["detection"] == free["detection"]


def test_bad_input_changes_nothing(scene_with_ct, logic):
    scene, volume_node, segmentation_node, _ = scene_with_ct
    outside = add_points(scene, "outside", [(5000.0, 5000.0, 5000.0)])
    with pytest.raises(ValueError, match="outside"):
        logic.segment_from_points(volume_node, segmentation_node, outside)
    assert segmentation_node.GetSegmentation().GetNumberOfSegments() == 0


def test_a_sagittally_acquired_volume_is_segmented_on_its_axial_slices(tmp_path, logic, small_phantom):
    """The same head stored slice-by-slice left to right (array axis 0 = i of the axial volume):
    the logic reorients it as the command line does, clicks land on the bleed, and the segment is
    written on the sagittal volume's own voxel grid."""
    axial = small_phantom.volume_hu  # (k, j, i) with identity direction
    sagittal_array = np.ascontiguousarray(np.transpose(axial, (2, 0, 1)))  # [i, k, j]
    # Columns: the sagittal file's i axis runs along axial j (P), its j along axial k (S), its k along axial i (L).
    direction = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    sagittal = CTVolume(sagittal_array.astype(np.int16), (0.9, 5.0, 0.9), (-110.0, 95.0, -30.0), direction)
    scene = slicer.vtkMRMLScene()
    node = load_volume(scene, write_ct(tmp_path / "sagittal.nrrd", sagittal), "sagittal CT")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Segmentation")
    truth_axial = small_phantom.bleed_mask(0)
    k, _ = click_ras(CTVolume(axial, (0.9, 0.9, 5.0), (-110.0, 95.0, -30.0), np.eye(3)), small_phantom)
    x, y = deepest_point(truth_axial[k])
    ijk_sagittal = np.array([y, k, x, 1.0])  # (i, j, k) of the sagittal file = (axial j, axial k, axial i)
    ras = tuple((sagittal.ijk_to_ras_matrix() @ ijk_sagittal)[:3])
    assert logic.click_at(node, ras) == (k, pytest.approx(y), pytest.approx(x))  # axial slice k, transposed in plane
    segment_id, update = logic.segment_from_points(node, segmentation, add_points(scene, "p", [ras]))
    mask = nodes.read_segment_mask(segmentation, segment_id, node)  # (k, j, i) of the sagittal volume
    truth_sagittal = np.transpose(truth_axial, (2, 0, 1))
    assert mask.shape == sagittal_array.shape
    assert dice(mask, truth_sagittal) >= 0.8
    assert update.volume_ml == pytest.approx(mask.sum() * 0.9 * 0.9 * 5.0 / 1000.0, rel=1e-6)


def test_applied_points_are_not_clicked_again_and_a_box_alone_segments(scene_with_ct, logic, small_phantom):
    scene, volume_node, segmentation_node, volume = scene_with_ct
    _, ras = click_ras(volume, small_phantom)
    points = add_points(scene, "p", [ras])
    segment_id, _ = logic.segment_from_points(volume_node, segmentation_node, points, propagate=False)
    before = nodes.read_segment_mask(segmentation_node, segment_id, volume_node)
    with pytest.raises(ValueError, match="already applied"):  # the same marker again is no new click
        logic.segment_from_points(volume_node, segmentation_node, points, segment_id=segment_id, propagate=False)
    assert np.array_equal(nodes.read_segment_mask(segmentation_node, segment_id, volume_node), before)
    positive, negative = logic.clicks_ras(volume_node)
    assert len(positive) == 1 and np.allclose(positive[0], ras, atol=1e-3) and not negative

    truth_b = small_phantom.bleed_mask(1)
    k_b = slice_with_most(truth_b)
    rows, cols = np.nonzero(truth_b[k_b])
    corners = [(volume.ijk_to_ras_matrix() @ np.array([c, r, k_b, 1.0]))[:3]
               for c, r in ((cols.min() - 3, rows.min() - 3), (cols.max() + 3, rows.max() + 3))]
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    low, high = np.minimum(*corners), np.maximum(*corners)
    roi.SetXYZ(*((low + high) / 2.0))
    roi.SetRadiusXYZ(*np.maximum((high - low) / 2.0, 1.0))
    logic.segment_from_points(volume_node, segmentation_node, None, segment_id=segment_id, roi_node=roi,
                              propagate=False)
    after = nodes.read_segment_mask(segmentation_node, segment_id, volume_node)
    added = after[k_b] & ~before[k_b]
    assert dice(added, truth_b[k_b]) >= 0.8  # the box's bleed, and nothing else, added on its slice
    assert np.array_equal(after & before, before)  # the first bleed kept


def test_a_ct_volume_becomes_a_node_on_its_exact_geometry(small_phantom):
    scene = slicer.vtkMRMLScene()
    volume = CTVolume(small_phantom.volume_hu.astype(np.int16), (0.9, 0.8, 5.0), (-110.0, 95.0, -30.0),
                      oblique_direction(12.0))
    node = nodes.volume_node_from_ct(scene, volume, "CT")
    assert np.allclose(nodes.ijk_to_ras(node), volume.ijk_to_ras_matrix(), atol=1e-6)
    assert np.array_equal(nodes.volume_array(node), volume.array_hu)


def _changed_slices(before: np.ndarray, after: np.ndarray) -> set:
    return {int(k) for k in np.nonzero((before != after).any(axis=(1, 2)))[0]}


def test_undo_rewrites_the_point_lists_so_an_undone_point_is_not_applied_again(scene_with_ct, logic, small_phantom):
    scene, volume_node, segmentation_node, volume = scene_with_ct
    k_a, ras_a = click_ras(volume, small_phantom, 0)
    k_b, ras_b = click_ras(volume, small_phantom, 1)
    positive = add_points(scene, "p", [ras_a])
    segment_id, _ = logic.segment_from_points(volume_node, segmentation_node, positive, propagate=False)
    positive.AddControlPoint(*ras_b)
    logic.segment_from_points(volume_node, segmentation_node, positive, segment_id=segment_id, propagate=False)
    logic.undo(volume_node, segmentation_node, segment_id, positive_node=positive)
    assert positive.GetNumberOfControlPoints() == 1  # the undone point is gone from the list
    shown = [0.0, 0.0, 0.0]
    positive.GetNthControlPointPositionWorld(0, shown)
    assert np.allclose(shown, ras_a, atol=1e-3)
    history = logic.existing_session(volume_node).slice_clicks
    assert sum(len(positive) for positive, _ in history.values()) == 1  # only the first click is left
    with pytest.raises(ValueError, match="already applied"):  # nothing new: the undone click is not re-applied
        logic.segment_from_points(volume_node, segmentation_node, positive, segment_id=segment_id, propagate=False)


def test_a_negative_point_on_a_propagated_slice_corrects_that_slice_only(scene_with_ct, logic, small_phantom):
    scene, volume_node, segmentation_node, volume = scene_with_ct
    k, ras = click_ras(volume, small_phantom)
    positive = add_points(scene, "p", [ras])
    segment_id, _ = logic.segment_from_points(volume_node, segmentation_node, positive)
    before = nodes.read_segment_mask(segmentation_node, segment_id, volume_node)
    other = k + 1
    assert before[other].any(), "the click did not propagate to the next slice"
    x, y = deepest_point(before[other])
    negative = add_points(scene, "n", [tuple((volume.ijk_to_ras_matrix() @ np.array([x, y, other, 1.0]))[:3])])
    logic.segment_from_points(volume_node, segmentation_node, positive, negative, segment_id=segment_id)
    after = nodes.read_segment_mask(segmentation_node, segment_id, volume_node)
    assert not after[other, int(round(y)), int(round(x))]  # the negative point's slice was corrected there
    assert np.array_equal(after[k], before[k])  # the clicked slice is untouched
    assert logic.existing_session(volume_node).slice_clicks[other][1]  # recorded as that slice's negative


def test_a_box_answers_the_slices_it_covers_once_and_its_first_corner_is_no_box(scene_with_ct, logic, small_phantom):
    scene, volume_node, segmentation_node, volume = scene_with_ct
    truth_b = small_phantom.bleed_mask(1)
    k_b = slice_with_most(truth_b)
    rows, cols = np.nonzero(truth_b[k_b])
    corners = [(volume.ijk_to_ras_matrix() @ np.array([c, r, kk, 1.0]))[:3]
               for c, r, kk in ((cols.min() - 3, rows.min() - 3, k_b - 1), (cols.max() + 3, rows.max() + 3, k_b + 1))]
    low, high = np.minimum(*corners), np.maximum(*corners)
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    roi.SetXYZ(*((low + high) / 2.0))
    roi.SetRadiusXYZ(0.0, 0.0, 0.0)  # the first corner of a placement: no area yet
    assert not logic.box_is_drawn(volume_node, roi)
    roi.SetRadiusXYZ(*((high - low) / 2.0))
    covered = logic.roi_box(volume_node, roi).slices  # the RAS box on an oblique volume: a few more slices
    assert k_b - 1 in covered and k_b + 1 in covered and len(covered) < small_phantom.volume_hu.shape[0] // 2
    segment_id, _ = logic.segment_from_points(volume_node, segmentation_node, None, roi_node=roi)
    mask = nodes.read_segment_mask(segmentation_node, segment_id, volume_node)
    assert _changed_slices(np.zeros_like(mask), mask) <= set(covered)  # its own slices only
    assert dice(mask[k_b], truth_b[k_b]) >= 0.8
    with pytest.raises(ValueError, match="already applied"):  # the same box is one prompt, not one per click
        logic.segment_from_points(volume_node, segmentation_node, None, segment_id=segment_id, roi_node=roi)


def test_an_existing_segment_is_never_the_default_target(scene_with_ct, logic, small_phantom):
    scene, volume_node, segmentation_node, volume = scene_with_ct
    manual_id = segmentation_node.GetSegmentation().AddEmptySegment("manual", "Manual", (0.2, 0.8, 0.2))
    _, ras = click_ras(volume, small_phantom)
    segment_id, _ = logic.segment_from_points(volume_node, segmentation_node, add_points(scene, "p", [ras]),
                                              propagate=False)
    assert segment_id != manual_id
    assert segmentation_node.GetSegmentation().GetSegment(segment_id).GetName() == "Hemorrhage"
    assert not nodes.read_segment_mask(segmentation_node, manual_id, volume_node).any()


def test_overwrite_other_segments_takes_their_voxels_and_undo_gives_them_back(scene_with_ct, logic, small_phantom):
    scene, volume_node, segmentation_node, volume = scene_with_ct
    k, ras = click_ras(volume, small_phantom)
    truth = small_phantom.bleed_mask(0)
    manual_id = segmentation_node.GetSegmentation().AddEmptySegment("manual", "Manual", (0.2, 0.8, 0.2))
    manual = np.zeros(truth.shape, bool)
    rows, cols = np.nonzero(truth[k])
    manual[k, rows.min():rows.max() + 1, cols.min():(cols.min() + cols.max()) // 2] = True  # half the bleed, and more
    full = (slice(0, manual.shape[0]), slice(0, manual.shape[1]), slice(0, manual.shape[2]))
    nodes.write_segment_region(segmentation_node, manual_id, volume_node, manual, full)
    segment_id, _ = logic.segment_from_points(volume_node, segmentation_node, add_points(scene, "p", [ras]),
                                              propagate=False, overwrite_other_segments=True)
    bleed = nodes.read_segment_mask(segmentation_node, segment_id, volume_node)
    manual_after = nodes.read_segment_mask(segmentation_node, manual_id, volume_node)
    overlap = bleed & manual
    assert overlap.sum() > 100  # the bleed took the hand-drawn voxels over it
    assert np.array_equal(manual_after, manual & ~bleed)  # exactly those, no more
    logic.undo(volume_node, segmentation_node, segment_id)
    assert np.array_equal(nodes.read_segment_mask(segmentation_node, manual_id, volume_node), manual)
    logic.undo(volume_node, segmentation_node, segment_id, redo=True)
    assert np.array_equal(nodes.read_segment_mask(segmentation_node, manual_id, volume_node), manual_after)


@pytest.mark.real_data
def test_segment_all_reports_progress_within_a_volume_and_skips_what_is_not_ct(tmp_path, logic):
    scene = slicer.vtkMRMLScene()
    volume, _ = real_whole_ct("075", slice(12, 34))
    load_volume(scene, write_ct(tmp_path / "ct.nrrd", volume), "CT")
    mr = CTVolume(np.full((4, 32, 32), 300, np.int16) + np.arange(32, dtype=np.int16), (1.0, 1.0, 5.0),
                  (0.0, 0.0, 0.0), np.eye(3))
    load_volume(scene, write_ct(tmp_path / "mr.nrrd", mr), "MR")
    calls = []
    results = logic.segment_all_loaded_volumes(scene, progress=lambda d, t, m: calls.append((d, m)))
    by_name = {r["volume"]: r for r in results}
    assert by_name["MR"]["skipped"] and by_name["MR"]["segmentation"] is None and not by_name["MR"]["error"]
    assert by_name["CT"]["volume_ml"] > 1.0
    within_ct = [m for d, m in calls if m.startswith("CT: ")]
    assert len(within_ct) >= 3 and any("slice" in m for m in within_ct)  # per batch of slices
    assert len(nodes.nodes_of_class(scene, "vtkMRMLSegmentationNode")) == 1


def test_closing_the_scene_frees_every_volume_session(scene_with_ct, logic, small_phantom):
    scene, volume_node, segmentation_node, volume = scene_with_ct
    _, ras = click_ras(volume, small_phantom)
    logic.segment_from_points(volume_node, segmentation_node, add_points(scene, "p", [ras]), propagate=False)
    assert logic.existing_session(volume_node) is not None
    logic.release_volumes()
    assert logic.existing_session(volume_node) is None


def test_the_logic_says_which_engine_and_precision_run_the_model(logic):
    assert logic.engine_description() == "torch (fp32 on cpu)"  # the status line after a model load


def test_without_a_loader_the_logic_starts_from_the_recorded_graphs():
    """Slicer and the web app load SAMIHS's own models as the command does: a CPU engine's later
    starts run its recorded graphs (no torch model built), the first start records them."""
    from SAMIHSLib.interaction.predictor import model_and_engine
    from SAMIHSLib.models.summary import ModelSummary

    model_and_engine("lite-base", "cpu", "openvino")  # a first start here records them (or finds them recorded)
    started = SAMIHSMRMLLogic(device="cpu", engine="openvino")
    assert isinstance(started.model, ModelSummary) and started.device_name() == "cpu"
    assert started.engine_description() == "openvino (fp32 on cpu)"


def test_a_click_trained_model_gets_lite_base_as_second_opinion_loaded_with_it(lite_model):
    from SAMIHSLib.models import load_model

    models = {"samihs": load_model("samihs", device="cpu"), "lite-base": lite_model}
    loaded = []
    fine = SAMIHSMRMLLogic("samihs", engine="torch", model_loader=lambda spec, device: loaded.append(spec) or models[spec])
    assert fine.new_predictor().second_opinion.model is lite_model
    assert loaded == ["samihs", "lite-base"]  # both when the model loads (off the GUI thread), not at a click
    assert SAMIHSMRMLLogic(engine="torch", model_loader=lambda spec, device: lite_model).new_predictor().second_opinion is None
