"""What automatic segmentation costs per whole CT on this CPU, in one process: the shipped bleed
detector (probabilities of every slice, then its regions) against the floor it replaces (the
50-90 HU band's seeds, then a lite-base click and propagation per seed), and against encoding
every slice with lite-base (what the issue allows: "its encoding plus a little").

Real ct-ich whole CTs of ../shared/data (512x512, 5 mm slices), with and without bleed; the first
call of each kind is left out as warm-up. Writes bench/results/auto_detection.json.
Run: .venv/bin/python bench/bench_auto_detection.py [--quick]
"""

import argparse
import json
import platform
import time
from pathlib import Path

import SimpleITK as sitk
import torch

from SAMIHSLib.cpu_info import cpu_info
from SAMIHSLib.cpu_tuning import tune_process_for_inference
from SAMIHSLib.io.atomic_write import write_text_atomic

REPO = Path(__file__).resolve().parents[1]
VOLUMES = REPO.parent / "shared" / "data" / "ct-ich-volumes"
PATIENTS = ("075", "068", "056", "099")  # two with bleed, two without
SPACING_ZYX = (5.0, 0.45, 0.45)


def seconds(function) -> float:
    started = time.perf_counter()
    function()
    return round(time.perf_counter() - started, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="two volumes, no band floor")
    args = parser.parse_args()
    tune_process_for_inference()
    from SAMIHSLib.interaction.predictor import load_predictor
    from SAMIHSLib.io.volume_io import AxialStack, CTVolume
    from SAMIHSLib.volume.automatic import load_detector
    from SAMIHSLib.volume.segmentation import VolumePrompts, auto_seed_clicks, segment_volume

    detector = load_detector()
    predictor = load_predictor("lite-base", engine="openvino")
    patients = PATIENTS[:2] if args.quick else PATIENTS
    rows = []
    for index, patient in enumerate(patients):
        image = sitk.GetArrayFromImage(sitk.ReadImage(str(VOLUMES / "images" / f"{patient}.nii.gz")))
        stack = AxialStack.of(CTVolume(image, SPACING_ZYX[::-1], (0.0, 0.0, 0.0), torch.eye(3).numpy(), patient))
        if index == 0:  # warm-up: first calls compile and allocate
            detector.regions(detector.probabilities(image, SPACING_ZYX), SPACING_ZYX)
        row = {"volume": patient, "slices": int(image.shape[0])}
        probability = {}
        row["detector_probabilities_s"] = seconds(
            lambda: probability.setdefault("p", detector.probabilities(image, SPACING_ZYX)))
        row["detector_regions_s"] = seconds(lambda: detector.regions(probability["p"], SPACING_ZYX))
        predictor.cache.clear()
        predictor.set_volume(image, SPACING_ZYX)
        row["encode_every_slice_s"] = seconds(lambda: [predictor.encode_slice(k) for k in range(image.shape[0])])
        if not args.quick:
            predictor.cache.clear()
            row["band_seeds_and_lite_base_s"] = seconds(
                lambda: segment_volume(predictor, stack, VolumePrompts(auto_seed_clicks(stack))))
        rows.append(row)
        print(row)
    result = {"cpu": cpu_info(), "python": platform.python_version(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "engine for lite-base": predictor.engine_description,
              "volumes": rows,
              "detector_vs_encoding_ratio": round(
                  sum(r["detector_probabilities_s"] + r["detector_regions_s"] for r in rows)
                  / sum(r["encode_every_slice_s"] for r in rows), 3)}
    write_text_atomic(REPO / "bench" / "results" / "auto_detection.json", json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "cpu"}, indent=2))


if __name__ == "__main__":
    main()
