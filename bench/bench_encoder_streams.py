"""Would two propagation directions encoded at once be faster? The default model's OpenVINO fp32
encoder, in one process, three ways, taking turns so all see the same machine: one request on all
physical cores (what the app does), one request on one core, and two requests at once on two
single-core streams (a slice above and a slice below the click, each on its own core). Reports ms
per slice of each and whether the embeddings are equal (thread count must not change answers).
Writes bench/results/encoder_streams.json (or --out).  Run: .venv/bin/python bench/bench_encoder_streams.py
"""

from SAMIHSLib.cpu_tuning import tune_process_for_inference  # noqa: E402

tune_process_for_inference()  # this program owns its process: before torch loads (cpu_tuning)
import argparse
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import torch

from SAMIHSLib.cpu_info import cpu_info
from SAMIHSLib.engines import make_engine
from SAMIHSLib.engines.onnx_graphs import cached_onnx_graphs
from SAMIHSLib.imaging.preprocessing import normalize_slice
from SAMIHSLib.imaging.transforms import SliceToModelTransform
from SAMIHSLib.io.atomic_write import write_text_atomic
from SAMIHSLib.models import load_model
from SAMIHSLib.models.registry import DEFAULT_MODEL
from SAMIHSLib.phantom import make_head_phantom

REPO = Path(__file__).resolve().parents[1]


def _compiled(core, graph: Path, threads: int, streams: int):
    return core.compile_model(str(graph), "CPU", {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": streams,
                                                   "INFERENCE_PRECISION_HINT": "f32"})


def main(rounds: int = 5, slices_per_round: int = 4) -> Dict[str, object]:
    import openvino as ov

    model = load_model(DEFAULT_MODEL, device="cpu")
    make_engine(model, "openvino")  # exports and checks the graphs once, as the app would
    encoder, _ = cached_onnx_graphs(model, None, lambda e, d: None)
    cores = torch.get_num_threads()  # physical cores (cpu_tuning)
    core = ov.Core()
    all_cores, one_core = _compiled(core, encoder, cores, 1), _compiled(core, encoder, 1, 1)
    two_streams = _compiled(core, encoder, cores, 2)
    slice_hu = make_head_phantom(shape=(4, 512, 512)).volume_hu[2]
    transform = SliceToModelTransform(slice_hu.shape, model.config.image_size)
    image = transform.image_to_model(normalize_slice(slice_hu, model.config.preprocessing))
    requests = {"all": all_cores.create_infer_request(), "one": one_core.create_infer_request(),
                "stream_a": two_streams.create_infer_request(), "stream_b": two_streams.create_infer_request()}
    outputs = {name: np.array(request.infer({"image": image})[0]) for name, request in requests.items()}

    def sequential(request) -> Callable[[], None]:
        return lambda: [request.infer({"image": image}) for _ in range(slices_per_round)]

    def two_at_once() -> None:
        halves = [threading.Thread(target=sequential(requests[name])) for name in ("stream_a", "stream_b")]
        for thread in halves:
            thread.start()
        for thread in halves:
            thread.join()

    ways = {f"one request on {cores} cores": (sequential(requests["all"]), slices_per_round),
            "one request on 1 core": (sequential(requests["one"]), slices_per_round),
            "two requests at once, 1 core each": (two_at_once, 2 * slices_per_round)}
    spent: Dict[str, List[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, (run, slices) in ways.items():
            start = time.perf_counter()
            run()
            spent[name].append((time.perf_counter() - start) * 1000.0 / slices)
    medians = {name: round(statistics.median(times), 1) for name, times in spent.items()}
    reference = outputs["all"]
    result = {"machine": {**cpu_info(), "threads": cores, "openvino": ov.get_version()}, "model": DEFAULT_MODEL,
              "rounds": rounds, "slices_per_round": slices_per_round, "ms_per_slice": medians,
              "speedup_of_two_at_once": round(medians[f"one request on {cores} cores"]
                                              / medians["two requests at once, 1 core each"], 3),
              "max_abs_embedding_difference_vs_all_cores": {
                  name: float(np.abs(output - reference).max()) for name, output in outputs.items() if name != "all"}}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "encoder_streams.json"))
    arguments = parser.parse_args()
    write_text_atomic(Path(arguments.out), json.dumps(main(), indent=2) + "\n")
