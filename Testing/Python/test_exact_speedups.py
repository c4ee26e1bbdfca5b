"""The click path's speed-ups change no mask: the hyperdense region computed on a crop equals
the whole-slice computation, and answers remembered by the predictor equal fresh ones, on real
head CTs (ct-ich volumes from ../shared/data)."""

import numpy as np
import pytest

from conftest import REPO, unavailable
from SAMIHSLib.interaction.click_segmentation import ClickSegmenter
from SAMIHSLib.interaction.predictor import SAMIHSPredictor
from SAMIHSLib.imaging.preprocessing import denoise_slice, denoised_value_at
from SAMIHSLib.interaction.prompts import SlicePrompt
from SAMIHSLib.interaction.regions import (_opened_region_at, box_around, deepest_point, hyperdense_region,
                                           slice_with_most)

VOLUMES = REPO.parent / "shared" / "data" / "ct-ich-volumes"
SPACING_ZYX = (5.0, 0.45, 0.45)  # as the data README sets it


def _volume(patient: str):
    import SimpleITK as sitk

    if not VOLUMES.is_dir():
        unavailable(f"the shared whole CTs are not at {VOLUMES}")
    read = lambda folder: sitk.GetArrayFromImage(sitk.ReadImage(str(VOLUMES / folder / f"{patient}.nii.gz")))  # noqa: E731
    return read("images"), read("masks") > 0


def _whole_slice_region(slice_hu, seed, band, opening, search):
    """The region as it was computed before the crop: every step on the whole slice."""
    in_band = (slice_hu >= band[0]) & (slice_hu <= band[1])
    return _opened_region_at(in_band, (int(round(seed[0])), int(round(seed[1]))), opening, search)


@pytest.mark.real_data
@pytest.mark.parametrize("patient", ["049", "068", "075"])
def test_cropped_region_equals_the_whole_slice_computation_on_real_ct(patient):
    volume, truth = _volume(patient)
    rng = np.random.default_rng(int(patient))
    k = slice_with_most(truth)
    compared = 0
    for index in (k, max(0, k - 3), volume.shape[0] // 3):
        slice_hu = denoise_slice(volume[index])
        seeds = [tuple(rng.integers(0, 512, size=2)) for _ in range(5)] + [(0, 0), (511, 300)]
        if truth[index].any():
            seeds.append(deepest_point(truth[index]))
        for seed in seeds:
            for band in ((45.0, 90.0), (45.0, 100.0), (15.0, 40.0)):
                for opening in (0, 1, 3):
                    for search in (0.0, 6.7):
                        got = hyperdense_region(slice_hu, seed, band, opening, search)
                        expected = _whole_slice_region(slice_hu, seed, band, opening, search)
                        assert np.array_equal(got, expected), (patient, index, seed, band, opening, search)
                        compared += int(expected.any())
    assert compared >= 30  # dozens of regions found: the equality is not only between empty masks


@pytest.mark.real_data
def test_remembered_answers_give_the_masks_fresh_answers_give(lite_model):
    volume, truth = _volume("075")
    k = slice_with_most(truth)
    click = deepest_point(truth[k])
    fresh = SAMIHSPredictor(lite_model)
    fresh.remembered_answers = 0
    remembering = SAMIHSPredictor(lite_model)
    for predictor in (fresh, remembering):
        predictor.set_volume(volume, SPACING_ZYX)
    expected = ClickSegmenter(fresh).segment(k, [click]).prediction.mask
    segmenter = ClickSegmenter(remembering)
    first = segmenter.segment(k, [click]).prediction.mask
    calls = remembering.decoder_calls
    again = segmenter.segment(k, [click]).prediction.mask
    assert calls >= 2 and remembering.decoder_calls == calls  # the second click asked the engine nothing
    assert np.array_equal(first, expected) and np.array_equal(again, expected)
    assert expected.sum() > 500 and (expected & truth[k]).sum() > 0.5 * expected.sum()


@pytest.mark.real_data
def test_a_remembered_answer_is_a_copy_the_caller_may_edit(lite_model):
    volume, truth = _volume("049")
    k = slice_with_most(truth)
    predictor = SAMIHSPredictor(lite_model)
    predictor.set_volume(volume, SPACING_ZYX)
    prompt = SlicePrompt(box=box_around(truth[k], 3))
    answer = predictor.predict(k, prompt)
    answer.mask[:] = False  # a caller that edits what it got
    assert predictor.predict(k, prompt).mask.any()


@pytest.mark.real_data
def test_one_pixel_of_the_denoised_slice_equals_the_whole_slice_filter_on_real_ct(lite_model):
    """A click reads its own pixel's denoised HU without filtering the whole slice: the same value
    at every edge, corner and inside (the crop keeps the slice's own edges)."""
    volume, truth = _volume("068")
    rng = np.random.default_rng(68)
    for index in (slice_with_most(truth), 0):
        slice_hu = volume[index]
        whole = denoise_slice(slice_hu)
        last_row, last_column = slice_hu.shape[0] - 1, slice_hu.shape[1] - 1
        pixels = [(r, c) for r in (0, 1, last_row - 1, last_row) for c in (0, 1, last_column - 1, last_column)]
        pixels += [tuple(rng.integers(0, 512, size=2)) for _ in range(200)]
        for row, column in pixels:
            assert denoised_value_at(slice_hu, row, column) == whole[row, column], (index, row, column)
    predictor = SAMIHSPredictor(lite_model)  # the predictor's read: uncached, then from its cache
    predictor.set_volume(volume, SPACING_ZYX)
    k = slice_with_most(truth)
    row, column = map(int, np.argwhere(truth[k])[0])
    assert predictor.denoised_hu_at(k, column, row) == denoise_slice(volume[k])[row, column]
    predictor._denoised[k] = np.full(volume[k].shape, 7.0, np.float32)
    assert predictor.denoised_hu_at(k, column, row) == 7.0
