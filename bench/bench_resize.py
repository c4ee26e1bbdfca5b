"""What resizing in NumPy (``SAMIHSLib/imaging/bilinear.py``, so that the app needs no torch) costs
against PyTorch's kernel, on the sizes every click and every encoded slice resize between: the
decoder's 256 x 256 logits to a 512 x 512 slice (once per decoder call) and a 512 x 512 slice to the
encoder's 256 x 256 input (once per encoded slice). Both alternately in this one process, medians;
the answers are compared value for value. Writes bench/results/resize.json.
Run: .venv/bin/python bench/bench_resize.py
"""

from SAMIHSLib.cpu_tuning import tune_process_for_inference  # noqa: E402

tune_process_for_inference()  # this program owns its process: before torch loads (cpu_tuning)
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from SAMIHSLib.cpu_info import cpu_info
from SAMIHSLib.imaging.bilinear import resize_bilinear
from SAMIHSLib.io.atomic_write import write_text_atomic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved_medians_ms  # noqa: E402

CASES = {"decoder logits 256 -> slice 512 (per decoder call)": ((1, 1, 256, 256), (512, 512)),
         "slice 512 -> encoder input 256, 3 channels (per encoded slice)": ((1, 3, 512, 512), (256, 256))}
ROUNDS = 200


def main() -> dict:
    rows = {}
    for name, (shape, size) in CASES.items():
        values = (np.random.default_rng(0).standard_normal(shape) * 10).astype(np.float32)
        tensor = torch.from_numpy(values)
        ours, theirs = interleaved_medians_ms(
            lambda: resize_bilinear(values, size),
            lambda: F.interpolate(tensor, size=size, mode="bilinear", align_corners=False), ROUNDS)
        identical = bool(np.array_equal(resize_bilinear(values, size),
                                        F.interpolate(tensor, size=size, mode="bilinear", align_corners=False).numpy()))
        rows[name] = {"numpy_ms": round(ours, 3), "torch_ms": round(theirs, 3), "identical": identical}
        print(name, rows[name], flush=True)
    return {"machine": {**cpu_info(), "torch": torch.__version__, "numpy": np.__version__,
                        "torch_kernel": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()},
            "rounds": ROUNDS, "rows": rows}


if __name__ == "__main__":
    result = main()
    write_text_atomic(Path(__file__).resolve().parent / "results" / "resize.json", json.dumps(result, indent=2) + "\n")
