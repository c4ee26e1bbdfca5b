"""An answer grows into the rim of its own HU that the acute bands cut off (``OwnBandGrowth``), on
real whole CTs: patient 084's largest bleed slice, where lite-base's click answers 953 of the bleed's
1,956 pixels, and 072's, where it answers 56 of 283."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from SAMIHSLib.imaging.preprocessing import denoise_slice
from SAMIHSLib.interaction.click_segmentation import ClickSegmentationConfig, ClickSegmenter
from SAMIHSLib.interaction.predictor import SAMIHSPredictor
from SAMIHSLib.interaction.regions import (OwnBandGrowth, component_at, deepest_point, grow_into_own_band,
                                           mm_to_whole_px)
from SAMIHSLib.metrics import dice

from conftest import real_whole_ct

LARGEST_BLEED_SLICE = {"084": 31, "072": 13}


def _largest_bleed_slice(patient: str):
    k = LARGEST_BLEED_SLICE[patient]
    volume, truth = real_whole_ct(patient, slice(k, k + 1))
    return volume.array_hu[0].astype(np.float32), truth[0], tuple(volume.spacing_ijk[::-1])


@pytest.mark.real_data
@pytest.mark.parametrize("patient", sorted(LARGEST_BLEED_SLICE))
def test_a_bleed_without_its_rim_grows_back_into_it_and_no_further(patient):
    """Measured: 084 0.728 -> 0.898, 072 0.174 -> 0.853. (Of a bleed that lost only 0.9 mm, 084's grows
    past its edge: 0.917 -> 0.824; the reach is for answers cut well inside, docs/accuracy-3d.md.)"""
    slice_hu, truth, spacing = _largest_bleed_slice(patient)
    denoised = denoise_slice(slice_hu)
    core = ndi.binary_erosion(truth, iterations=6)  # the bleed with its outer 2.7 mm cut off
    growth = OwnBandGrowth()
    grown = grow_into_own_band(core, denoised, spacing, growth)
    assert np.all(grown[core])  # the answer is kept whole
    reach = ndi.binary_dilation(core, iterations=mm_to_whole_px(growth.reach_mm, spacing, minimum=1))
    assert not (grown & ~reach).any()
    added = grown & ~core
    low = np.percentile(denoised[core], growth.quantile) - growth.margin_hu
    high = np.percentile(denoised[core], 100 - growth.quantile) + growth.margin_hu
    assert added.any() and np.all((denoised[added] >= low) & (denoised[added] <= high))
    labels, _ = ndi.label(grown)
    assert set(np.unique(labels[grown])) == set(np.unique(labels[core]))  # every part touches the answer
    assert dice(grown, truth) > dice(core, truth) + 0.1


@pytest.mark.real_data
def test_a_new_bleeds_answer_grows_and_a_correction_is_answered_as_before(lite_model):
    slice_hu, truth, spacing = _largest_bleed_slice("084")
    predictor = SAMIHSPredictor(lite_model)
    predictor.set_volume(slice_hu[None], spacing)
    click = deepest_point(truth)
    shipped = ClickSegmenter(predictor, ClickSegmentationConfig())
    growing = ClickSegmenter(predictor, ClickSegmentationConfig(own_band_growth=OwnBandGrowth()))
    answer, grown = shipped.segment(0, [click]), growing.segment(0, [click])
    # Measured: 953 pixels, Dice 0.655 with the clicked bleed; grown, 2,095 pixels and 0.883.
    bleed = component_at(truth, click)
    assert np.all(grown.prediction.mask[answer.prediction.mask])
    assert dice(grown.prediction.mask, bleed) > dice(answer.prediction.mask, bleed) + 0.1
    assert grown.method == f"{answer.method}, grown into its own HU band"
    # Corrections are answered as without growth: with a negative click, on a slice with the object's
    # mask (handed in as the prompt), and on a slice the bleed was missed on next to it (area limit).
    corner = (5.0, 5.0)
    corrections = [dict(negative=[corner]), dict(mask_input=answer.prediction.mask),
                   dict(area_limit_px=float(grown.prediction.mask.sum()))]
    for correction in corrections:
        expected = shipped.segment(0, [click], **correction).prediction.mask
        assert np.array_equal(growing.segment(0, [click], **correction).prediction.mask, expected), correction
    # Where corrections grow too, the area limit still holds an answer that would pass it.
    everywhere = ClickSegmenter(predictor, ClickSegmentationConfig(own_band_growth=OwnBandGrowth(),
                                                                   own_band_growth_on_corrections=True))
    limit = float(answer.prediction.mask.sum())
    assert np.array_equal(everywhere.segment(0, [click], area_limit_px=limit).prediction.mask,
                          shipped.segment(0, [click], area_limit_px=limit).prediction.mask)
    roomy = everywhere.segment(0, [click], area_limit_px=float(truth.size)).prediction.mask
    assert roomy.sum() > answer.prediction.mask.sum()


@pytest.mark.real_data
@pytest.mark.parametrize("patient", sorted(LARGEST_BLEED_SLICE))
def test_asked_again_the_model_answers_the_grown_regions_box_within_it_or_keeps_its_first_answer(lite_model, patient):
    slice_hu, truth, spacing = _largest_bleed_slice(patient)
    predictor = SAMIHSPredictor(lite_model)
    predictor.set_volume(slice_hu[None], spacing)
    click = deepest_point(truth)
    config = ClickSegmentationConfig(own_band_growth=OwnBandGrowth(ask_the_model=True))
    first = ClickSegmenter(predictor, ClickSegmentationConfig()).segment(0, [click])
    asked = ClickSegmenter(predictor, config).segment(0, [click])
    grown = grow_into_own_band(first.prediction.mask, predictor.denoised_slice(0), spacing, config.own_band_growth)
    assert asked.method.startswith(f"{first.method}, asked again with its own HU band")
    held_to = ndi.binary_dilation(grown, iterations=mm_to_whole_px(config.region_tolerance_mm, spacing))
    assert not (asked.prediction.mask & ~held_to).any() and asked.prediction.mask[int(click[1]), int(click[0])]
    assert asked.prediction.predicted_iou >= first.prediction.predicted_iou
    assert dice(asked.prediction.mask, truth) > dice(first.prediction.mask, truth)
