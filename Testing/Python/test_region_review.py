"""The region review (measured, not shipped): the other side of the head, a bleed's features on a
real CT, the review's records against automatic batch's own, a fold's setting chosen without that
fold, and the committed results recomputed."""

import dataclasses

import numpy as np
import pytest
from scipy import ndimage as ndi

from conftest import REPO, real_whole_ct
from SAMIHSLib.metrics import dice, volume_ml
from SAMIHSLib.volume.bleed_detection import candidate_regions
from SAMIHSLib.volume.head_axis import head_axes, mirrored_values
from training.detector_crossval import detection_record
from training.region_features import REVIEW_FEATURES, region_features
from training.region_review_crossval import RegionTable, fit_review, read_tables_csv, region_tables, select_per_fold, \
    tables_csv
from training.volume_eval import EvalVolume, bleeds_over_half_ml


def _tilted_head(angle_degrees: float) -> np.ndarray:
    """One slice: an elliptic head (long axis tilted by ``angle_degrees`` from the rows) in air."""
    rows, columns = np.mgrid[0:200, 0:200].astype(float)
    angle = np.deg2rad(angle_degrees)
    along = (rows - 100) * np.cos(angle) + (columns - 90) * np.sin(angle)
    across = -(rows - 100) * np.sin(angle) + (columns - 90) * np.cos(angle)
    return np.where((along / 80) ** 2 + (across / 60) ** 2 <= 1, 30, -1000).astype(np.int16)


def test_the_other_side_of_the_head_is_across_its_long_axis():
    head = _tilted_head(20)[None]
    (row, column, direction), = head_axes(head)
    assert abs(row - 100) < 1 and abs(column - 90) < 1
    assert abs(abs(direction @ [np.cos(np.deg2rad(20)), np.sin(np.deg2rad(20))]) - 1) < 1e-3
    image = np.zeros((200, 200))
    # a point 30 px to one side of the axis, 10 px along it: its mirror is 30 px to the other side
    angle = np.deg2rad(20)
    point = np.array([100, 90]) + 10 * np.array([np.cos(angle), np.sin(angle)]) + 30 * np.array([-np.sin(angle), np.cos(angle)])
    mirror = np.array([100, 90]) + 10 * np.array([np.cos(angle), np.sin(angle)]) - 30 * np.array([-np.sin(angle), np.cos(angle)])
    image[tuple(np.round(mirror).astype(int))] = 7
    assert mirrored_values(image, np.array([point[0]]), np.array([point[1]]), (row, column, direction))[0] == 7


def test_a_real_bleed_is_denser_than_the_tissue_around_it_and_than_the_other_side():
    volume, truth = real_whole_ct("075", slice(14, 32))
    hu = volume.array_hu
    labels, count = ndi.label(truth, structure=np.ones((3, 3, 3), bool))
    largest = labels == int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    axes = head_axes(hu)
    mirrored = np.zeros_like(largest)  # the same bleed's place on the other side of the head
    for k in np.unique(np.nonzero(largest)[0]):
        rows, columns = np.nonzero(largest[k])
        row, column, direction = axes[k]
        offset = np.stack([rows - row, columns - column])
        image = 2 * (np.array([[row], [column]]) + direction[:, None] * (direction @ offset)) - np.stack([rows, columns])
        keep = (image >= 0).all(0) & (image[0] < hu.shape[1]) & (image[1] < hu.shape[2])
        mirrored[k][tuple(np.round(image[:, keep]).astype(int))] = True
    mirrored &= ~largest
    both = largest.astype(np.int32) + 2 * mirrored
    features = region_features(hu, np.full(hu.shape, 0.9, np.float32), both, [0.9, 0.9], [1.0, 1.0], axes)
    bleed, other_side = (dict(zip(REVIEW_FEATURES, row)) for row in features)
    assert bleed["median_hu"] > 55 and bleed["contrast_hu"] > 15 and bleed["asymmetry_hu"] > 15
    assert other_side["asymmetry_hu"] < -15  # brain, whose mirror is the bleed


def test_the_reviews_records_are_what_automatic_batch_would_report():
    volume, truth = real_whole_ct("049")
    spacing = tuple(float(v) for v in volume.spacing_ijk[::-1])
    item = EvalVolume("049", "049", 0, volume.array_hu, truth, spacing, {})
    rng = np.random.default_rng(3)
    # a probability volume with the bleed, part of it missed, and blobs elsewhere in the head
    probability = np.where(ndi.binary_erosion(truth, iterations=1), 0.95, 0.0).astype(np.float32)
    probability[:, 100:112, 300:315] = 0.8
    probability[rng.random(truth.shape) > 0.9995] = 0.6
    tables = region_tables(item, probability)
    bleeds = bleeds_over_half_ml(truth, spacing)
    for pixel, table in tables.items():
        labels, count, _, _ = candidate_regions(probability, spacing, pixel)
        assert count == len(table.voxels) > 3
        keep = rng.random(count) < 0.5
        mask = np.isin(labels, np.flatnonzero(keep) + 1)
        expected = detection_record("s", item, mask, bleeds, int(keep.sum()), float(probability.max()))
        got = table.record("s", keep)
        assert got.found_ml == pytest.approx(volume_ml(mask, spacing)) and got.dice_all == pytest.approx(dice(mask, truth))
        assert dataclasses.replace(got, found_ml=0, dice_all=0) == dataclasses.replace(expected, found_ml=0, dice_all=0)


def _random_tables(seed: int):
    """Synthetic region tables of 25 volumes in 5 folds: bleed regions have higher 'contrast'."""
    rng = np.random.default_rng(seed)
    tables = {}
    for pixel in (0.3, 0.5, 0.7):
        tables[pixel] = []
        for v in range(25):
            n = 6
            is_bleed = rng.random(n) < 0.3
            features = rng.normal(size=(n, len(REVIEW_FEATURES)))
            features[:, 5] += 2.0 * is_bleed
            voxels = rng.integers(50, 500, n)
            tables[pixel].append(RegionTable(f"{v:03d}", v % 5, bool(is_bleed.any()), int(voxels[is_bleed].sum()), 0.005,
                                             int(is_bleed.sum()), 0.99, features, voxels, voxels * is_bleed,
                                             [(i,) if b else () for i, b in enumerate(is_bleed)]))
    return tables


def test_a_folds_review_setting_is_chosen_without_that_fold():
    tables = _random_tables(0)
    selected, chosen = select_per_fold(tables)
    # fold 2's regions shuffled against their truth: its own records change, its setting must not
    changed = {pixel: [dataclasses.replace(t, features=t.features[::-1].copy()) if t.fold == 2 else t for t in rows]
               for pixel, rows in tables.items()}
    selected_after, chosen_after = select_per_fold(changed)
    assert chosen_after[2] == chosen[2]
    assert [r for r in selected_after if r.fold == 2] != [r for r in selected if r.fold == 2]


def test_the_review_learns_which_feature_tells_bleed_from_the_rest():
    tables = _random_tables(1)
    rows = tables[0.5]
    review = fit_review(np.concatenate([t.features for t in rows]), np.concatenate([t.is_bleed for t in rows]))
    weights = dict(zip(REVIEW_FEATURES, review.weights))
    assert weights["contrast_hu"] > 1.0 and max(abs(w) for name, w in weights.items() if name != "contrast_hu") < 0.5
    with pytest.raises(ValueError, match="bleed and regions that are not"):
        fit_review(np.zeros((3, len(REVIEW_FEATURES))), np.zeros(3))


def test_region_tables_read_back_as_written():
    tables = _random_tables(2)
    tables[0.7][3] = dataclasses.replace(tables[0.7][3], features=np.zeros((0, len(REVIEW_FEATURES))),
                                         voxels=np.zeros(0, np.int64), on_bleed=np.zeros(0, np.int64), touched=[])
    again = read_tables_csv(tables_csv(tables))
    assert sorted(again) == sorted(tables)
    for pixel in tables:
        for before, after in zip(sorted(tables[pixel], key=lambda t: t.volume), sorted(again[pixel], key=lambda t: t.volume)):
            assert before.volume == after.volume and before.fold == after.fold and before.touched == after.touched
            assert np.array_equal(before.features, after.features) and np.array_equal(before.voxels, after.voxels)
            assert before.record("s", before.voxels > 100) == after.record("s", after.voxels > 100)


REVIEW_RESULTS = REPO / "training" / "results" / "auto_detector_review"


def test_the_review_settings_and_its_results_are_recomputed_from_the_committed_regions():
    """The committed region table gives the results' per-fold review settings, each fold's records
    and the review on all folds."""
    import json

    from training.detector_crossval import detection_records_csv
    from training.region_review_crossval import review_on_all_folds

    tables = read_tables_csv((REVIEW_RESULTS / "review_regions.csv").read_text())
    summary = json.loads((REVIEW_RESULTS / "summary.json").read_text())
    selected, chosen = select_per_fold(tables)
    assert chosen == summary["review_per_fold_setting"]
    by_volume = sorted(selected, key=lambda r: (r.fold, r.volume))
    assert detection_records_csv(by_volume) == (REVIEW_RESULTS / "review_selected.csv").read_text()
    pixel, review, _ = review_on_all_folds(tables)
    # the fit's last bits follow the CPU's BLAS kernels (AVX2 wrote the file; AVX-512 differs by 1e-15)
    committed = summary["review_on_all_folds"]
    assert pixel == committed["pixel_threshold"] and review.features == tuple(committed["features"])
    for name, value in review.to_dict().items():
        if name != "features":
            assert value == pytest.approx(committed[name], rel=1e-9, abs=1e-12), name
