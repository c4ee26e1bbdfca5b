"""The bleed detector's regions joined to a click's 3D answer (``DetectorRegions``), on a real whole
CT (patient 075: a 98 mL epidural on slices 15-30) with lite-base and the shipped detector (trained
on all 57 volumes, 075 among them: a check of behaviour, not of accuracy): the probabilities are
computed only where the answer and the joined regions reach, locked slices and a negative click's
surroundings are left alone, and the join is part of the click's one undo step."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from conftest import real_whole_ct
from SAMIHSLib.interaction.detected_regions import (GROWTH_SLICES, REGION_STRUCTURE, DetectorJoin, DetectorRegions,
                                                    negative_reach, regions_touching)
from SAMIHSLib.interaction.predictor import SAMIHSPredictor
from SAMIHSLib.interaction.regions import deepest_point, slice_with_most
from SAMIHSLib.interaction.session import HemorrhageSession
from SAMIHSLib.models.files import CheckpointError
from SAMIHSLib.volume.automatic import load_detector
from SAMIHSLib.volume.bleed_detection import DetectorEvidence

SLICES = slice(12, 34)


@pytest.fixture(scope="module")
def ct_075():
    volume, truth = real_whole_ct("075", SLICES)
    return volume.array_hu, truth, tuple(volume.spacing_ijk[::-1])


@pytest.mark.real_data
def test_regions_overlapping_an_answer_are_joined_where_allowed(ct_075):
    volume_hu, truth, spacing = ct_075
    detector = load_detector()
    evidence = DetectorEvidence(detector, volume_hu, spacing)
    whole = detector.probabilities(volume_hu, spacing)
    k = slice_with_most(truth)
    assert np.allclose(evidence.probability([k, k + 1]), whole[[k, k + 1]], atol=1e-5)
    answer = np.zeros_like(truth)
    answer[k] = truth[k]  # the answer on one slice: the region carries the join to the bleed's other slices
    changeable = np.ones(truth.shape[0], bool)
    changeable[k + 2] = False
    first, block = regions_touching(answer, evidence, 0.5, changeable)
    added = np.zeros_like(truth)
    added[first:first + block.shape[0]] = block
    labels, _ = ndi.label(whole > 0.5, structure=REGION_STRUCTURE)
    touching = np.unique(labels[answer])
    region = np.isin(labels, touching[touching > 0])
    expected = region.copy()
    expected[k + 2] = False
    assert np.array_equal(added, expected)
    bleed_slices = np.nonzero(truth.any(axis=(1, 2)))[0]
    assert added.any(axis=(1, 2)).sum() >= len(bleed_slices) - 2  # measured: 15 of its 16, all but the locked one
    # Probabilities were computed on the region's slices, one beyond each end and at most the last
    # step's GROWTH_SLICES more: not the whole volume.
    reached = np.nonzero(region.any(axis=(1, 2)))[0]
    first, last = max(0, min(k, reached[0]) - 1), min(truth.shape[0] - 1, max(k, reached[-1]) + 1)
    computed = evidence.computed_slices
    assert computed == list(range(computed[0], computed[-1] + 1))
    assert first - GROWTH_SLICES < computed[0] <= first and last <= computed[-1] < last + GROWTH_SLICES
    assert len(computed) < truth.shape[0]
    # A region that touches a negative click's surroundings is not joined at all.
    near = negative_reach(truth.shape, [(k, deepest_point(truth[k]))], 3.0)
    assert not regions_touching(answer, evidence, 0.5, changeable, avoid=near)[1].any()


@pytest.mark.real_data
def test_a_new_bleeds_answer_is_joined_in_one_undo_step_and_locked_slices_stay(lite_model, ct_075):
    volume_hu, truth, spacing = ct_075
    predictor = SAMIHSPredictor(lite_model)
    predictor.set_volume(volume_hu, spacing)
    k = slice_with_most(truth)
    click = deepest_point(truth[k])
    plain = HemorrhageSession(predictor)
    plain.click(k, [click])
    evidence = DetectorEvidence(load_detector(), volume_hu, spacing)
    joined = HemorrhageSession(predictor, detector_regions=DetectorRegions(evidence, DetectorJoin(0.3)))
    locked = int(np.nonzero(plain.mask.any(axis=(1, 2)))[0][-1])  # the answer's last slice, emptied by hand
    joined.set_slice_mask(locked, np.zeros(truth.shape[1:], bool))
    outcome = joined.click(k, [click])
    assert not joined.mask[locked].any()
    without_locked = plain.mask.copy()
    without_locked[locked] = False
    assert np.all(joined.mask[without_locked])  # the model's answer is kept whole
    added = joined.mask & ~plain.mask
    assert added.any() and outcome.detector_added.startswith("the bleed detector's region added")
    assert np.all(evidence.probability(range(truth.shape[0]))[added] > 0.3)
    joined.undo()
    assert not joined.mask.any() and joined.locked_slices == {locked}


def test_the_join_refuses_a_threshold_outside_0_1():
    with pytest.raises(ValueError, match="pixel threshold"):
        DetectorJoin(1.0)


def test_the_evaluation_gives_each_fold_its_own_detector(tmp_path):
    import shutil

    from SAMIHSLib.volume.automatic import SHIPPED_DETECTOR
    from training.volume_eval import volume_method_settings

    shutil.copy(SHIPPED_DETECTOR, tmp_path / "detector_fold2.pt")
    joined = "detector's regions joined at pixel > 0.7"
    _, settings = volume_method_settings(f"lite-base:detector=as shipped,{joined}",
                                         fold_detectors=str(tmp_path / "detector_fold{fold}.pt"))
    regions = {}
    for name, factory in settings.items():
        segmenter = factory(2)
        segmenter.start(np.linspace(-1000, 80, 3 * 32 * 32).reshape(3, 32, 32), (5.0, 0.5, 0.5))  # any CT
        regions[name] = segmenter.session.detector_regions
    assert regions["as shipped"] is None
    assert regions[joined].join == DetectorJoin(0.7) and regions[joined].evidence.offset == 1
    with pytest.raises(CheckpointError, match="detector_fold3.pt"):  # fold 3's detector is not there
        settings[joined](3).start(np.linspace(-1000, 80, 3 * 32 * 32).reshape(3, 32, 32), (5.0, 0.5, 0.5))


def test_the_evaluation_asks_for_each_folds_detector():
    from training.volume_eval import volume_method_settings

    with pytest.raises(ValueError, match="--fold-detectors"):
        volume_method_settings("lite-base:detector=as shipped,detector's regions joined at pixel > 0.5")
    with pytest.raises(ValueError, match="Unknown detector setting"):
        volume_method_settings("lite-base:detector=joined", fold_detectors="d{fold}.pt")


@pytest.mark.real_data
def test_the_command_line_joins_by_default_reports_it_and_can_answer_alone(tmp_path, ct_075):
    import json

    import SimpleITK as sitk

    from SAMIHSLib.cli import main
    from SAMIHSLib.io.volume_io import CTVolume, write_ct

    volume_hu, truth, spacing = ct_075
    path = write_ct(tmp_path / "075.nii.gz", CTVolume(volume_hu, spacing[::-1], (0.0, 0.0, 0.0), np.eye(3), "075"))
    k = slice_with_most(truth)
    column, row = deepest_point(truth[k])
    point = f"{column:.0f},{row:.0f},{k}"
    for name, extra in (("joined", []), ("alone", ["--no-detector-join"])):
        assert main(["segment", str(path), "--point", point, "-o", str(tmp_path / f"{name}.nii.gz"),
                     "--report", str(tmp_path / f"{name}.json")] + extra) == 0
    joined, alone = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("joined", "alone"))
    assert joined["detector_added"].startswith("the bleed detector's region added") and alone["detector_added"] == ""
    assert joined["measurements"]["volume_ml"] > alone["measurements"]["volume_ml"]
    masks = {name: sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"{name}.nii.gz"))) > 0
             for name in ("joined", "alone")}
    assert np.all(masks["joined"][masks["alone"]])
