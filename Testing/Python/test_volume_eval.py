"""The 3D evaluation on whole real head CTs: folds by patient across the volumes and the slices,
the clicked bleed and corrections as a user makes them, settings chosen on the other folds."""

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from SAMIHSLib.interaction.regions import slice_with_most
from training.click_crossval import select_per_fold
from training.datasets import load_dataset
from training.folds import extend_scan_folds, read_fold_scans, read_folds
from training.prompts import corrective_click_3d
from training.volume_eval import (RegionGrowing3DSegmenter, VolumeRecord, clicked_bleed, evaluation_volumes,
                                  first_volume_click, simulate_volume)
from training.record_csv import read_records_csv, records_csv

from conftest import unavailable

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
SLICE_FOLDS = REPO / "training" / "folds" / "real59_5fold.json"
ALL_FOLDS = REPO / "training" / "folds" / "ct_ich_all_5fold.json"


@pytest.fixture(scope="module")
def volume_cases():
    if not (SHARED_DATA / "ct-ich-volumes").is_dir():
        unavailable(f"the shared whole CTs are not at {SHARED_DATA / 'ct-ich-volumes'}")
    return load_dataset("ct_ich_volumes", str(SHARED_DATA / "ct-ich-volumes"))


@pytest.fixture(scope="module")
def slice_cases():
    return load_dataset("shared_real", str(SHARED_DATA))


def test_the_57_volumes_are_read_with_their_patients_and_per_slice_subtypes(volume_cases):
    assert len(volume_cases) == 57 and sum(case.mask.any() for case in volume_cases) == 24
    assert all(case.patient.startswith("ct-ich/") and case.image_hu.shape[1:] == (512, 512) for case in volume_cases)
    # slices.csv counts slices from 1, the arrays from 0: 049's epidural bleed is on rows 14-17.
    case = next(c for c in volume_cases if c.name.startswith("049"))
    assert [k for k in range(12, 18) if "EDH" in case.slice_subtypes.get(k, ())] == [13, 14, 15, 16]
    assert [k for k in range(12, 18) if case.mask[k].any()] == [13, 14, 15, 16]
    flagged = [(c, k) for c in volume_cases for k, names in c.slice_subtypes.items() if names]
    assert sum(c.mask[k].any() for c, k in flagged) > 0.9 * len(flagged)  # (a few flags sit beside the mask)


def test_folds_are_by_patient_across_the_volumes_and_the_slices(volume_cases, slice_cases):
    cases = slice_cases + volume_cases
    folds = read_folds(ALL_FOLDS, cases)
    scans = [scan for fold in folds for scan in fold]
    assert len(scans) == len(set(scans)) == len({case.patient for case in cases})
    earlier = read_fold_scans(SLICE_FOLDS)
    for index, fold in enumerate(earlier):  # the 2D table's patients keep their folds
        assert set(fold) <= set(folds[index])
    # A ct-ich slice and its patient's volume are in the same fold: never one in training, one in test.
    fold_of = {scan: index for index, fold in enumerate(folds) for scan in fold}
    volumes = evaluation_volumes(volume_cases, folds)
    assert len(volumes) == 24
    shared = {case.patient for case in slice_cases} & {v.scan for v in volumes}
    assert len(shared) >= 8
    assert all(v.fold == fold_of[v.scan] for v in volumes)
    assert extend_scan_folds(earlier, cases) == folds  # the file is what the documented procedure makes


def test_corrective_clicks_go_on_the_largest_3d_error_with_its_sign():
    truth = np.zeros((6, 40, 40), bool)
    truth[1:5, 10:30, 10:30] = True
    prediction = truth.copy()
    prediction[3:5] = False  # the top two slices are missed
    prediction[0, 2:6, 2:6] = True  # a small false area below
    (k, (x, y)), positive = corrective_click_3d(prediction, truth)
    assert positive and k in (3, 4) and truth[k, int(y), int(x)] and not prediction[k, int(y), int(x)]
    prediction = truth.copy()
    prediction[5, 5:35, 5:35] = True  # a leak larger than any miss
    (k, (x, y)), positive = corrective_click_3d(prediction, truth)
    assert not positive and k == 5 and prediction[k, int(y), int(x)]
    assert corrective_click_3d(truth, truth) is None


def test_the_first_click_is_on_the_largest_slice_of_the_largest_bleed(volume_cases):
    case = next(c for c in volume_cases if c.name.startswith("049"))  # 12 separate bleeds
    target = clicked_bleed(case.mask)
    labels, _ = ndi.label(case.mask, structure=np.ones((3, 3, 3), bool))
    assert target.sum() == np.bincount(labels.ravel())[1:].max()
    k, (x, y) = first_volume_click(target, "deepest", case.name)
    assert k == slice_with_most(target) and target[k, int(y), int(x)]
    k_random, (xr, yr) = first_volume_click(target, "random", case.name)
    assert target[k_random, int(yr), int(xr)] and first_volume_click(target, "random", case.name) == (k_random, (xr, yr))


def test_the_records_measure_the_answer_in_3d_against_the_clicked_bleed():
    """A synthetic CT whose bleed the floor segments exactly, plus a leak: Dice, mL, missed and
    leaked slices and ABC/2 are what the masks say; the CSV reads back as written."""
    volume = np.full((8, 64, 64), 30.0, np.float32)  # brain
    truth = np.zeros(volume.shape, bool)
    truth[2:6, 20:40, 20:40] = True  # the clicked bleed: 4 slices of 20 x 20 px
    truth[2, 50:54, 50:54] = True  # a small second bleed
    volume[truth] = 65.0
    leak = np.zeros(volume.shape, bool)
    leak[6, 20:30, 20:30] = True  # hyperdense tissue touching the bleed, on a slice without bleed
    volume[leak] = 65.0
    item = evaluation_volumes([_case(volume, truth)], [["p/1"], []])[0]
    records = simulate_volume(RegionGrowing3DSegmenter((45.0, 90.0), 0), item, "deepest", "floor", "45-90")
    first = records[0]
    voxel_ml = 5.0 * 0.5 * 0.5 / 1000.0
    assert first.truth_clicked_ml == pytest.approx(1600 * voxel_ml) and first.truth_all_ml == pytest.approx(1616 * voxel_ml)
    # The floor's 3x3 median rounds each square's 4 corners off: the bleed and the leak, not the other bleed.
    found = (1600 - 4 * 4) + (100 - 4)
    assert first.volume_ml == pytest.approx(found * voxel_ml)
    assert first.dice_clicked == pytest.approx(2 * (1600 - 16) / (found + 1600))
    assert (first.slices_clicked, first.slices_missed, first.slices_leaked) == (4, 0, 1)
    assert first.abc2_truth_ml == pytest.approx(10.0 * 10.0 * 20.0 / 2 / 1000.0)  # 10 mm x 10 mm x 4 slices of 5 mm
    assert records[1].clicks == 3 and records[1].slices_leaked == 0  # a negative click took the leak
    assert read_records_csv(records_csv(records, VolumeRecord), VolumeRecord) == records


def _case(volume: np.ndarray, truth: np.ndarray):
    from training.datasets import Case

    return Case("1.nii.gz", "p/1", volume, truth, (5.0, 0.5, 0.5), slice_subtypes={2: ("IPH",)})


def test_volume_settings_are_chosen_on_the_other_folds_only():
    def record(setting: str, fold: int, value: float) -> VolumeRecord:
        return VolumeRecord("m", setting, f"v{fold}", f"p{fold}", fold, "SDH", "deepest", 1, value, value, 1.0, 1.0,
                            1.0, 1.0, 1.0, 3, 0, 0, 1.0, 3, "")

    records = [record("a", 0, 1.0), record("b", 0, 0.0), record("a", 1, 0.2), record("b", 1, 0.9),
               record("a", 2, 0.3), record("b", 2, 0.8)]
    chosen_records, chosen = select_per_fold(records, 3)
    assert chosen["m"][0] == "b" and [r.dice_clicked for r in chosen_records if r.fold == 0] == [0.0]


def test_the_automatic_batch_is_evaluated_on_heads_with_and_without_bleed(lite_model, small_phantom):
    """The harness's automatic mode runs the batch's own seeding and segmentation; a head without
    bleed is a result ("no bleed found", 0 mL), and a found bleed counts as found."""
    from SAMIHSLib.interaction.predictor import SAMIHSPredictor
    from SAMIHSLib.phantom import make_head_phantom
    from training.datasets import Case
    from training.volume_eval import auto_table, run_auto_batch

    empty = make_head_phantom(shape=(16, 256, 256), spacing_zyx=(5.0, 0.9, 0.9), bleeds=(), seed=3)
    cases = [Case("bleed.nii.gz", "p/bleed", small_phantom.volume_hu.astype(np.float32), small_phantom.bleed_labels > 0,
                  small_phantom.spacing_zyx),
             Case("none.nii.gz", "p/none", empty.volume_hu.astype(np.float32), empty.bleed_labels > 0, empty.spacing_zyx)]
    volumes = evaluation_volumes(cases, [["p/bleed"], ["p/none"]], with_bleed=False)
    records = {r.volume: r for r in run_auto_batch(volumes, SAMIHSPredictor(lite_model))}
    none, bleed = records["none"], records["bleed"]
    assert not none.has_bleed and none.status == "no bleed found" and none.found_ml == 0.0 and none.seeds == 0
    assert bleed.has_bleed and bleed.status == "segmented" and bleed.bleeds_over_half_ml == 2
    assert bleed.bleeds_found == 2 and bleed.dice_all > 0.6
    table = auto_table(list(records.values()), "test")
    assert "| 1 with bleed, 1 without |" in table and "2 of 2" in table


def test_a_preview_on_some_folds_tabulates_every_method_on_those_folds_only(tmp_path, volume_cases):
    from training.__main__ import main

    reused = REPO / "training" / "results" / "volumes_5fold_copies6_avx2" / "records.csv"
    assert main(["volumeeval", "--dataset", f"ct_ich_volumes:{SHARED_DATA / 'ct-ich-volumes'}", "--folds",
                 str(ALL_FOLDS), "--reuse", str(reused), "--only-fold", "0", "--only-fold", "1",
                 "--out", str(tmp_path)]) == 0
    kept = read_records_csv((tmp_path / "records.csv").read_text(), VolumeRecord)
    every = read_records_csv(reused.read_text(), VolumeRecord)
    assert kept and {r.fold for r in kept} == {0, 1}
    assert len(kept) == sum(r.fold in (0, 1) for r in every) < len(every)
    assert "test folds 0, 1 only" in (tmp_path / "table.md").read_text()
    with pytest.raises(SystemExit, match="--only-fold previews --method runs"):
        main(["volumeeval", "--dataset", f"ct_ich_volumes:{SHARED_DATA / 'ct-ich-volumes'}", "--folds",
              str(ALL_FOLDS), "--auto", "lite-base", "--only-fold", "0", "--out", str(tmp_path / "auto")])
