"""CPU inference engines side by side on the shipped default model, in one process: PyTorch eager
(the reference), ONNX Runtime and OpenVINO (exact fp32), OpenVINO in bf16. Encoder ms per slice,
decoder ms per prompt, a click on an already-encoded slice (prompt encoding + decoder + upsampling
to 512x512 + threshold), one click -> 3D on a 32-slice 512x512 volume (nothing encoded /
background encoder finished), and mask Dice vs PyTorch on the real ct-ich slices (when
../shared/data is there). Peak RSS of a session: bench_session_memory.py.
Writes bench/results/engines.json.  Run: .venv/bin/python bench/bench_engines.py
"""

from SAMIHSLib.cpu_tuning import tune_process_for_inference  # noqa: E402

tune_process_for_inference()  # this program owns its process: before torch loads (cpu_tuning)
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from real_ct import agreement_summary, real_slices  # bench/ is on sys.path when a script here runs
from timing import median_ms

from SAMIHSLib.interaction.background_encoder import BackgroundEncoder
from SAMIHSLib.cpu_info import cpu_info
from SAMIHSLib.engines import ENGINE_CHOICES, EngineError, make_engine
from SAMIHSLib.models import load_model
from SAMIHSLib.phantom import make_head_phantom
from SAMIHSLib.interaction.predictor import SAMIHSPredictor, SliceEmbeddingCache
from SAMIHSLib.interaction.prompts import SlicePrompt
from SAMIHSLib.interaction.regions import deepest_point, slice_with_most
from SAMIHSLib.interaction.session import HemorrhageSession
from SAMIHSLib.io.atomic_write import write_text_atomic

REPO = Path(__file__).resolve().parents[1]


def main(repeats: int = 6) -> dict:
    model = load_model("lite", device="cpu")  # the shipped click-trained model
    phantom = make_head_phantom(shape=(32, 512, 512))
    truth = phantom.bleed_mask(0)
    k = slice_with_most(truth)
    col, row = deepest_point(truth[k])
    cache = Path(tempfile.mkdtemp())
    engines, skipped = {}, {}
    for name in ENGINE_CHOICES:  # an engine this CPU or install cannot run is named, not fatal
        try:
            engines[name] = make_engine(model, name, cache_dir=cache)
        except (EngineError, ImportError) as error:
            skipped[name] = str(error).splitlines()[0]
            print(f"skipped {name}: {skipped[name]}", flush=True)
    image = torch.rand(1, 3, 256, 256).numpy()
    result = {"machine": {**cpu_info(), "python_platform": platform.machine(), "threads": torch.get_num_threads(),
                          "torch": torch.__version__}, "engines": {}, "skipped_engines": skipped}
    for name, engine in engines.items():
        with torch.inference_mode():
            engine.encode(image)
            embedding = engine.encode(image)
            encoder_ms = median_ms(lambda: engine.encode(image), repeats)
            points = (np.array([[[150.0, 110.0]]], np.float32), np.array([[1]]))
            decoder_ms = median_ms(lambda: engine.decode(embedding, points), repeats * 4)
        predictor = SAMIHSPredictor(model, SliceEmbeddingCache(max_bytes=2 << 30), engine=engine)
        predictor.set_volume(phantom.volume_hu, phantom.spacing_zyx)
        predictor.encode_slice(k)
        click_ms = median_ms(lambda: predictor.predict(k, SlicePrompt([(float(col), float(row))], [])), repeats * 4)
        start = time.perf_counter()
        HemorrhageSession(predictor).click(k, [(float(col), float(row))])
        cold_s = time.perf_counter() - start
        warm = SAMIHSPredictor(model, SliceEmbeddingCache(max_bytes=2 << 30), engine=engine)
        warm.set_volume(phantom.volume_hu, phantom.spacing_zyx)
        encoder = BackgroundEncoder(warm)
        encoder.focus(k)
        encoder.wait_idle()
        encoder.stop()
        start = time.perf_counter()
        HemorrhageSession(warm).click(k, [(float(col), float(row))])
        warm_s = time.perf_counter() - start
        result["engines"][name] = {"encoder_ms_per_slice": encoder_ms, "decoder_ms_per_prompt": decoder_ms,
                                   "click_on_encoded_slice_ms": click_ms,
                                   "one_click_3d_s_nothing_encoded": round(cold_s, 2),
                                   "one_click_3d_s_after_background_encoding": round(warm_s, 2)}
        print(name, result["engines"][name], flush=True)
    reference = result["engines"]["torch"]
    for name, figures in result["engines"].items():
        figures["encoder_speedup_vs_torch_eager"] = round(reference["encoder_ms_per_slice"] /
                                                          figures["encoder_ms_per_slice"], 2)
    slices = real_slices()
    for name, engine in engines.items():
        if slices and name != "torch":
            result["engines"][name]["mask_dice_vs_torch_real_ct"] = agreement_summary(model, engine, slices)
    write_text_atomic(REPO / "bench" / "results" / "engines.json", json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
