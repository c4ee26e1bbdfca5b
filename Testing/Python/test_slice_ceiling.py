"""What propagation can reach at most: a click on every slice of the clicked bleed, each slice
answered alone by a method of the 2D table, scored in 3D."""

from pathlib import Path

import numpy as np
import pytest

from SAMIHSLib.interaction.regions import deepest_point
from SAMIHSLib.metrics import dice
from training.click_crossval import RegionGrowingSegmenter, method_settings
from training.datasets import load_dataset
from training.folds import read_folds
from training.slice_ceiling import every_slice_mask, run_ceiling
from training.volume_eval import clicked_bleed, evaluation_volumes

from conftest import unavailable

REPO = Path(__file__).resolve().parents[2]
VOLUMES = REPO.parent / "shared" / "data" / "ct-ich-volumes"
ALL_FOLDS = REPO / "training" / "folds" / "ct_ich_all_5fold.json"


@pytest.fixture(scope="module")
def two_volumes():
    """049 (fold 2) and 068 (fold 0): two folds, so each fold's choice reads the other's volume."""
    if not VOLUMES.is_dir():
        unavailable(f"the shared whole CTs are not at {VOLUMES}")
    cases = [c for c in load_dataset("ct_ich_volumes", str(VOLUMES)) if c.name.split(".")[0] in ("049", "068")]
    return evaluation_volumes(cases, read_folds(ALL_FOLDS, cases))


@pytest.mark.real_data
def test_each_slice_of_the_clicked_bleed_is_answered_alone(two_volumes):
    item = next(v for v in two_volumes if v.name == "049")
    target = clicked_bleed(item.truth)
    mask, per_slice = every_slice_mask(RegionGrowingSegmenter((45.0, 90.0), 1), item, target)
    assert sorted(per_slice) == [13, 14, 15, 16] == np.nonzero(target.any(axis=(1, 2)))[0].tolist()
    assert not mask[[k for k in range(mask.shape[0]) if k not in per_slice]].any()  # no propagation
    for k, score in per_slice.items():  # each slice as the floor answers a click at its deepest point alone
        alone = RegionGrowingSegmenter((45.0, 90.0), 1)
        alone.start(item.image_hu[k], item.spacing_zyx)
        assert np.array_equal(mask[k], alone.click([deepest_point(target[k])], [])[0])
        assert score == pytest.approx(dice(mask[k], target[k]))


@pytest.mark.real_data
def test_the_floors_band_is_chosen_on_the_other_fold(two_volumes):
    name, settings = method_settings("region")
    chosen, everything = run_ceiling(name, settings, two_volumes, folds=5)
    assert len(everything) == len(settings) * 2 and len(chosen) == 2
    for record in chosen:
        other = [r for r in everything if r.fold != record.fold]
        best = max(dict.fromkeys(r.setting for r in other), key=lambda s: next(r.dice_clicked for r in other
                                                                              if r.setting == s))
        assert record.setting == best


@pytest.mark.real_data
def test_only_a_model_takes_the_true_bleeds_box(two_volumes):
    with pytest.raises(ValueError, match="Only a model takes the true bleed's box"):
        every_slice_mask(RegionGrowingSegmenter((45.0, 90.0), 1), two_volumes[0], clicked_bleed(two_volumes[0].truth),
                         truth_box=True)
