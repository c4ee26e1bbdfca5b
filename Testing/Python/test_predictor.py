"""The predictor: embedding cache, prompts, bounded memory, real accuracy on ct-ich slices."""

import numpy as np
import torch
import pytest

from SAMIHSLib.interaction.click_segmentation import ClickSegmenter
from SAMIHSLib.metrics import dice
from SAMIHSLib.interaction.predictor import SAMIHSPredictor, SliceEmbeddingCache
from SAMIHSLib.interaction.prompts import SlicePrompt
from SAMIHSLib.io.validation import InputError

from conftest import SHARED_PIXEL_SPACING_MM
from SAMIHSLib.interaction.regions import deepest_point


def _count_encoder_calls(model):
    calls = []
    handle = model.image_encoder.register_forward_hook(lambda *_: calls.append(1))
    return calls, handle


def test_second_prompt_on_a_slice_does_not_run_the_encoder(lite_model, small_phantom):
    predictor = SAMIHSPredictor(lite_model)
    predictor.set_volume(small_phantom.volume_hu, small_phantom.spacing_zyx)
    calls, handle = _count_encoder_calls(lite_model)
    try:
        predictor.predict(8, SlicePrompt(box=(100, 100, 140, 140)))
        predictor.predict(8, SlicePrompt(box=(90, 90, 150, 150)))
        predictor.predict(8, SlicePrompt(positive_points=[(120, 120)]))
        assert len(calls) == 1
        predictor.predict(9, SlicePrompt(box=(100, 100, 140, 140)))
        assert len(calls) == 2
        # A different volume (edited content) must not reuse embeddings.
        edited = small_phantom.volume_hu.copy()
        edited[8, 0, 0] += 1
        predictor.set_volume(edited, small_phantom.spacing_zyx)
        predictor.predict(8, SlicePrompt(box=(100, 100, 140, 140)))
        assert len(calls) == 3
    finally:
        handle.remove()


def test_cache_is_bounded_in_bytes(lite_model, small_phantom):
    embedding_bytes = 256 * 64 * 64 * 4
    predictor = SAMIHSPredictor(lite_model, SliceEmbeddingCache(max_bytes=2 * embedding_bytes))
    predictor.set_volume(small_phantom.volume_hu[:4], small_phantom.spacing_zyx)
    for k in range(4):
        predictor.encode_slice(k)
    assert len(predictor.cache) == 2 and predictor.cache.nbytes <= 2 * embedding_bytes
    assert predictor.is_encoded(3) and not predictor.is_encoded(0)  # least recently used went first


def test_output_is_at_native_resolution_with_iou(lite_model, small_phantom):
    predictor = SAMIHSPredictor(lite_model)
    predictor.set_volume(small_phantom.volume_hu[8][:200, :240], small_phantom.spacing_zyx)  # non-square slice
    result = predictor.predict(0, SlicePrompt(box=(150, 60, 200, 110)))
    assert result.mask.shape == (200, 240) and result.mask.dtype == bool
    assert 0.0 < result.predicted_iou <= 1.2


@pytest.mark.parametrize("bad, message", [
    (np.full((1, 8, 8), np.nan), "NaN"),
    (np.zeros((2, 3, 8, 8)), "2D or 3D"),
    (np.zeros((0, 8, 8)), "empty"),
    (np.random.default_rng(0).integers(0, 4000, (1, 32, 32)), "does not look like CT"),
])
def test_bad_volumes_are_refused(lite_model, bad, message):
    with pytest.raises(InputError, match=message):
        SAMIHSPredictor(lite_model).set_volume(bad)


def test_click_outside_the_image_is_refused(lite_model, small_phantom):
    predictor = SAMIHSPredictor(lite_model)
    predictor.set_volume(small_phantom.volume_hu, small_phantom.spacing_zyx)
    with pytest.raises(InputError, match="outside the image"):
        predictor.predict(3, SlicePrompt(positive_points=[(300.0, 10.0)]))
    with pytest.raises(InputError, match="outside the volume"):
        predictor.predict(99, SlicePrompt(positive_points=[(10.0, 10.0)]))


@pytest.mark.real_data
@pytest.mark.slow
def test_tight_box_on_real_ct_slices(lite_model, real_slices):
    predictor = SAMIHSPredictor(lite_model)
    scores = []
    for _, image, truth in real_slices:
        predictor.set_volume(image)
        rows, cols = np.nonzero(truth)
        box = (cols.min(), rows.min(), cols.max(), rows.max())
        scores.append(dice(predictor.predict(0, SlicePrompt(box=box)).mask, truth))
    assert np.mean(scores) >= 0.70, scores


@pytest.mark.real_data
@pytest.mark.slow
def test_single_click_on_real_ct_slices(lite_model, real_slices):
    """One click at the deepest point of the largest bleed component; measured mean 0.795 (a fall of
    0.015, a few slices' worth, fails it)."""
    predictor = SAMIHSPredictor(lite_model)
    clicks = ClickSegmenter(predictor)
    scores = []
    for _, image, truth in real_slices:
        predictor.set_volume(image, (5.0, SHARED_PIXEL_SPACING_MM, SHARED_PIXEL_SPACING_MM))
        scores.append(dice(clicks.segment(0, [deepest_point(truth)]).prediction.mask, truth))
    assert np.mean(scores) >= 0.78, scores


@pytest.mark.slow
def test_a_raw_sam_vit_b_state_dict_loads_and_answers_at_1024_with_native_resolution_output(small_phantom, tmp_path):
    """The paper's ViT-B path as a user with SAM's official ``sam_vit_b_01ec64.pth`` takes it (no
    such weights can be had here, so a random ViT-B saved in that file's layout stands in): the raw
    state dict is recognised as ViT-B, loads completely, and answers exactly as the model it was
    saved from, at 1024 px in and the slice's own resolution out."""
    from SAMIHSLib.models import load_model

    original = load_model("vit_b", device="cpu")
    torch.save(original.state_dict(), tmp_path / "sam_vit_b.pth")
    loaded = load_model(tmp_path / "sam_vit_b.pth", device="cpu")
    assert loaded.config.backbone == "vit_b" and loaded.config.image_size == 1024
    prompt = SlicePrompt(positive_points=[(128.0, 100.0)], box=(90, 60, 170, 140))
    answers = []
    for model in (original, loaded):
        predictor = SAMIHSPredictor(model)
        predictor.set_volume(small_phantom.volume_hu[8], small_phantom.spacing_zyx)
        assert tuple(predictor.encode_slice(0).shape) == (1, 256, 64, 64)
        assert predictor.transform.input_size == 1024 and predictor.transform.scale == 4.0
        answers.append(predictor.predict(0, prompt))
    assert answers[0].mask.shape == (256, 256)
    assert np.array_equal(answers[0].mask, answers[1].mask)
    assert answers[0].predicted_iou == pytest.approx(answers[1].predicted_iou, abs=1e-6)
