"""The OpenVINO engine and the precision policy: exact fp32 by default; bf16 only where
the CPU has native bf16 and its masks on real CT stay >= 0.99 Dice of PyTorch fp32."""

import numpy as np
import pytest

from SAMIHSLib.engines import make_engine
from SAMIHSLib.interaction.engine_agreement import mask_agreements
from SAMIHSLib.models import load_model

from conftest import SHARED_PIXEL_SPACING_MM, require

require("openvino", module_level=True)  # every test here runs OpenVINO
from SAMIHSLib.engines.openvino_engine import OpenVinoEngine, PrecisionNotSupportedError  # noqa: E402
from SAMIHSLib.engines.precision import cpu_has_native_bf16  # noqa: E402


@pytest.fixture(scope="module")
def shipped_model():
    return load_model("lite", device="cpu")


def _agreements(model, engine, real_slices):
    spacing = (5.0, SHARED_PIXEL_SPACING_MM, SHARED_PIXEL_SPACING_MM)
    return mask_agreements(model, engine, [(image, truth) for _, image, truth in real_slices], spacing)


@pytest.mark.real_data
@pytest.mark.slow
def test_openvino_fp32_reproduces_pytorch_on_real_ct(shipped_model, real_slices, tmp_path):
    engine = make_engine(shipped_model, "openvino", cache_dir=tmp_path)
    assert engine.name == "openvino"
    agreements = _agreements(shipped_model, engine, real_slices)
    assert min(agreements) >= 0.99, agreements


def test_openvino_bf16_is_refused_on_a_cpu_without_native_bf16(shipped_model, tmp_path):
    if cpu_has_native_bf16():
        pytest.skip("this CPU has native bf16 (AVX512-BF16/AMX): the refusal is checked on CPUs without it")
    with pytest.raises(PrecisionNotSupportedError):  # AVX2-only CPUs: refused, never emulated
        make_engine(shipped_model, "openvino-bf16", cache_dir=tmp_path)


@pytest.mark.real_data
def test_openvino_bf16_masks_stay_within_policy_on_real_ct(shipped_model, real_slices, tmp_path):
    if not cpu_has_native_bf16():  # a hardware capability, not a missing package: shown as a skip
        pytest.skip("this CPU has no native bf16 (AVX512-BF16/AMX): bf16 masks are checked where it has")
    engine = make_engine(shipped_model, "openvino-bf16", cache_dir=tmp_path)
    agreements = _agreements(shipped_model, engine, real_slices)
    assert np.mean(agreements) >= 0.99, agreements
    assert min(agreements) >= 0.95, agreements  # no single slice far off


def test_unknown_precision_is_refused_before_anything_is_exported(shipped_model, tmp_path):
    with pytest.raises(ValueError, match="precision"):
        OpenVinoEngine.from_model(shipped_model, cache_dir=tmp_path, precision="int4")
    assert not any(tmp_path.iterdir())


@pytest.mark.real_data
def test_the_mask_as_a_convolution_gives_the_same_logits_as_predict_masks_product(real_slices, tmp_path):
    """The decoder graph reads its one mask as a 1x1 convolution (no reorder of the upscaled
    embedding); in fp32 its low-res logits equal the reference product's, value for value."""
    from SAMIHSLib.engines.export import export_onnx
    from SAMIHSLib.imaging.preprocessing import normalize_slice
    from SAMIHSLib.imaging.transforms import SliceToModelTransform
    from SAMIHSLib.interaction.predictor import engine_prompts
    from SAMIHSLib.interaction.prompts import SlicePrompt
    from SAMIHSLib.interaction.regions import box_around, deepest_point

    model = load_model("lite-base", device="cpu")
    engines = {variant: OpenVinoEngine(*export_onnx(model, tmp_path / variant, mask_as_convolution=variant == "conv"))
               for variant in ("product", "conv")}
    compared = answered = 0
    for _, image, truth in real_slices[:6]:
        transform = SliceToModelTransform(image.shape, model.config.image_size)
        embedding = engines["product"].encode(
            transform.image_to_model(normalize_slice(image.astype(np.float32), model.config.preprocessing)))
        for prompt in (SlicePrompt([deepest_point(truth)]), SlicePrompt(box=box_around(truth, 3))):
            points, boxes = engine_prompts(prompt, transform)  # as the predictor hands them to the engine
            product, product_iou = engines["product"].decode(embedding, points, boxes)
            conv, conv_iou = engines["conv"].decode(embedding, points, boxes)
            assert np.array_equal(product, conv) and np.array_equal(product_iou, conv_iou)
            compared += 1
            answered += int((product > 0).any())
    assert compared == 12 and answered >= 6  # real answers, not empty ones agreeing
