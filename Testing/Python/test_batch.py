"""Batch: prompts from JSON / Slicer markups; failures reported, reruns idempotent (automatic batch:
test_bleed_detection.py)."""

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from SAMIHSLib.interaction.auto_seeds import find_seed_clicks
from SAMIHSLib.batch import REPORT_NAME, run_batch
from SAMIHSLib.io.report import CSV_COLUMNS
from SAMIHSLib.models import load_model
from SAMIHSLib.cli import main
from SAMIHSLib.io.validation import InputError
from conftest import require
from SAMIHSLib.io.markups_io import read_markups_clicks, write_markups_clicks
from SAMIHSLib.phantom import oblique_direction
from SAMIHSLib.interaction.predictor import SAMIHSPredictor
from SAMIHSLib.io.volume_io import CTVolume, write_ct
from SAMIHSLib.interaction.regions import deepest_point, slice_with_most


def _rows(out):
    with open(out / REPORT_NAME, newline="") as handle:
        return {row["volume"]: row for row in csv.DictReader(handle)}


@pytest.fixture
def batch_folder(tmp_path, small_phantom):
    folder = tmp_path / "in"
    folder.mkdir()
    volume = CTVolume(small_phantom.volume_hu, (0.9, 0.9, 5.0), (10.0, -20.0, 30.0), oblique_direction(8.0))
    write_ct(folder / "patient_a.nrrd", volume)
    write_ct(folder / "patient_b.nii.gz", CTVolume(small_phantom.volume_hu, (0.9, 0.9, 5.0), (0.0, 0.0, 0.0),
                                                   np.eye(3)))
    (folder / "corrupt.nrrd").write_bytes(b"NRRD0004\ntype: short\nsizes: 10 10\n\nnot really")
    mr = sitk.GetImageFromArray(np.random.default_rng(1).integers(0, 2500, (6, 64, 64)).astype(np.int16))
    sitk.WriteImage(mr, str(folder / "brain_mr.nii.gz"))
    return folder, volume


def test_auto_seeds_find_both_bleeds_and_skip_calcifications(small_phantom):
    seeds = find_seed_clicks(small_phantom.volume_hu, small_phantom.spacing_zyx)
    hits = sorted(int(small_phantom.bleed_labels[k, int(y), int(x)]) for k, x, y in seeds)
    assert hits == [1, 2]


def _click_each_bleed(small_phantom, path):
    """A prompts file with a click at the deepest point of each phantom bleed, for both phantoms."""
    clicks = []
    for bleed in (0, 1):
        truth = small_phantom.bleed_mask(bleed)
        k = slice_with_most(truth)
        x, y = deepest_point(truth[k])
        clicks.append([x, y, k])
    path.write_text(json.dumps({name: {"points": clicks} for name in ("patient_a", "patient_b")}))
    return str(path)


def test_batch_reports_failures_and_reruns_idempotently(tmp_path, lite_model, batch_folder, small_phantom):
    folder, _ = batch_folder
    out = tmp_path / "out"
    predictor = SAMIHSPredictor(lite_model)
    prompts = _click_each_bleed(small_phantom, tmp_path / "prompts.json")
    rows = run_batch([folder], prompts, out, predictor)
    assert {name: row["status"] for name, row in rows.items()} == {
        "patient_a": "ok", "patient_b": "ok", "corrupt": "failed", "brain_mr": "failed"}
    assert "does not look like CT" in rows["brain_mr"]["reason"]
    assert "Could not read" in rows["corrupt"]["reason"]
    truth = small_phantom.bleed_labels > 0
    segmentation = slicerio.read_segmentation(str(out / "patient_b.seg.nrrd"))
    mask = np.asarray(segmentation["voxels"]).transpose(2, 1, 0) > 0
    assert 2 * (mask & truth).sum() / (mask.sum() + truth.sum()) >= 0.8
    assert float(rows["patient_a"]["volume_ml"]) > 1.0 and rows["patient_a"]["bleeds_clicked"] == "2"

    stamp = (out / "patient_a.seg.nrrd").stat().st_mtime_ns
    encoder_calls = predictor.encoder_calls
    again = run_batch([folder], prompts, out, predictor)
    assert (out / "patient_a.seg.nrrd").stat().st_mtime_ns == stamp
    assert predictor.encoder_calls == encoder_calls  # finished volumes were skipped
    written = _rows(out)
    with open(out / REPORT_NAME, newline="") as handle:  # the one report schema's CSV columns
        assert tuple(next(csv.reader(handle))) == CSV_COLUMNS
    assert (written["patient_a"]["engine"], written["patient_a"]["device"]) == (predictor.engine_name, "cpu")
    assert {n: r["status"] for n, r in again.items()} == {n: r["status"] for n, r in written.items()}
    for name, row in written.items():  # the CSV says what the files on disk hold
        seg = out / f"{name}.seg.nrrd"
        assert seg.exists() == (row["status"] == "ok")
        if seg.exists():
            voxels = np.asarray(slicerio.read_segmentation(str(seg))["voxels"]) > 0
            assert float(row["volume_ml"]) == pytest.approx(voxels.sum() * 0.9 * 0.9 * 5.0 / 1000.0, abs=0.001)
            axial = int(np.count_nonzero(voxels.any(axis=(0, 1))))  # slicerio's voxels are (i, j, k)
            assert row["num_slices"] == str(axial)  # a count of the file's axial slices, not "4.000"


def test_markups_round_trip_through_slicers_own_markups_storage(tmp_path):
    """Slicer's own JSON markups writer and reader (slicer-core's vtkMRMLMarkupsJsonStorageNode):
    the clicks SAMIHS reads are the points Slicer holds, negative lists by their name, and a file
    SAMIHS writes opens in Slicer at the same points."""
    slicer = require("slicer")
    scene = slicer.vtkMRMLScene()
    for name, points in (("bleed clicks", [(10.5, -20.25, 33.0), (-5.0, 7.0, -2.5)]), ("negative clicks", [(1.0, 2.0, 3.0)])):
        node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
        for point in points:
            node.AddControlPoint(*point)
        storage = slicer.vtkMRMLMarkupsJsonStorageNode()
        scene.AddNode(storage)
        storage.SetFileName(str(tmp_path / f"{name}.mrk.json"))
        assert storage.WriteData(node)
    assert read_markups_clicks(tmp_path / "bleed clicks.mrk.json").positive_ras == [(10.5, -20.25, 33.0),
                                                                                    (-5.0, 7.0, -2.5)]
    with pytest.raises(InputError, match="no positive control points"):  # a negative list alone clicks nothing
        read_markups_clicks(tmp_path / "negative clicks.mrk.json")

    write_markups_clicks(tmp_path / "ours.mrk.json", [(12.5, -30.0, 44.0)])
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    reader = slicer.vtkMRMLMarkupsJsonStorageNode()
    scene.AddNode(reader)
    reader.SetFileName(str(tmp_path / "ours.mrk.json"))
    assert reader.ReadData(node) and node.GetNumberOfControlPoints() == 1
    assert np.allclose([node.GetNthControlPointPosition(0)[i] for i in range(3)], (12.5, -30.0, 44.0))


def test_markups_in_lps_and_ras_give_the_same_clicks(tmp_path):
    points = [(12.5, -30.0, 44.0)]
    write_markups_clicks(tmp_path / "lps.mrk.json", points, coordinate_system="LPS")
    write_markups_clicks(tmp_path / "ras.mrk.json", points, coordinate_system="RAS")
    lps = json.loads((tmp_path / "lps.mrk.json").read_text())["markups"][0]["controlPoints"][0]["position"]
    assert lps == [-12.5, 30.0, 44.0]
    assert read_markups_clicks(tmp_path / "lps.mrk.json").positive_ras == points
    assert read_markups_clicks(tmp_path / "ras.mrk.json").positive_ras == points


@pytest.mark.slow  # ~30-45 s on 2 cores: in `pytest -m slow` (CI runs it)
def test_batch_cli_with_markups_and_json_prompts(tmp_path, batch_folder, small_phantom, capsys):
    folder, volume = batch_folder
    truth = small_phantom.bleed_mask(0)
    k = slice_with_most(truth)
    x, y = deepest_point(truth[k])
    ras = (volume.ijk_to_ras_matrix() @ np.array([x, y, k, 1.0]))[:3]
    markups = tmp_path / "markups"
    markups.mkdir()
    write_markups_clicks(markups / "patient_a.mrk.json", [tuple(ras)])
    assert main(["batch", str(folder / "patient_a.nrrd"), "--prompts", str(markups), "-o", str(tmp_path / "m")]) == 0
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"patient_b": {"points": [[x, y, k]], "coords": "ijk"}}))
    assert main(["batch", str(folder / "patient_b.nii.gz"), "--prompts", str(prompts), "-o", str(tmp_path / "j")]) == 0
    a, b = _rows(tmp_path / "m")["patient_a"], _rows(tmp_path / "j")["patient_b"]
    assert a["bleeds_clicked"] == b["bleeds_clicked"] == "1"
    assert abs(float(a["volume_ml"]) - float(b["volume_ml"])) < 0.05 * float(b["volume_ml"])


@pytest.mark.parametrize("table, message", [
    ([["ct"]], "must be a JSON object"),
    ({"ct": [[1, 2, 3]]}, "must be an object"),
    ({"ct": {"pionts": [[1, 2, 3]]}}, r"unknown key\(s\) \['pionts'\]"),
    ({"ct": {"points": [["1", 2, 3]]}}, r"'ct'.points\[0\] must be 2 or 3 numbers"),
    ({"ct": {"points": [[1, 2, 3]], "coords": "voxel"}}, "coords is 'voxel'"),
    ({"ct": {"points": []}}, "non-empty list"),
])
def test_prompts_file_is_checked_up_front_with_the_key_of_each_error(tmp_path, table, message, capsys):
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps(table))
    # Checked before any model or volume is loaded: a missing input does not matter yet.
    assert main(["batch", str(tmp_path / "none.nrrd"), "--prompts", str(prompts), "-o", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and __import__("re").search(message, error), error
    assert not (tmp_path / "o").exists()


def test_coordinates_may_be_ras_or_lps_in_any_case_and_nothing_else(small_phantom):
    from SAMIHSLib.io.validation import InputError
    from SAMIHSLib.io.volume_io import clicks_to_slice_column_row

    volume = CTVolume(small_phantom.volume_hu, (0.9, 0.9, 5.0), (10.0, -20.0, 30.0), oblique_direction(8.0))
    ras = (volume.ijk_to_ras_matrix() @ np.array([100.0, 120.0, 7.0, 1.0]))[:3]
    lps = (-ras[0], -ras[1], ras[2])
    expected = clicks_to_slice_column_row([(100, 120, 7)], "ijk", volume)
    for coords, point in (("RAS", ras), ("ras", ras), ("LPS", lps), ("lps", lps)):
        (k, x, y), = clicks_to_slice_column_row([point], coords, volume)
        assert k == expected[0][0] and abs(x - 100) < 1e-6 and abs(y - 120) < 1e-6
    with pytest.raises(InputError, match="Unknown click coordinates"):
        clicks_to_slice_column_row([ras], "voxel", volume)


@pytest.mark.slow  # ~30-45 s on 2 cores: in `pytest -m slow` (CI runs it)
def test_same_named_inputs_are_refused_and_a_changed_prompt_or_model_is_redone(tmp_path, lite_model, batch_folder,
                                                                                small_phantom):
    folder, volume = batch_folder
    twin = tmp_path / "twin"
    twin.mkdir()
    write_ct(twin / "patient_a.nii.gz", volume)  # same name as folder/patient_a.nrrd
    truth = small_phantom.bleed_mask(0)
    k = slice_with_most(truth)
    x, y = deepest_point(truth[k])
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"patient_a": {"points": [[x, y, k]]}, "patient_b": {"points": [[x, y, k]]}}))
    out = tmp_path / "out"
    predictor = SAMIHSPredictor(lite_model)
    rows = run_batch([folder / "patient_a.nrrd", twin / "patient_a.nii.gz", folder / "patient_b.nii.gz"],
                     str(prompts), out, predictor)
    assert rows["patient_a"]["status"] == "failed" and "same name" in rows["patient_a"]["reason"]
    assert not (out / "patient_a.seg.nrrd").exists() and rows["patient_b"]["status"] == "ok"
    manifest = json.loads((out / "patient_b.samihs.json").read_text())
    assert set(manifest) >= {"input_sha256", "prompts_sha256", "model_sha256", "engine", "samihs_version"}

    stamp = (out / "patient_b.seg.nrrd").stat().st_mtime_ns
    run_batch([folder / "patient_b.nii.gz"], str(prompts), out, predictor)
    assert (out / "patient_b.seg.nrrd").stat().st_mtime_ns == stamp  # same everything: skipped
    rows_, cols_ = np.nonzero(small_phantom.bleed_mask(1)[k])
    prompts.write_text(json.dumps({"patient_b": {"points": [[x, y, k], [float(cols_.mean()), float(rows_.mean()), k]]}}))
    run_batch([folder / "patient_b.nii.gz"], str(prompts), out, predictor)
    assert (out / "patient_b.seg.nrrd").stat().st_mtime_ns != stamp  # other prompts: redone
    assert _rows(out)["patient_b"]["bleeds_clicked"] == "2"

    stamp = (out / "patient_b.seg.nrrd").stat().st_mtime_ns
    run_batch([folder / "patient_b.nii.gz"], str(prompts), out, SAMIHSPredictor(load_model("lite", device="cpu")))
    assert (out / "patient_b.seg.nrrd").stat().st_mtime_ns != stamp  # another model, same prompts: redone
    assert json.loads((out / "patient_b.samihs.json").read_text())["model_sha256"] != manifest["model_sha256"]
