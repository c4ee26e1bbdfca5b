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
