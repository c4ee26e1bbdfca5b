"""What a corrective click costs before the model runs: finding the 3D object the click belongs to
(``SAMIHSLib.interaction.session.object_through``), which re-propagation then replaces.

On a real bleed (patient 075 of ../shared/data/ct-ich-volumes, its true mask) at the scan's own 5 mm
and restacked to 0.625 mm as a thin-slice scanner sends it (281 slices), the object at the deepest
point of the largest bleed slice, found as it was (the whole scan labelled as int32, then np.isin)
and as it is now (only the mask's own box labelled), alternately in this one process: milliseconds,
peak numpy allocations (tracemalloc) and whether the two objects are the same voxels.
Writes bench/results/correction_object.json.  Run: .venv/bin/python bench/bench_correction_object.py [--out PATH]
"""

import argparse
import json
import platform
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from SAMIHSLib.cpu_info import cpu_info
from SAMIHSLib.interaction.regions import deepest_point, slice_with_most
from SAMIHSLib.interaction.session import object_through
from SAMIHSLib.io.atomic_write import write_text_atomic

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing" / "Python"))
from test_session import _object_through_whole_scan  # noqa: E402  (the test's oracle: the way it was)
from bench_scaling import restacked  # noqa: E402
from timing import interleaved_medians_ms  # noqa: E402

MASK = REPO.parent / "shared" / "data" / "ct-ich-volumes" / "masks" / "075.nii.gz"
SLICE_MM = (5.0, 0.625)
REACH_PX = 3


def restacked_mask(slice_mm: float) -> np.ndarray:
    """(k, j, i) bool: the true mask resampled (nearest) to ``slice_mm`` slices."""
    return sitk.GetArrayFromImage(restacked(sitk.ReadImage(str(MASK)), slice_mm, sitk.sitkNearestNeighbor, 0)) > 0


def peak_mb(function) -> float:
    tracemalloc.start()
    function()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return round(peak / 2 ** 20, 1)


def measure(slice_mm: float) -> dict:
    mask = restacked_mask(slice_mm)
    k = slice_with_most(mask)
    x, y = deepest_point(mask[k])
    anchor = np.zeros(mask.shape[1:], bool)
    anchor[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2] = True
    before = lambda: _object_through_whole_scan(mask, k, anchor, REACH_PX)  # noqa: E731
    now = lambda: object_through(mask, k, anchor, REACH_PX)  # noqa: E731
    ms_before, ms_now = interleaved_medians_ms(before, now, rounds=5)
    return {"slice_mm": slice_mm, "slices": int(mask.shape[0]), "mask_voxels": int(mask.sum()),
            "ms_as_it_was": ms_before, "ms_now": ms_now, "speedup": round(ms_before / ms_now, 1),
            "peak_numpy_mb_as_it_was": peak_mb(before), "peak_numpy_mb_now": peak_mb(now),
            "same_object": bool(np.array_equal(before(), now()))}


def main() -> dict:
    rows = []
    for slice_mm in SLICE_MM:
        rows.append(measure(slice_mm))
        print(json.dumps(rows[-1]), flush=True)
    return {"machine": {**cpu_info(), "python_platform": platform.machine(), "numpy": np.__version__},
            "what": "finding the clicked 3D object before a corrective click's re-propagation; medians of 5 "
                    "alternating rounds", "cases": rows}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "correction_object.json"))
    args = parser.parse_args()
    write_text_atomic(Path(args.out), json.dumps(main(), indent=2) + "\n")
