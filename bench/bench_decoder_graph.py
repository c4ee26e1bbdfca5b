"""The exported decoder graph: its single mask read as predict_masks computes it (every mask token's
product with the upscaled embedding, then the first kept) against the same mask as a 1x1
convolution (what ``export_onnx`` writes now), on real whole CTs.

Both graphs are exported here from the same weights and compiled by OpenVINO (fp32, and bf16 where
the CPU has it natively); each decodes the deepest-point click and a box around the bleed on the
largest bleed slice of the 24 bleed volumes of ../shared/data/ct-ich-volumes, alternately in this
one process. Their low-res logits are compared value for value. Writes
bench/results/decoder_graph.json.
Run: .venv/bin/python bench/bench_decoder_graph.py
"""

from SAMIHSLib.cpu_tuning import tune_process_for_inference  # noqa: E402

tune_process_for_inference()  # this program owns its process: before torch loads (cpu_tuning)
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from SAMIHSLib.cpu_info import cpu_info
from SAMIHSLib.engines.export import export_onnx
from SAMIHSLib.engines.openvino_engine import OpenVinoEngine
from SAMIHSLib.engines.precision import cpu_has_native_bf16
from SAMIHSLib.imaging.preprocessing import normalize_slice
from SAMIHSLib.imaging.transforms import SliceToModelTransform
from SAMIHSLib.interaction.predictor import engine_prompts
from SAMIHSLib.interaction.prompts import SlicePrompt
from SAMIHSLib.interaction.regions import box_around
from SAMIHSLib.io.atomic_write import write_text_atomic
from SAMIHSLib.models import load_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_click_path import clicks  # noqa: E402
from timing import interleaved_medians_ms  # noqa: E402

ROUNDS = 5


def prompts(transform: SliceToModelTransform, click, bleed: np.ndarray):
    """The click and a box around the bleed, as the predictor hands them to ``engine.decode``
    ((points, boxes))."""
    return {"click": engine_prompts(SlicePrompt([click]), transform),
            "box": engine_prompts(SlicePrompt(box=box_around(bleed, 3)), transform)}


def bench_model(name: str, precision: str) -> dict:
    """Both decoder graphs of model ``name`` at OpenVINO ``precision``: median ms per decode and
    how many decodes give identical low-res logits."""
    model = load_model(name, device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        graphs = {variant: export_onnx(model, Path(folder) / variant, mask_as_convolution=variant == "convolution")
                  for variant in ("product", "convolution")}
        engines = {variant: OpenVinoEngine(*paths, precision=precision) for variant, paths in graphs.items()}
        times = {"click": ([], []), "box": ([], [])}
        identical = total = 0
        largest_difference = 0.0
        for _, volume, k, click, bleed in clicks():
            transform = SliceToModelTransform(volume[k].shape, model.config.image_size)
            image = transform.image_to_model(normalize_slice(volume[k].astype(np.float32), model.config.preprocessing))
            embedding = engines["product"].encode(image)
            for kind, prompt in prompts(transform, click, bleed).items():
                product = engines["product"].decode(embedding, *prompt)[0]
                convolution = engines["convolution"].decode(embedding, *prompt)[0]
                total += 1
                identical += int(np.array_equal(product, convolution))
                largest_difference = max(largest_difference, float(np.abs(product - convolution).max()))
                medians = interleaved_medians_ms(lambda: engines["product"].decode(embedding, *prompt),
                                                 lambda: engines["convolution"].decode(embedding, *prompt), ROUNDS)
                for spent, median in zip(times[kind], medians):
                    spent.append(median)
    row = {"model": name, "engine": engines["convolution"].name, "decodes_compared": total,
           "logits_identical": f"{identical} of {total}", "largest_logit_difference": largest_difference}
    for kind, (product, convolution) in times.items():
        row[f"{kind}_ms_product"] = round(float(np.median(product)), 1)
        row[f"{kind}_ms_convolution"] = round(float(np.median(convolution)), 1)
        row[f"{kind}_speedup"] = round(float(np.median(product)) / float(np.median(convolution)), 2)
    return row


def main() -> int:
    precisions = ["f32"] + (["bf16"] if cpu_has_native_bf16() else [])
    rows = [bench_model(name, precision) for name in ("lite-base", "samihs") for precision in precisions]
    result = {"machine": {**cpu_info(), "torch": torch.__version__}, "rounds": ROUNDS, "rows": rows}
    out = Path(__file__).resolve().parent / "results" / "decoder_graph.json"
    write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
