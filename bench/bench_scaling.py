"""How the cost of one click -> 3D grows, as a user meets it: the `samihs` command itself (process
start, model load from warm caches, reading the CT, the click, propagation, writing the result),
one process per run, wall seconds and peak memory (the child's own maximum RSS).

(a) `samihs segment` on real whole CTs whose largest bleed spans 1 to 19 slices (ct-ich volumes of
    ../shared/data, 36-52 slices of 512x512 at 5 mm), one click at the deepest point of the bleed's
    largest slice; (b) `samihs batch` with that click on one real CT restacked to thinner slices
    (5, 2.5, 1.25 and 0.625 mm: 36 to 288 slices, linear interpolation between slices), the thinnest
    as a thin-slice scanner sends it. Each run with the exact default engine (`auto`) and, on a CPU
    with native bf16, `openvino-bf16`, alternately, so both see the same machine.
With ``--reference SRC`` (another checkout of SAMIHS, e.g. ``git worktree add ../before REV``) every run
is repeated right after with that code (``PYTHONPATH=SRC``), so the two are compared on one machine.
Writes bench/results/scaling.json (or --out).
Run: .venv/bin/python bench/bench_scaling.py [--quick] [--reference SRC] [--out PATH]
"""

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import SimpleITK as sitk

from SAMIHSLib.cpu_info import cpu_info
from SAMIHSLib.engines.precision import cpu_has_native_bf16
from SAMIHSLib.interaction.regions import deepest_point, largest_component, slice_with_most
from SAMIHSLib.io.atomic_write import write_text_atomic

REPO = Path(__file__).resolve().parents[1]
VOLUMES = REPO.parent / "shared" / "data" / "ct-ich-volumes"
# Patients whose largest bleed spans 1, 2, 4, 5, 6, 9, 10, 11, 12, 16 and 19 slices.
BLEED_SERIES = ("079", "058", "084", "067", "073", "049", "053", "078", "050", "075", "051")
RESTACKED = "075"  # 36 slices, a 16-slice bleed
SLICE_MM = (5.0, 2.5, 1.25, 0.625)
SAMIHS = [str(Path(sys.executable).parent / "samihs")]  # the installed command, as users run it


def run_measured(command: Sequence[str], source: Optional[Path] = None) -> Dict[str, float]:
    """Wall seconds and peak RSS (MB) of one child process, run with the code in ``source`` when
    given (else this checkout's); its output is kept if it fails."""
    env = dict(os.environ, PYTHONPATH=str(source)) if source is not None else None
    started = time.perf_counter()
    process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    output = process.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output.decode(errors='replace')[-2000:]}")
    return {"wall_s": round(time.perf_counter() - started, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024.0)}


def clicked_bleed(patient: str):
    """(image path, click (i, j, k), slices of the largest 3D bleed)."""
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(VOLUMES / "masks" / f"{patient}.nii.gz"))) > 0
    bleed = largest_component(mask)
    k = slice_with_most(bleed)
    x, y = deepest_point(bleed[k])
    return VOLUMES / "images" / f"{patient}.nii.gz", (int(x), int(y), k), int(bleed.any(axis=(1, 2)).sum())


def restacked(image: "sitk.Image", slice_mm: float, interpolator: int, outside: float) -> "sitk.Image":
    """``image`` resampled to ``slice_mm`` slices over the same extent (in-plane grid kept)."""
    spacing = image.GetSpacing()
    size = (image.GetSize()[0], image.GetSize()[1], int(round((image.GetSize()[2] - 1) * spacing[2] / slice_mm)) + 1)
    return sitk.Resample(image, size, sitk.Transform(), interpolator, image.GetOrigin(),
                         (spacing[0], spacing[1], slice_mm), image.GetDirection(), outside, image.GetPixelID())


def restack(patient: str, slice_mm: float, folder: Path):
    """The patient's CT linearly resampled to ``slice_mm`` slices; (path, click, slices)."""
    image = sitk.Cast(sitk.ReadImage(str(VOLUMES / "images" / f"{patient}.nii.gz")), sitk.sitkInt16)
    path, (i, j, k), _ = clicked_bleed(patient)
    spacing = image.GetSpacing()
    resampled = restacked(image, slice_mm, sitk.sitkLinear, -1000)
    size = resampled.GetSize()
    name = f"{patient}_z{slice_mm:g}mm"
    out = folder / name / f"{name}.nii.gz"
    out.parent.mkdir(parents=True)
    sitk.WriteImage(resampled, str(out))
    return out, (i, j, int(round(k * spacing[2] / slice_mm))), size[2]


def engines_to_compare() -> List[str]:
    return ["auto", "openvino-bf16"] if cpu_has_native_bf16() else ["auto"]


def code_label(source: Optional[Path]) -> str:
    """Which code ran: this checkout or the reference, by its commit."""
    folder = source or REPO
    commit = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return f"{'reference' if source is not None else 'this'} {commit}".strip()


def main(quick: bool = False, reference: Optional[Path] = None) -> dict:
    engines = engines_to_compare()
    sources = [None] + ([reference] if reference is not None else [])
    labels = {source: code_label(source) for source in sources}  # asks git once per checkout
    work = Path(tempfile.mkdtemp(prefix="samihs-scaling-"))
    series = BLEED_SERIES[:2] if quick else BLEED_SERIES
    first_path, first_click, _ = clicked_bleed(series[0])
    warmup = {}
    for engine in engines:  # exports/compiles once per engine: every timed run starts from warm caches
        for source in sources:
            warmup[f"{engine}, {labels[source]}"] = run_measured(
                SAMIHS + ["segment", str(first_path), "--point", ",".join(map(str, first_click)), "--engine", engine,
                          "-o", str(work / "warm.seg.nrrd")], source)
    segment_runs = []
    for patient in series:
        path, click, bleed_slices = clicked_bleed(patient)
        num_slices = int(sitk.ReadImage(str(path)).GetSize()[2])
        for engine in engines:
            for source in sources:
                report = work / f"{patient}_{engine}.json"
                measured = run_measured(SAMIHS + ["segment", str(path), "--point", ",".join(map(str, click)),
                                                  "--engine", engine, "-o", str(work / f"{patient}.seg.nrrd"),
                                                  "--report", str(report)], source)
                written = json.loads(report.read_text())
                segment_runs.append({"patient": patient, "slices": num_slices,
                                     "bleed_slices": bleed_slices, "code": labels[source],
                                     "engine": written["engine"], "precision": written["precision"], **measured,
                                     "segmenting_s": written["seconds"], "encoded_slices": written["encoded_slices"],
                                     "segmented_slices": written["measurements"]["num_slices"],
                                     "volume_ml": written["measurements"]["volume_ml"]})
                print(json.dumps(segment_runs[-1]), flush=True)
    batch_runs = []
    for slice_mm in (SLICE_MM[:2] if quick else SLICE_MM):
        path, (i, j, k), slices = restack(RESTACKED, slice_mm, work)
        prompts = path.parent / "clicks.json"
        write_text_atomic(prompts, json.dumps({path.name[:-len(".nii.gz")]: {"points": [[i, j, k]]}}))
        for engine in engines:
            for number, source in enumerate(sources):
                out = work / f"batch_{slice_mm:g}_{engine}_{number}"
                measured = run_measured(SAMIHS + ["batch", str(path), "--prompts", str(prompts), "--engine", engine,
                                                  "-o", str(out)], source)
                with open(out / "samihs_batch_report.csv", newline="") as handle:
                    (row,) = list(csv.DictReader(handle))
                batch_runs.append({"slice_mm": slice_mm, "slices": slices, "code": labels[source],
                                   "engine": row["engine"], **measured, "segmenting_s": float(row["seconds"]),
                                   "segmented_slices": int(row["num_slices"] or 0),
                                   "volume_ml": float(row["volume_ml"] or 0.0)})
                print(json.dumps(batch_runs[-1]), flush=True)
    import openvino
    import torch

    return {"machine": {**cpu_info(), "python_platform": platform.machine(), "torch": torch.__version__,
                        "openvino": openvino.get_version()},
            "what": "wall seconds and peak RSS of the samihs process itself, model load from warm caches included",
            "first_run_per_engine": warmup, "one_click_3d": segment_runs, "batch_by_scan_length": batch_runs}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two volumes and two scan lengths (a check, not a result)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "scaling.json"),
                        help="where the JSON goes (one file per CPU class measured)")
    parser.add_argument("--reference", type=Path, help="another SAMIHS checkout, run after each run of this one")
    arguments = parser.parse_args()
    result = main(arguments.quick, arguments.reference)
    if not arguments.quick:
        write_text_atomic(Path(arguments.out), json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
