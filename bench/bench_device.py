"""Latency of SAMIHS on one device (``cuda``, ``mps`` or ``cpu``) with the PyTorch engine.

  python bench/bench_device.py cuda [MODEL] [OUT.json]

Encoder per slice (median of 20), click on an encoded slice (median of 40), and one click -> 3D
on a 32-slice 512x512 phantom (nothing encoded, then every slice it needs encoded). The GPU
figures in docs/speed.md come from this script on a lent H100.
"""

import json
import platform
import sys
import time
from pathlib import Path

from SAMIHSLib.cpu_tuning import tune_process_for_inference  # noqa: E402

tune_process_for_inference()  # this program owns its process: before torch loads (cpu_tuning)
import numpy as np
import torch
from timing import median_ms  # bench/ is on sys.path when a script here runs

from SAMIHSLib.device import resolve_device
from SAMIHSLib.models import load_model
from SAMIHSLib.phantom import make_head_phantom
from SAMIHSLib.interaction.predictor import SAMIHSPredictor, SliceEmbeddingCache
from SAMIHSLib.interaction.prompts import SlicePrompt
from SAMIHSLib.interaction.regions import deepest_point, slice_with_most  # noqa: E402
from SAMIHSLib.interaction.session import HemorrhageSession
from SAMIHSLib.io.atomic_write import write_text_atomic

REPO = Path(__file__).resolve().parents[1]


def main(device_name: str = "cuda", model_spec: str = "lite", out: str = "") -> dict:
    device = resolve_device(device_name)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def timed(function):
        def run():
            function()
            sync()
        return run

    model = load_model(model_spec, device=str(device))
    phantom = make_head_phantom(shape=(32, 512, 512))
    truth = phantom.bleed_mask(0)
    k = slice_with_most(truth)
    col, row = deepest_point(truth[k])
    click = (float(col), float(row))
    image = torch.rand(1, 3, model.config.image_size, model.config.image_size, device=device)
    with torch.inference_mode():
        for _ in range(3):
            timed(lambda: model.encode(image))()
        encoder_ms = median_ms(timed(lambda: model.encode(image)), 20)
    predictor = SAMIHSPredictor(model, SliceEmbeddingCache(max_bytes=2 << 30))
    predictor.set_volume(phantom.volume_hu, phantom.spacing_zyx)
    predictor.encode_slice(k)
    prompt = SlicePrompt([click], [])
    click_ms = median_ms(timed(lambda: predictor.predict(k, prompt)), 40)
    start = time.perf_counter()
    fresh = SAMIHSPredictor(model, SliceEmbeddingCache(max_bytes=2 << 30))
    fresh.set_volume(phantom.volume_hu, phantom.spacing_zyx)
    session = HemorrhageSession(fresh)
    session.click(k, [click])
    sync()
    cold_s = time.perf_counter() - start
    start = time.perf_counter()
    HemorrhageSession(fresh).click(k, [click])  # every slice it needs is now encoded
    sync()
    warm_s = time.perf_counter() - start
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    result = {"device": name, "torch": torch.__version__, "model": model_spec,
              "encoder_ms_per_slice": encoder_ms, "click_on_encoded_slice_ms": click_ms,
              "one_click_3d_s_nothing_encoded": round(cold_s, 2), "one_click_3d_s_all_encoded": round(warm_s, 2),
              "segmented_ml": round(float(session.mask.sum()) * float(np.prod(phantom.spacing_zyx)) / 1000.0, 2)}
    path = Path(out) if out else REPO / "bench" / "results" / f"device_{device.type}.json"
    write_text_atomic(path, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(*sys.argv[1:])
