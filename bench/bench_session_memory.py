"""Peak RSS of a 40-slice 512x512 session with every slice encoded (default cache bound), in a
fresh process. Writes bench/results/session_memory_<engine>.json.
Run: .venv/bin/python bench/bench_session_memory.py [torch|onnxruntime|openvino|openvino-bf16]"""

import json
import resource
import sys
from pathlib import Path

from SAMIHSLib.cpu_tuning import tune_process_for_inference  # noqa: E402

tune_process_for_inference()  # this program owns its process: before torch loads (cpu_tuning)
from SAMIHSLib.engines import make_engine
from SAMIHSLib.models import load_model
from SAMIHSLib.phantom import make_head_phantom
from SAMIHSLib.interaction.predictor import SAMIHSPredictor
from SAMIHSLib.interaction.prompts import SlicePrompt
from SAMIHSLib.io.atomic_write import write_text_atomic

REPO = Path(__file__).resolve().parents[1]


def main(engine_name: str = "torch") -> dict:
    model = load_model("lite", device="cpu")  # the shipped click-trained model
    predictor = SAMIHSPredictor(model, engine=make_engine(model, engine_name))
    phantom = make_head_phantom(shape=(40, 512, 512))
    predictor.set_volume(phantom.volume_hu, phantom.spacing_zyx)
    for k in range(40):
        predictor.predict(k, SlicePrompt(box=(280.0, 190.0, 350.0, 270.0)))
    result = {"engine": engine_name, "slices_encoded": len(predictor.cache),
              "cache_mb": round(predictor.cache.nbytes / 2 ** 20, 1),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    out = REPO / "bench" / "results" / f"session_memory_{engine_name}.json"
    write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(*sys.argv[1:])
