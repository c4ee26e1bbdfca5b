"""Can int8 bring the encoder under 250 ms within the precision policy (masks >= 0.99 Dice of
fp32 on real CT)? Post-training quantization (NNCF) of the shipped model's encoder graph for
several choices of what to quantize, calibrated on 32 slices of the project's synthetic
head-CT phantoms; each is compiled by OpenVINO with everything else in bf16 (as the
openvino-bf16 engine), timed beside that engine in the same process, and its masks (the engine's
bf16 decoder on the int8 embedding) compared with PyTorch fp32 on the real ct-ich slices: a
tight box, a click, a click with a negative click.

Needs NNCF, which SAMIHS itself does not:  .venv/bin/pip install nncf
Writes bench/results/int8_scopes.json.  Run: .venv/bin/python bench/bench_int8_scopes.py [variant ...]
"""

from SAMIHSLib.cpu_tuning import tune_process_for_inference  # noqa: E402

tune_process_for_inference()  # this program owns its process: before torch loads (cpu_tuning)
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from real_ct import REPO, agreement_summary, real_slices  # bench/ is on sys.path when a script here runs
from timing import interleaved_medians_ms, median_ms

from SAMIHSLib.cpu_info import cpu_info  # noqa: E402
from SAMIHSLib.engines.onnx_graphs import cached_onnx_graphs, verify_against_torch
from SAMIHSLib.engines.openvino_engine import OpenVinoEngine
from SAMIHSLib.models import load_model
from SAMIHSLib.phantom import make_head_phantom
from SAMIHSLib.imaging.preprocessing import normalize_slice
from SAMIHSLib.imaging.transforms import SliceToModelTransform
from SAMIHSLib.io.atomic_write import write_text_atomic

# what stays in floating point, as ONNX node-name patterns of the TorchScript export
STAGE0 = [r".*layers\.0/.*", r".*patch_embed.*"]  # MBConv at 256x256
WINDOW_PRODUCTS = [r".*attn/MatMul.*"]  # q.k and attention.v inside each window
LOCAL_CONVS = [r".*local_conv.*"]  # depthwise 3x3 between attention and MLP
LINEAR_LAYERS = STAGE0 + WINDOW_PRODUCTS + LOCAL_CONVS  # int8: qkv, proj, fc1, fc2 of stages 1-3 and the neck
VARIANTS = {  # name: (kept in floating point, SmoothQuant on)
    "everything": ([], True),
    "linear_layers_with_smoothquant": (LINEAR_LAYERS, True),
    "linear_layers": (LINEAR_LAYERS, False),
    "linear_layers_stage1_only": (LINEAR_LAYERS + [r".*layers\.[23]/.*", r".*neck.*"], False),
    "linear_layers_stage2_only": (LINEAR_LAYERS + [r".*layers\.[13]/.*", r".*neck.*"], False),
    "linear_layers_stage3_only": (LINEAR_LAYERS + [r".*layers\.[12]/.*", r".*neck.*"], False),
}


def calibration_images(model, phantoms: int = 4, slices: int = 8):
    """Encoder inputs from synthetic head-CT phantoms, as the model sees them."""
    images = []
    for seed in range(100, 100 + phantoms):
        phantom = make_head_phantom(shape=(slices, 512, 512), seed=seed)
        transform = SliceToModelTransform(phantom.volume_hu.shape[1:], model.config.image_size)
        for hu in phantom.volume_hu:
            images.append(transform.image_to_model(normalize_slice(hu, model.config.preprocessing)))
    return images


def quantize(encoder_onnx: Path, calibration, keep_float, smooth_quant: bool, target: Path) -> Path:
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    advanced = AdvancedQuantizationParameters() if smooth_quant else AdvancedQuantizationParameters(
        smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1))
    quantized = nncf.quantize(ov.Core().read_model(str(encoder_onnx)), nncf.Dataset(calibration),
                              model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration),
                              ignored_scope=nncf.IgnoredScope(patterns=keep_float, validate=False) if keep_float else None,
                              advanced_parameters=advanced)
    ov.save_model(quantized, str(target), compress_to_fp16=False)
    return target


def main(names) -> dict:
    model = load_model("lite", device="cpu")  # the shipped click-trained model
    work = Path(tempfile.mkdtemp())
    encoder_onnx, decoder_onnx = cached_onnx_graphs(model, work, lambda e, d: None)
    calibration = calibration_images(model)
    slices = real_slices()
    image = calibration[3]
    bf16 = OpenVinoEngine(encoder_onnx, decoder_onnx, precision="bf16")
    verify_against_torch(bf16, model, max_embedding_difference=None)
    bf16.encode(image)
    result = {"machine": {**cpu_info(), "threads": torch.get_num_threads(), "torch": torch.__version__},
              "openvino_bf16": {"encoder_ms": median_ms(lambda: bf16.encode(image), 12),
                                "mask_dice_vs_torch_real_ct": agreement_summary(model, bf16, slices)},
              "variants": {}}
    print("bf16", result["openvino_bf16"], flush=True)
    for name in names:
        keep_float, smooth_quant = VARIANTS[name]
        start = time.perf_counter()
        graph = quantize(encoder_onnx, calibration, keep_float, smooth_quant, work / f"{name}.xml")
        quantize_s = time.perf_counter() - start
        engine = OpenVinoEngine(graph, decoder_onnx, precision="bf16")
        engine.encode(image)
        int8_ms, bf16_ms = interleaved_medians_ms(lambda: engine.encode(image), lambda: bf16.encode(image), 16)
        result["variants"][name] = {"kept_in_floating_point": keep_float, "smooth_quant": smooth_quant,
                                    "encoder_ms": int8_ms, "bf16_encoder_ms_same_time": bf16_ms,
                                    "ratio_to_bf16": round(int8_ms / bf16_ms, 3), "quantize_s": round(quantize_s),
                                    "mask_dice_vs_torch_real_ct": agreement_summary(model, engine, slices)}
        print(name, result["variants"][name], flush=True)
    write_text_atomic(REPO / "bench" / "results" / "int8_scopes.json", json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:] or list(VARIANTS))
