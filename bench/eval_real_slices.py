"""Click-to-mask accuracy on the real ct-ich slices in ../shared/data (Dice per slice, mean).

Compares, on the same slices and click (deepest point of the largest bleed component):
region growing alone (the classical floor), boxes of fixed sizes around the click, our
intensity-guided click handling, and a tight ground-truth box (an upper reference), on LiteMedSAM
as released (the shipped click-trained model's held-out figures come from ``python -m training
crossval``). Writes bench/results/real_slices.json.  Run: .venv/bin/python bench/eval_real_slices.py
"""

import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing" / "Python"))
from conftest import SHARED_PIXEL_SPACING_MM, SHARED_SLICES, deepest_point  # noqa: E402

from SAMIHSLib.click_segmentation import ClickSegmenter, hyperdense_region  # noqa: E402
from SAMIHSLib.metrics import dice  # noqa: E402
from SAMIHSLib.models import load_model  # noqa: E402
from SAMIHSLib.predictor import SAMIHSPredictor  # noqa: E402
from SAMIHSLib.preprocessing import denoise_slice  # noqa: E402
from SAMIHSLib.prompts import SlicePrompt  # noqa: E402


def main(model_spec: str = "lite-base") -> dict:
    torch.set_num_threads(2)
    predictor = SAMIHSPredictor(load_model(model_spec, device="cpu"))
    clicks = ClickSegmenter(predictor)
    rows = []
    for image_path in sorted((SHARED_SLICES / "images").glob("*.dcm")):
        image = sitk.GetArrayFromImage(sitk.ReadImage(str(image_path)))[0].astype(np.float32)
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(SHARED_SLICES / "masks" / image_path.name)))[0] > 0
        predictor.set_volume(image, (5.0, SHARED_PIXEL_SPACING_MM, SHARED_PIXEL_SPACING_MM))
        click = deepest_point(truth)
        r, c = np.nonzero(truth)
        row = {
            "slice": image_path.stem, "patient": image_path.stem.split("_")[0],
            "region_growing_45_100HU": dice(hyperdense_region(image, click, (45, 100), 0, 7), truth),
            "region_growing_45_100HU_opened": dice(hyperdense_region(denoise_slice(image), click, (45, 100), 2, 7), truth),
            "box_sizes_around_click": dice(clicks._from_box_sizes(0, SlicePrompt([click])).prediction.mask, truth),
            "samihs_click": dice(clicks.segment(0, [click]).prediction.mask, truth),
            "tight_ground_truth_box": dice(predictor.predict(
                0, SlicePrompt(box=(c.min(), r.min(), c.max(), r.max()))).mask, truth),
        }
        rows.append(row)
        print(row, flush=True)
    methods = [k for k in rows[0] if k not in ("slice", "patient")]
    summary = {m: round(float(np.mean([row[m] for row in rows])), 4) for m in methods}
    result = {"model": model_spec, "slices": len(rows), "mean_dice": summary, "per_slice": rows}
    out = REPO / "bench" / "results" / "real_slices.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(summary, indent=2))
    return result


if __name__ == "__main__":
    main(*sys.argv[1:])
