"""A click on an encoded slice, as the default model (`lite-base`) and the one-prompt fine-tuned
`samihs` answer it, on real whole CTs: the click handling's candidate boxes, their decoder calls,
the region rules and the upsampling.

The path as it was (each hyperdense region computed on the whole slice, the head's area computed
per click, the click's HU read from the whole denoised slice, nothing remembered) and as it is now
(regions on the crop that can hold them, the area once per slice, the click's HU from its own
3x3 neighbourhood, the predictor's remembered answers and denoised slices cleared before each
click, so the click is a first one) run alternately in this one process on the same slices, and their masks are
compared pixel for pixel. Also: the same click again (answers remembered), and the decoder alone.
The click on the 24 bleed volumes of ../shared/data/ct-ich-volumes: the deepest point of the
largest bleed slice. Writes bench/results/click_path.json.
Run: .venv/bin/python bench/bench_click_path.py [ENGINE ...] [--out PATH]   (default: auto, and openvino-bf16
where native; `samihs` with auto)
"""

from SAMIHSLib.cpu_tuning import tune_process_for_inference  # noqa: E402

tune_process_for_inference()  # this program owns its process: before torch loads (cpu_tuning)
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from SAMIHSLib.cpu_info import cpu_info
from SAMIHSLib.engines.precision import cpu_has_native_bf16
from SAMIHSLib.interaction import click_segmentation
from SAMIHSLib.interaction.click_segmentation import ClickSegmenter
from SAMIHSLib.interaction.predictor import load_predictor
from SAMIHSLib.interaction.prompts import SlicePrompt
from SAMIHSLib.interaction.regions import (_opened_region_at, box_around, deepest_point, head_area_px,
                                           hyperdense_region, largest_component, slice_with_most)
from SAMIHSLib.io.atomic_write import write_text_atomic

REPO = Path(__file__).resolve().parents[1]
VOLUMES = REPO.parent / "shared" / "data" / "ct-ich-volumes"
SPACING_ZYX = (5.0, 0.45, 0.45)
REPEATS = 5


def whole_slice_region(slice_hu, seed, band, opening, search):
    """The region as it was computed before: every step on the whole slice."""
    in_band = (slice_hu >= band[0]) & (slice_hu <= band[1])
    return _opened_region_at(in_band, (int(round(seed[0])), int(round(seed[1]))), opening, search)


class PathAsItWas:
    """While active, the click handling runs as before this change (same decoder calls)."""

    def __init__(self, predictor):
        self.predictor = predictor

    def __enter__(self):
        click_segmentation.hyperdense_region = whole_slice_region
        self.predictor.head_area_px = lambda k: head_area_px(self.predictor.denoised_slice(k))
        self.predictor.denoised_hu_at = lambda k, column, row: float(self.predictor.denoised_slice(k)[row, column])
        self.predictor.remembered_answers = 0

    def __exit__(self, *_):
        click_segmentation.hyperdense_region = hyperdense_region
        del self.predictor.head_area_px
        del self.predictor.denoised_hu_at
        self.predictor.remembered_answers = 64


def clicks():
    for path in sorted((VOLUMES / "masks").glob("*.nii.gz")):
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(path))) > 0
        if mask.any():
            bleed = largest_component(mask)
            k = slice_with_most(bleed)
            volume = sitk.GetArrayFromImage(sitk.ReadImage(str(VOLUMES / "images" / path.name)))
            yield path.name.split(".")[0], volume, k, deepest_point(bleed[k]), bleed[k]


def median_ms(times):
    return round(1000.0 * statistics.median(times), 1)


def forget(predictor, head_area: bool = False) -> None:
    """Forget remembered answers and filtered slices, the second opinion's too, so a click is timed afresh."""
    for asked in predictor.asked():
        asked._answers.clear()
        asked._denoised.clear()
        if head_area:
            asked._head_area.clear()


def decoder_calls(predictor) -> int:
    """Decoder calls so far, the second opinion's included (lite-base answering a click-trained model's miss)."""
    return sum(asked.decoder_calls for asked in predictor.asked())


def bench_engine(engine: str, model: str = "lite-base") -> dict:
    predictor = load_predictor(model, engine=engine)
    segmenter = ClickSegmenter(predictor)
    before, after, again, decoder, calls, identical = [], [], [], [], [], 0
    per_volume = {}
    for name, volume, k, click, bleed in clicks():
        predictor.set_volume(volume, SPACING_ZYX)
        predictor.encode_slice(k)
        masks = {}
        for _ in range(REPEATS):
            with PathAsItWas(predictor):
                forget(predictor)
                started = time.perf_counter()
                masks["before"] = segmenter.segment(k, [click]).prediction.mask
                before.append(time.perf_counter() - started)
            forget(predictor, head_area=True)
            counted = decoder_calls(predictor)
            started = time.perf_counter()
            masks["after"] = segmenter.segment(k, [click]).prediction.mask
            after.append(time.perf_counter() - started)
            calls.append(decoder_calls(predictor) - counted)
            started = time.perf_counter()
            segmenter.segment(k, [click])
            again.append(time.perf_counter() - started)
            prompt = SlicePrompt(box=box_around(bleed, 3))
            predictor._answers.clear()
            started = time.perf_counter()
            predictor.predict(k, prompt)
            decoder.append(time.perf_counter() - started)
        identical += int(np.array_equal(masks["before"], masks["after"]))
        per_volume[name] = {"decoder_calls": calls[-1], "same_mask": bool(np.array_equal(masks["before"], masks["after"]))}
    return {"model": model, "engine": predictor.engine_description, "clicks": len(per_volume),
            "first_click_ms_as_it_was": median_ms(before), "first_click_ms_now": median_ms(after),
            "speedup": round(statistics.median(before) / statistics.median(after), 2),
            "same_click_again_ms": median_ms(again), "one_prompt_ms": median_ms(decoder),
            "decoder_calls_per_first_click": {"median": statistics.median(calls), "max": max(calls)},
            "masks_identical": f"{identical} of {len(per_volume)}", "per_volume": per_volume}


def main(engines) -> dict:
    return {"machine": {**cpu_info(), "python_platform": platform.machine(), "threads": torch.get_num_threads(),
                        "torch": torch.__version__},
            "engines": [bench_engine(engine) for engine in engines] + [bench_engine("auto", "samihs")]}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("engines", nargs="*", help="engines to time (default: auto, and openvino-bf16 where native)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "click_path.json"),
                        help="where the JSON goes (one file per CPU class measured)")
    arguments = parser.parse_args()
    chosen = arguments.engines or (["auto", "openvino-bf16"] if cpu_has_native_bf16() else ["auto"])
    result = main(chosen)
    write_text_atomic(Path(arguments.out), json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items()}, indent=2)[:3000])
