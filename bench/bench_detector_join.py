"""What joining the bleed detector's regions costs a user: `samihs segment` (one click -> 3D, the whole
command: process start, warm model load, the click, propagation, the join, writing) on real whole CTs,
with the join (the default) and with `--no-detector-join`, alternately, in this one process's children
on one machine. Wall seconds and peak RSS of the child, median of the repeats; the mL each wrote.
Writes bench/results/detector_join.json (or --out).
Run: .venv/bin/python bench/bench_detector_join.py [--repeats N] [--out PATH]
"""

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path

from bench_scaling import SAMIHS, clicked_bleed, run_measured

from SAMIHSLib.cpu_info import cpu_info
from SAMIHSLib.io.atomic_write import write_text_atomic

REPO = Path(__file__).resolve().parents[1]
PATIENTS = ("084", "050", "075", "071")  # largest bleed over 4, 8, 16 and 19 slices
MODES = {"joined (default)": [], "model's answer alone": ["--no-detector-join"]}


def main(repeats: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="samihs-join-"))
    path, click, _ = clicked_bleed(PATIENTS[0])  # warm the engine's caches once
    run_measured(SAMIHS + ["segment", str(path), "--point", ",".join(map(str, click)), "-o", str(work / "w.nii.gz")])
    rows = []
    for patient in PATIENTS:
        path, click, slices = clicked_bleed(patient)
        runs = {mode: [] for mode in MODES}
        written = {}
        for _ in range(repeats):
            for mode, extra in MODES.items():
                report = work / "report.json"
                runs[mode].append(run_measured(SAMIHS + ["segment", str(path), "--point", ",".join(map(str, click)),
                                                         "-o", str(work / "out.nii.gz"), "--report", str(report)]
                                               + extra))
                written[mode] = json.loads(report.read_text())
        row = {"patient": patient, "bleed_slices": slices}
        for mode in MODES:
            row[mode] = {"wall_s": statistics.median(r["wall_s"] for r in runs[mode]),
                         "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs[mode]),
                         "segmenting_s": round(written[mode]["seconds"], 2),
                         "volume_ml": written[mode]["measurements"]["volume_ml"],
                         "detector_added": written[mode]["detector_added"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"machine": {**cpu_info(), "python_platform": platform.machine()},
            "what": "wall seconds and peak RSS of `samihs segment` (engine auto), median of the repeats",
            "repeats": repeats, "runs": rows}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "detector_join.json"))
    arguments = parser.parse_args()
    result = main(arguments.repeats)
    write_text_atomic(Path(arguments.out), json.dumps(result, indent=2) + "\n")
