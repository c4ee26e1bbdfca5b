"""One click -> 3D bleed on anisotropic phantoms (0.45 x 0.45 x 5 mm), stop rules, separation."""

from dataclasses import replace

import numpy as np
import pytest

from SAMIHSLib.metrics import dice
from SAMIHSLib.phantom import BleedSpec, make_head_phantom
from SAMIHSLib.interaction.predictor import SAMIHSPredictor
from SAMIHSLib.interaction.propagation import PropagationCancelled, PropagationConfig, SlicePropagator
from SAMIHSLib.interaction.session import HemorrhageSession

from SAMIHSLib.interaction.regions import deepest_point

BLEEDS = (BleedSpec("intraparenchymal", (24.0, -12.0, 2.0), (13.0, 10.0, 11.0), 66.0),
          BleedSpec("epidural", (-50.0, 30.0, 5.0), (22.0, 8.0, 18.0), 70.0),
          BleedSpec("subdural", (-40.0, -60.0, 0.0), (40.0, 6.0, 20.0), 62.0))
# Measured with this code (3D Dice of one click): 0.927, 0.769, 0.845.
MIN_DICE = {"intraparenchymal": 0.85, "epidural": 0.65, "subdural": 0.75}


@pytest.fixture(scope="module")
def phantom():
    return make_head_phantom(shape=(24, 512, 512), spacing_zyx=(5.0, 0.45, 0.45), bleeds=BLEEDS, seed=0)


@pytest.fixture(scope="module")
def predictor(lite_model, phantom):
    predictor = SAMIHSPredictor(lite_model)
    predictor.set_volume(phantom.volume_hu, phantom.spacing_zyx)
    return predictor


def click_on(phantom, bleed):
    truth = phantom.bleed_mask(bleed)
    slices = np.nonzero(truth.any(axis=(1, 2)))[0]
    k = int(slices[len(slices) // 2])
    return k, deepest_point(truth[k])


@pytest.mark.parametrize("bleed", range(len(BLEEDS)), ids=[b.kind for b in BLEEDS])
def test_one_click_recovers_the_3d_bleed_and_nothing_else(predictor, phantom, bleed):
    k, click = click_on(phantom, bleed)
    session = HemorrhageSession(predictor)
    outcome = session.click(k, [click])
    truth = phantom.bleed_mask(bleed)
    assert dice(session.mask, truth) >= MIN_DICE[BLEEDS[bleed].kind]
    others = (phantom.bleed_labels > 0) & ~truth
    assert not (session.mask & others).any(), "a click reached another bleed"
    # Propagation stopped by a rule near the bleed, not at the ends of the volume.
    filled = np.nonzero(session.mask.any(axis=(1, 2)))[0]
    truth_slices = np.nonzero(truth.any(axis=(1, 2)))[0]
    assert filled.min() >= truth_slices.min() - 1 and filled.max() <= truth_slices.max() + 1
    assert all("end of volume" not in reason for reason in outcome.stop_reasons.values())


def test_two_bleeds_need_two_clicks(predictor, phantom):
    session = HemorrhageSession(predictor)
    for bleed in (0, 1):
        k, click = click_on(phantom, bleed)
        session.click(k, [click])
    both = phantom.bleed_mask(0) | phantom.bleed_mask(1)
    assert dice(session.mask, both) >= 0.75
    assert not (session.mask & phantom.bleed_mask(2)).any()


def test_stop_rules_fire(lite_model):
    from SAMIHSLib.interaction.predictor import SlicePrediction

    volume = np.full((2, 40, 40), -1000, dtype=np.int16)
    volume[:, 5:35, 5:35] = 70  # blood
    predictor = SAMIHSPredictor(lite_model)
    predictor.set_volume(volume, (5.0, 1.0, 1.0))
    propagator = SlicePropagator(predictor, PropagationConfig())
    previous = np.zeros((40, 40), bool)
    previous[10:20, 10:20] = True
    good = SlicePrediction(previous, 0.9, np.zeros((1, 1)))
    band = propagator.appearance_of(0, previous)

    def reason(prediction, kept):
        return propagator._stop_reason(1, prediction, kept, previous, band)

    assert reason(good, previous) == ("", "")
    rule, text = reason(good, np.zeros_like(previous))
    assert rule == "empty" and "tiny" in text
    rule, text = reason(SlicePrediction(previous, 0.2, None), previous)
    assert rule == "low predicted IoU" and "IoU 0.20" in text
    grown = np.zeros_like(previous)
    grown[5:35, 5:35] = True
    assert reason(good, grown)[0] == "area jump" and "area jump" in reason(good, grown)[1]
    far = np.zeros_like(previous)
    far[26:34, 26:34] = True
    assert reason(good, far)[0] == "left the region" and "left the region" in reason(good, far)[1]
    volume[1, 5:35, 5:35] = 30  # brain, not blood
    predictor.set_volume(volume, (5.0, 1.0, 1.0))
    rule, text = reason(good, previous)
    assert rule == "unlike the bleed" and "unlike the clicked bleed (0% of the mask in its 45-100 HU" in text


def test_fallback_and_second_opinion_rules_name_known_stop_rules():
    with pytest.raises(ValueError, match="Unknown stop rule.*'low iou'.*in fallback_rules"):
        PropagationConfig(fallback_rules=("empty", "low iou"))
    with pytest.raises(ValueError, match="Unknown stop rule.*'unlike'.*in second_opinion_rules"):
        PropagationConfig(second_opinion_rules=("unlike",))


def test_cancel_keeps_the_partial_result(predictor, phantom):
    import threading

    k, click = click_on(phantom, 0)
    seed = HemorrhageSession(predictor).click_segmenter.segment(k, [click]).prediction.mask
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(PropagationCancelled) as raised:
        SlicePropagator(predictor).propagate(k, seed, cancel=cancel)
    assert raised.value.partial.mask[k].any() and raised.value.partial.mask.sum() == seed.sum()


def test_propagation_tries_the_fallbacks_before_it_drops_a_slice_and_says_so(predictor, phantom):
    """Inside the bleed a neighbouring slice is accepted; past its end, where the model's answer
    is empty, the previous mask as a prompt and the seeded hyperdense region are tried before
    propagation stops, and the stop reason names them."""
    truth = phantom.bleed_mask(0)
    slices = np.nonzero(truth.any(axis=(1, 2)))[0]
    k = int(slices[len(slices) // 2])
    propagator = SlicePropagator(predictor)
    _, kept, reason, _ = propagator._next_slice(k + 1, truth[k], propagator.appearance_of(k, truth[k]))
    assert not reason and dice(kept, truth[k + 1]) >= 0.6
    last = int(slices.max())
    _, kept, reason, _ = propagator._next_slice(last + 1, truth[last], propagator.appearance_of(last, truth[last]))
    assert not kept.any()
    assert reason.startswith("empty or tiny mask (also tried: previous mask as prompt"), reason


def test_the_fallbacks_answer_a_slice_the_model_answers_with_low_confidence_only_when_asked(predictor, phantom):
    """With an IoU floor no answer of the model reaches, the slice next to the seed is dropped
    for low predicted IoU when the fallbacks are kept for empty slices; with "low predicted IoU"
    among the fallback rules, the region of the bleed's HU answers it, and that answer follows the
    bleed."""
    truth = phantom.bleed_mask(0)
    slices = np.nonzero(truth.any(axis=(1, 2)))[0]
    k = int(slices[len(slices) // 2])
    strict = PropagationConfig(min_predicted_iou=0.999)
    for rules, answered in ((("empty",), False), (("empty", "low predicted IoU"), True)):
        propagator = SlicePropagator(predictor, replace(strict, fallback_rules=rules))
        _, kept, reason, method = propagator._next_slice(k + 1, truth[k], propagator.appearance_of(k, truth[k]))
        if answered:
            assert not reason and method == "region of the bleed's HU", (reason, method)
            assert dice(kept, truth[k + 1]) >= 0.6
        else:
            assert reason.startswith("low predicted IoU") and "also tried" not in reason and not method, reason


@pytest.mark.real_data
@pytest.mark.slow  # ~1 min on 2 cores (a whole real CT): in `pytest -m slow` (CI runs it)
def test_the_learned_propagation_follows_a_collection_below_the_acute_band_on_a_real_ct(lite_model):
    """Patient 068 of ct-ich-volumes: a 13.9 mL epidural collection over 10 slices whose voxels are
    mostly at or below 45 HU (median 45, 10th percentile 33). Held to the acute 45-100 HU band (the
    default, which the 3D training folds chose overall) propagation loses slices and shrinks (3D Dice
    0.53, a slice missed, measured); the learned propagation, following the bleed's own band and
    contrast, covers every slice. This is the case the option exists for."""
    import SimpleITK as sitk

    from conftest import REPO, unavailable
    from training.volume_eval import clicked_bleed, first_volume_click

    folder = REPO.parent / "shared" / "data" / "ct-ich-volumes"
    if not (folder / "images" / "068.nii.gz").is_file():
        unavailable(f"the shared whole CTs are not at {folder}")
    volume = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "images" / "068.nii.gz"))).astype(np.float32)
    truth = clicked_bleed(sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "masks" / "068.nii.gz"))) > 0)
    assert np.mean(volume[truth] <= 45.0) >= 0.45  # not an acute, hyperdense clot
    k, point = first_volume_click(truth, "deepest", "068")
    predictor = SAMIHSPredictor(lite_model)
    predictor.set_volume(volume, (5.0, 0.45, 0.45))
    bleed_slices = set(np.nonzero(truth.any(axis=(1, 2)))[0].tolist())

    def one_click(config: PropagationConfig):
        session = HemorrhageSession(predictor, propagation_config=config)
        session.click(k, [point])
        covered = {int(s) for s in np.nonzero((session.mask & truth).any(axis=(1, 2)))[0]}
        return dice(session.mask, truth), len(bleed_slices - covered)

    from training.propagation_candidates import LEARNED

    followed, missed = one_click(LEARNED)
    assert missed == 0 and followed >= 0.65, (followed, missed)
    acute, acute_missed = one_click(PropagationConfig())  # the default: the acute bands
    assert acute_missed >= 1 and acute < followed - 0.1, (acute, acute_missed)


PATIENT_049_SPACING_ZYX = (5.0, 0.45, 0.45)


def patient_049():
    """Patient 049 of ct-ich-volumes: (volume in HU, its clicked bleed, the click's slice and point)."""
    import SimpleITK as sitk

    from conftest import REPO, unavailable
    from training.volume_eval import clicked_bleed, first_volume_click

    folder = REPO.parent / "shared" / "data" / "ct-ich-volumes"
    if not (folder / "images" / "049.nii.gz").is_file():
        unavailable(f"the shared whole CTs are not at {folder}")
    volume = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "images" / "049.nii.gz"))).astype(np.float32)
    truth = clicked_bleed(sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "masks" / "049.nii.gz"))) > 0)
    k, point = first_volume_click(truth, "deepest", "049")
    return volume, truth, k, point


@pytest.mark.real_data
@pytest.mark.slow  # ~30 s on 2 cores (a whole real CT)
def test_a_slice_the_model_answers_unsure_is_answered_by_the_fallbacks_on_a_real_ct(lite_model):
    """Patient 049 of ct-ich-volumes: a 3.8 mL epidural over slices 13-16, clicked on 14. On slice
    13 lite-base answers with a predicted IoU of 0.50, under the 0.55 floor: with the fallbacks kept
    for empty slices, propagation stopped there (measured); by default the previous mask as a
    prompt or the seeded region answers it, and every slice of the bleed is covered."""
    volume, truth, k, point = patient_049()
    predictor = SAMIHSPredictor(lite_model)
    predictor.set_volume(volume, PATIENT_049_SPACING_ZYX)
    seed = HemorrhageSession(predictor).click_segmenter.segment(k, [point]).prediction.mask
    bleed_slices = set(np.nonzero(truth.any(axis=(1, 2)))[0].tolist())

    def missed(outcome) -> set:
        return bleed_slices - {int(s) for s in np.nonzero((outcome.mask & truth).any(axis=(1, 2)))[0]}

    empty_only = SlicePropagator(predictor, PropagationConfig(fallback_rules=("empty",))).propagate(k, seed)
    assert missed(empty_only) == {13} and "slice 13: low predicted IoU" in empty_only.stop_reasons["down"]
    default = SlicePropagator(predictor).propagate(k, seed)
    assert not missed(default), default.stop_reasons
    assert 13 in default.slice_methods
    assert dice(default.mask, truth) > dice(empty_only.mask, truth)


@pytest.mark.real_data
@pytest.mark.slow  # ~40 s on 2 cores (a whole real CT, two models)
def test_a_slice_a_click_trained_model_is_dropped_on_is_asked_of_lite_base_when_configured(lite_model):
    """Patient 049 again, with the shipped click-trained ``samihs``: its answer on slice 16 (the
    bleed's last) strays from slice 15's mask and propagation stops there. With
    ``second_opinion_rules`` that slice is asked of lite-base with the same prompts, whose answer
    lies on the bleed. By default propagation asks no one: a second opinion added to be loaded
    when needed is still not loaded after the click."""
    from SAMIHSLib.interaction.predictor import add_second_opinion
    from SAMIHSLib.interaction.propagation import STOP_RULES
    from SAMIHSLib.models import load_model

    volume, truth, k, point = patient_049()
    predictor = add_second_opinion(SAMIHSPredictor(load_model("samihs", device="cpu")), base_model=lite_model,
                                   when_needed=True)
    predictor.set_volume(volume, PATIENT_049_SPACING_ZYX)
    alone = HemorrhageSession(predictor)
    outcome = alone.click(k, [point])
    assert not predictor.second_opinion_loaded
    assert outcome.stop_reasons["up"].startswith("slice 16:") and not alone.mask[16].any()
    asked = HemorrhageSession(predictor, propagation_config=PropagationConfig(second_opinion_rules=STOP_RULES))
    outcome = asked.click(k, [point])
    assert outcome.slice_methods[16] == "second opinion (lite-base)"
    assert dice(asked.mask[16], truth[16]) > 0.3
    assert dice(asked.mask, truth) > dice(alone.mask, truth)
