"""A click-trained model whose answer misses the click asks the model it was fine-tuned from
(lite-base, through its own click handling) before falling back to the click's intensity region;
where its own answer holds the click, nobody else is asked, unless (an option) the click is on acute
blood and that answer is mostly not blood."""

from pathlib import Path

import numpy as np
import pytest

from SAMIHSLib.interaction.click_segmentation import ClickSegmentationConfig, ClickSegmenter
from SAMIHSLib.interaction.predictor import SAMIHSPredictor, add_second_opinion
from SAMIHSLib.interaction.regions import component_at, deepest_point
from SAMIHSLib.interaction.session import HemorrhageSession
from SAMIHSLib.metrics import dice
from SAMIHSLib.models import load_model

from conftest import unavailable

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
CHRONIC_SDH = "mbh24v072_s019.nrrd"  # hypodense: the fine-tuned model's answer misses the click
ACUTE_IPH = "mbh24v044_s014.nrrd"  # the fine-tuned model answers it itself
TINY_SAH = "mbh24v067_s007.nrrd"  # a 22-pixel clot: the fine-tuned model's answer is mostly brain


@pytest.fixture(scope="module")
def slices():
    from training.datasets import load_dataset

    if not (SHARED_DATA / "mbh-2024-slices").is_dir():
        unavailable(f"the shared real slices are not at {SHARED_DATA}")
    return {c.name: c for c in load_dataset("shared_real", str(SHARED_DATA)) if c.name in (CHRONIC_SDH, ACUTE_IPH, TINY_SAH)}


@pytest.fixture(scope="module")
def fine_tuned():
    return load_model("samihs", device="cpu")


def click_once(predictor: SAMIHSPredictor, case, config: ClickSegmentationConfig = ClickSegmentationConfig()):
    predictor.set_volume(case.image_hu, case.spacing_zyx)
    click = deepest_point(case.mask[0])
    session = HemorrhageSession(predictor, config)
    outcome = session.click(0, [click], propagate=False)
    return session.mask[0], outcome, click


@pytest.mark.real_data
def test_a_missed_click_is_answered_by_the_base_model(slices, fine_tuned, lite_model):
    case = slices[CHRONIC_SDH]
    own, own_outcome, click = click_once(SAMIHSPredictor(fine_tuned), case)
    # the model missed; its own fallbacks answered
    assert own_outcome.slice_methods[0] in ("region mask prompt", "intensity region")
    predictor = add_second_opinion(SAMIHSPredictor(fine_tuned))
    answer, outcome, _ = click_once(predictor, case)
    assert outcome.slice_methods[0].startswith("base model's") and "answered by lite-base" in outcome.message
    assert answer[int(click[1]), int(click[0])]
    # Exactly what lite-base's own click handling answers on that slice.
    base = SAMIHSPredictor(lite_model)
    base.set_volume(case.image_hu, case.spacing_zyx)
    assert np.array_equal(answer, ClickSegmenter(base).segment(0, [click]).prediction.mask)
    target = component_at(case.mask[0].astype(bool), click)
    assert dice(answer, target) > dice(own, target) + 0.1


@pytest.mark.real_data
def test_the_base_model_is_not_asked_when_the_answer_holds_the_click(slices, fine_tuned):
    predictor = add_second_opinion(SAMIHSPredictor(fine_tuned))
    answer, outcome, click = click_once(predictor, slices[ACUTE_IPH])
    assert outcome.slice_methods[0] == "prompt" and not outcome.message and answer[int(click[1]), int(click[0])]
    assert predictor.encoder_calls == 1 and predictor.second_opinion.encoder_calls == 0


UNLIKE = ClickSegmentationConfig(second_opinion_on_unlike_answers=True)


@pytest.mark.real_data
def test_an_answer_to_a_click_on_blood_that_is_mostly_brain_is_put_to_the_base_model_when_asked(slices, fine_tuned):
    case = slices[TINY_SAH]
    target = component_at(case.mask[0].astype(bool), deepest_point(case.mask[0]))
    own, outcome, click = click_once(add_second_opinion(SAMIHSPredictor(fine_tuned)), case)
    assert outcome.slice_methods[0] == "prompt"  # by default the model's own answer stands
    answer, outcome, _ = click_once(add_second_opinion(SAMIHSPredictor(fine_tuned)), case, UNLIKE)
    assert outcome.slice_methods[0].startswith("base model's") and "mostly not blood" in outcome.message
    assert answer[int(click[1]), int(click[0])] and dice(answer, target) > dice(own, target) + 0.2


@pytest.mark.real_data
def test_a_blood_like_answer_is_kept_and_the_base_model_is_not_even_loaded(slices):
    from SAMIHSLib.interaction.predictor import load_predictor

    fine = load_predictor("samihs", device="cpu", engine="torch")
    answer, outcome, click = click_once(fine, slices[ACUTE_IPH], UNLIKE)
    assert outcome.slice_methods[0] == "prompt" and not outcome.message and not fine.second_opinion_loaded


def test_the_cli_gives_only_a_click_trained_lite_medsam_a_second_opinion_loaded_at_its_first_miss(slices):
    from SAMIHSLib.interaction.predictor import load_predictor

    assert load_predictor("lite-base", device="cpu", engine="torch").second_opinion is None
    fine = load_predictor("samihs", device="cpu", engine="torch")
    assert not fine.second_opinion_loaded  # nothing more to load at start
    answer, outcome, click = click_once(fine, slices[ACUTE_IPH])
    assert outcome.slice_methods[0] == "prompt" and not fine.second_opinion_loaded
    answer, outcome, click = click_once(fine, slices[CHRONIC_SDH])  # a miss: lite-base loads and answers
    assert "answered by lite-base" in outcome.message and answer[int(click[1]), int(click[0])]
    assert fine.second_opinion_loaded and not fine.second_opinion.model.config.trained_with_clicks
    assert fine.second_opinion.cache is fine.cache  # one bounded embedding cache for both models
    assert fine.second_opinion.denoised_slice(0) is fine.denoised_slice(0)  # one volume, filtered once
    assert fine.asked() == [fine, fine.second_opinion]
