"""What a training step draws and how its bleeds look: subtype flags come from the data (pixel
classes or per-slice flags), subtype-balanced sampling draws rare subtypes more often by the stated
rule and splits one draw between processes, an aged bleed is hypodense or isodense where the
bleed is and nowhere else, and a zoomed image shows a part of the slice larger, its bleed with it."""

from collections import Counter

import numpy as np
import pytest

from training.augment import zoom_in
from training.batches import slice_flags, training_slices
from training.bleed_age import AGED_MEAN_HU, age_bleeds
from training.datasets import Case, _slice_subtype_flags, read_shared_real
from training.subtype_sampling import WeightedEpochSampler, sampling_weights, subtype_group
from training.training_config import TrainingConfig

from conftest import REPO, SHARED_VOLUMES, real_whole_ct, unavailable


@pytest.fixture(scope="module")
def real_flags():
    """The subtype flags of every real training slice: the shared slices' pixel classes and the
    per-slice flags of two whole CTs with subdural and epidural bleeds."""
    if not SHARED_VOLUMES.is_dir():
        unavailable(f"the shared data is not at {SHARED_VOLUMES.parent}")
    cases = read_shared_real(SHARED_VOLUMES.parent)
    flags = _slice_subtype_flags(SHARED_VOLUMES / "slices.csv")
    for patient in ("051", "071"):
        volume, mask = real_whole_ct(patient)
        cases.append(Case(patient, "ct-ich/" + patient, volume.array_hu, mask, (5.0, 0.45, 0.45),
                          slice_subtypes=flags[patient]))
    return [item.flags for item in training_slices(cases)], cases


def test_slice_flags_read_pixel_classes_and_per_slice_flags(real_flags):
    _, cases = real_flags
    mbh = [case for case in cases if case.subtype_labels is not None]
    assert mbh, "the MBH slices carry pixel classes"
    seen = Counter(name for case in mbh for k in case.hemorrhage_slices() for name in slice_flags(case, k))
    assert {"SAH", "SDH", "IVH", "IPH"} <= set(seen)
    volume_071 = next(case for case in cases if case.name == "071")
    assert slice_flags(volume_071, 11) == ("IPH", "SDH")  # slices.csv numbers 071's slice 12 from 1
    assert slice_flags(volume_071, 16) == ("SDH",)
    plain = next(case for case in cases if case.subtype_labels is None and not case.slice_subtypes)
    assert slice_flags(plain, plain.hemorrhage_slices()[0]) == ()


def test_balanced_sampling_gives_each_subtype_group_its_stated_share(real_flags):
    flags, _ = real_flags
    counts = Counter(name for item in flags for name in set(item))
    groups = [subtype_group(sorted(set(item)), counts) for item in flags]
    sizes = Counter(groups)
    assert len(sizes) >= 4
    for balance in (0.0, 0.5, 1.0):
        weights = sampling_weights(flags, balance)
        assert sum(weights) == pytest.approx(1.0)
        share = Counter()
        for group, weight in zip(groups, weights):
            share[group] += weight
        expected = {g: n ** (1 - balance) for g, n in sizes.items()}
        total = sum(expected.values())
        for group in sizes:
            assert share[group] == pytest.approx(expected[group] / total)
    rarest = min(sizes, key=sizes.get)
    assert sampling_weights(flags, 1.0)[groups.index(rarest)] > sampling_weights(flags, 0.0)[groups.index(rarest)]
    with pytest.raises(ValueError, match="between 0 and 1"):
        sampling_weights(flags, 1.5)


def test_the_weighted_sampler_is_seeded_per_epoch_split_between_processes_and_follows_the_weights():
    weights = [0.5, 0.25, 0.125, 0.125, 0.0]
    one = WeightedEpochSampler(weights, seed=3)
    one.set_epoch(2)
    first, again = list(one), list(one)
    assert first == again and len(first) == len(one) == 5
    one.set_epoch(3)
    assert list(one) != first  # a new epoch draws anew
    ranks = [WeightedEpochSampler(weights, num_replicas=2, rank=r, seed=3) for r in (0, 1)]
    for sampler in ranks:
        sampler.set_epoch(2)
    shares = [list(sampler) for sampler in ranks]
    assert len(shares[0]) == len(shares[1]) == 3
    assert sorted(shares[0] + shares[1]) == sorted(first + first[:1])  # one draw, padded to an equal share
    drawn = Counter()
    for epoch in range(2000):
        one.set_epoch(epoch)
        drawn.update(list(one))
    assert drawn[4] == 0
    for index, weight in enumerate(weights[:4]):
        assert drawn[index] / 10000 == pytest.approx(weight, abs=0.02)


def test_an_aged_bleed_is_older_blood_inside_and_the_rest_of_the_slice_is_untouched(real_slices):
    name, image, mask = next(item for item in real_slices if item[2].sum() > 500)
    image = image.astype(np.float32)
    before = image.copy()
    rng = np.random.default_rng(1)
    aged, count = age_bleeds(image, mask, rng, probability=1.0)
    assert count >= 1 and np.array_equal(image, before)  # the input is kept
    assert float(np.median(image[mask])) > 50.0  # an acute bleed ...
    assert AGED_MEAN_HU[0] - 1 <= float(np.median(aged[mask])) <= AGED_MEAN_HU[1] + 1  # ... made subacute/chronic
    from scipy import ndimage as ndi

    far = ~ndi.binary_dilation(mask, np.ones((3, 3), bool), iterations=5)  # past the edge fade (4 sigma)
    assert np.array_equal(aged[far], image[far]), name
    untouched = np.random.default_rng(1)
    same, none = age_bleeds(image, mask, untouched, probability=0.0)
    assert same is image and none == 0
    assert untouched.random() == np.random.default_rng(1).random()  # older recipes draw the same numbers


def test_the_config_rejects_a_balance_or_probability_outside_0_1(tmp_path):
    path = tmp_path / "bad.json"
    for key in ("subtype_balance", "aged_bleed_probability", "boundary_weight_floor", "zoom_probability"):
        path.write_text('{"%s": 1.5}' % key)
        with pytest.raises(ValueError, match=key):
            TrainingConfig.from_json(path)
    config = TrainingConfig.from_json(REPO / "training" / "experiments" / "samihs_staged_balanced_aged_folds.json")
    assert config.subtype_balance == 0.5 and config.aged_bleed_probability == 0.2
    floored = TrainingConfig.from_json(REPO / "training" / "experiments" / "samihs_staged_thin_floor_folds.json")
    assert floored.boundary_weight_floor == 0.5
    path.write_text('{"max_zoom": 0.5}')
    with pytest.raises(ValueError, match="max_zoom"):
        TrainingConfig.from_json(path)
    zoomed = TrainingConfig.from_json(REPO / "training" / "experiments" / "samihs_staged_zoom_folds.json")
    assert (zoomed.zoom_probability, zoomed.max_zoom) == (0.5, 3.0)


def test_a_zoomed_slice_keeps_its_size_and_shows_its_bleed_larger(real_slices):
    small = [item for item in real_slices if 0 < item[2].sum() < 1500]
    assert small, "no small bleed among the shared slices"
    rng = np.random.default_rng(3)
    for name, image, mask in small[:6]:
        before = image.copy()
        zoomed, zoomed_mask, zoom = zoom_in(image, mask, rng, max_zoom=3.0)
        assert np.array_equal(image, before)  # the input is kept
        assert zoomed.shape == image.shape and zoomed_mask.shape == mask.shape
        assert 1.0 <= zoom <= 3.0 + 1e-6
        # the bleed's pixels grow with the square of the zoom (less what the crop cuts off)
        assert zoomed_mask.any(), name
        assert zoomed_mask.sum() <= mask.sum() * zoom ** 2 * 1.5 + 4, name
        assert zoomed.min() >= image.min() - 1e-3 and zoomed.max() <= image.max() + 1e-3
    # a zoom of 1 is the slice itself; a bleed-free slice is cropped anywhere
    name, image, mask = small[0]
    same, same_mask, one = zoom_in(image, mask, rng, max_zoom=1.0)
    assert one == 1.0 and np.allclose(same, image) and np.array_equal(same_mask, mask)
    free, free_mask, zoom = zoom_in(image, np.zeros_like(mask), np.random.default_rng(0), max_zoom=2.0)
    assert not free_mask.any() and free.shape == image.shape
    with pytest.raises(ValueError, match="max_zoom"):
        zoom_in(image, mask, rng, max_zoom=0.5)
