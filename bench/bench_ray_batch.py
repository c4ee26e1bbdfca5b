"""Batch throughput on Ray with 1 and 2 workers (one model each, 1 CPU thread each) against the
local batch with one thread, all in one run on the same phantom volumes; volumes per minute and
the ratios. Writes bench/results/ray_batch.json (with the CPU's model and flags).

    .venv/bin/python bench/bench_ray_batch.py [--volumes 6] [--engine torch]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from SAMIHSLib.batch import run_batch
from SAMIHSLib.batch_ray import run_batch_on_ray
from SAMIHSLib.cpu_info import cpu_description
from SAMIHSLib.interaction.predictor import load_predictor
from SAMIHSLib.io.atomic_write import write_text_atomic
from SAMIHSLib.io.volume_io import CTVolume, write_ct
from SAMIHSLib.phantom import BleedSpec, make_head_phantom

REPO = Path(__file__).resolve().parents[1]


def make_volumes(folder: Path, count: int) -> None:
    for index in range(count):
        phantom = make_head_phantom(shape=(12, 256, 256), spacing_zyx=(5.0, 0.9, 0.9), seed=index,
                                    bleeds=(BleedSpec("intraparenchymal", (20.0 - 5 * index, -10.0, 0.0),
                                                      (12.0, 9.0, 10.0), 66.0),))
        write_ct(folder / f"ct{index:02d}.nrrd", CTVolume(phantom.volume_hu, (0.9, 0.9, 5.0), (0, 0, 0), np.eye(3)))


def timed(run) -> float:
    started = time.perf_counter()
    rows = run()
    assert all(row["status"] == "ok" for row in rows.values()), rows
    return time.perf_counter() - started


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--volumes", type=int, default=6)
    parser.add_argument("--engine", default="torch")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        (scratch / "in").mkdir()
        make_volumes(scratch / "in", args.volumes)
        predictor = load_predictor("lite-base", "cpu", args.engine, threads=1)
        seconds = {"local, 1 thread": timed(lambda: run_batch([scratch / "in"], "auto", scratch / "local", predictor))}
        for workers in (1, 2):
            seconds[f"ray, {workers} worker(s) x 1 CPU"] = timed(lambda: run_batch_on_ray(
                [scratch / "in"], "auto", scratch / f"ray{workers}", "lite-base", "cpu", args.engine,
                address="local", workers=workers))
    reference = seconds["local, 1 thread"]
    result = {"cpu": cpu_description(), "volumes": args.volumes, "volume_shape": [12, 256, 256],
              "engine": args.engine, "seconds": {k: round(v, 1) for k, v in seconds.items()},
              "volumes_per_minute": {k: round(60.0 * args.volumes / v, 2) for k, v in seconds.items()},
              "speed_vs_local_1_thread": {k: round(reference / v, 2) for k, v in seconds.items()},
              "ray_2_vs_1_workers": round(seconds["ray, 1 worker(s) x 1 CPU"] / seconds["ray, 2 worker(s) x 1 CPU"], 2),
              "note": "Ray times include starting a local Ray instance and loading one model per worker."}
    write_text_atomic(REPO / "bench" / "results" / "ray_batch.json", json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
