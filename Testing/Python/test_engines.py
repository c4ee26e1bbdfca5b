"""Inference engines: the ONNX Runtime engine reproduces PyTorch on real CT, caches its graphs
by checkpoint hash, carries fine-tuned adapters (folded exactly) and exports the decoder with
exact few-token cross-attentions."""

import numpy as np
import pytest
import torch

from SAMIHSLib.interaction.click_segmentation import ClickSegmenter
from SAMIHSLib.engines import make_engine
from SAMIHSLib.engines.export import DecoderGraph, fold_adapters, model_fingerprint
from SAMIHSLib.engines.few_token_attention import with_few_token_attention
from SAMIHSLib.metrics import dice
from SAMIHSLib.models import AdapterConfig, build_model
from SAMIHSLib.interaction.predictor import SAMIHSPredictor
from SAMIHSLib.interaction.prompts import SlicePrompt

from conftest import SHARED_PIXEL_SPACING_MM, require
from SAMIHSLib.interaction.regions import deepest_point


@pytest.fixture(scope="module")
def onnx_engine(lite_model, tmp_path_factory):
    require("onnxruntime")  # only the tests that run ONNX Runtime need it
    return make_engine(lite_model, "onnxruntime", cache_dir=tmp_path_factory.mktemp("engines"))


@pytest.mark.real_data
@pytest.mark.slow
def test_onnx_masks_match_pytorch_on_real_ct(lite_model, onnx_engine, real_slices):
    """Precision policy: the default CPU engine is exact fp32 (masks >= 0.99 Dice of PyTorch)."""
    reference, fast = SAMIHSPredictor(lite_model), SAMIHSPredictor(lite_model, engine=onnx_engine)
    agreements = []
    for _, image, truth in real_slices:
        click = deepest_point(truth)
        rows, cols = np.nonzero(truth)
        box = (cols.min(), rows.min(), cols.max(), rows.max())
        for predictor in (reference, fast):
            predictor.set_volume(image, (5.0, SHARED_PIXEL_SPACING_MM, SHARED_PIXEL_SPACING_MM))
        for prompt in (SlicePrompt(box=box), SlicePrompt([click], [(0.0, 0.0)])):
            agreements.append(dice(reference.predict(0, prompt).mask, fast.predict(0, prompt).mask))
        clicked = [ClickSegmenter(p).segment(0, [click]).prediction.mask for p in (reference, fast)]
        agreements.append(dice(*clicked))
    assert min(agreements) >= 0.99, agreements


@pytest.mark.slow
def test_graphs_are_cached_by_checkpoint_hash_and_checked(lite_model, tmp_path, monkeypatch):
    require("onnxruntime")
    from SAMIHSLib.engines import onnx_engine

    checks = []
    real_check = onnx_engine.verify_against_torch
    monkeypatch.setattr(onnx_engine, "verify_against_torch", lambda *a, **k: (checks.append(1), real_check(*a, **k))[1])
    make_engine(lite_model, "onnxruntime", cache_dir=tmp_path)
    assert len(checks) == 1  # a fresh export is checked once, not again by the engine built on it
    folder = tmp_path / model_fingerprint(lite_model)
    stamp = (folder / "encoder.onnx").stat().st_mtime_ns
    make_engine(lite_model, "onnxruntime", cache_dir=tmp_path)  # reuses, does not re-export
    assert (folder / "encoder.onnx").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]
    graph = folder / "decoder.onnx"
    graph.write_bytes(graph.read_bytes()[:-1000])  # a cached graph truncated or tampered with
    engine = make_engine(lite_model, "onnxruntime", cache_dir=tmp_path)  # exported again, verified
    assert (folder / "encoder.onnx").stat().st_mtime_ns != stamp
    embedding = engine.encode(np.zeros((1, 3, 256, 256), np.float32))
    assert embedding.shape == (1, 256, 64, 64)


@pytest.mark.slow
def test_fine_tuned_adapters_fold_exactly_and_export(lite_model, tmp_path):
    model = build_model("tiny_vit", AdapterConfig(rank=16)).eval()
    model.load_state_dict(lite_model.state_dict(), strict=False)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("adapter.rescale") or name.endswith("adapter.bias"):
                parameter.normal_(std=0.05)
    assert model_fingerprint(model) != model_fingerprint(lite_model)
    image = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        assert torch.allclose(fold_adapters(model).encode(image), model.encode(image), atol=2e-4)
    engine = make_engine(model, "onnxruntime", cache_dir=tmp_path)  # verified against PyTorch inside
    with torch.no_grad():
        assert float(np.abs(engine.encode(image.numpy()) - model.encode(image).numpy()).max()) < 1e-3


@pytest.mark.parametrize("points", [1, 3, 12])
def test_few_token_attention_decoder_is_exact(lite_model, points):
    """The exported decoder's cheaper cross-attentions give segment-anything's logits and IoU, for
    clicks, clicks with a box, and a mask prompt."""
    rewritten = with_few_token_attention(lite_model)
    generator = torch.Generator().manual_seed(points)
    embedding = torch.randn(1, 256, 64, 64, generator=generator)
    coords = torch.rand(1, points + 2, 2, generator=generator) * 256
    labels = torch.cat([torch.randint(0, 2, (1, points), generator=generator).float(), torch.tensor([[2.0, 3.0]])], 1)
    mask_input = torch.randn(1, 1, 256, 256, generator=generator)
    with torch.no_grad():
        for has_mask in (torch.zeros(1), torch.ones(1)):
            inputs = (embedding, coords, labels, mask_input, has_mask)
            (expected_logits, expected_iou), (logits, iou) = DecoderGraph(lite_model)(*inputs), \
                DecoderGraph(rewritten)(*inputs)
            assert float(expected_logits.abs().max()) > 1.0  # a real answer, not all zeros
            assert torch.allclose(logits, expected_logits, atol=1e-4)
            assert torch.allclose(iou, expected_iou, atol=1e-5)
