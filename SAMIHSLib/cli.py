"""The ``samihs`` command line: ``segment``, ``demo`` (and ``batch``).

Every error a user can cause (bad file, bad click, bad model) ends with a one-line message and
exit status 2, before any output file is written.
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .device import DEVICE_CHOICES
from .engines import ENGINE_CHOICES, EngineError
from .models.checkpoint import CheckpointError
from .validation import InputError

EXIT_USER_ERROR = 2


def _parse_numbers(text: str, counts: Sequence[int], what: str) -> Tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{what} {text!r} must be comma-separated numbers.") from None
    if len(values) not in counts:
        raise InputError(f"{what} {text!r} needs {' or '.join(map(str, counts))} numbers.")
    return values


class _Progress:
    """A tqdm progress bar fed by (done, total, message) callbacks; the total is unknown (not
    "0/1") until the first callback."""

    def __init__(self, description: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=None, desc=description, unit="slice", leave=False, file=sys.stderr)

    def __call__(self, done: int, total: int, message: str) -> None:
        self._bar.total = max(total, 1)
        self._bar.n = done
        self._bar.set_postfix_str(message)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="lite",
                        help="'lite' (embedded default: the shipped click-trained SAMIHS), 'lite-base' "
                             "(LiteMedSAM as released) or a checkpoint path.")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    parser.add_argument("--engine", default="torch", choices=ENGINE_CHOICES,
                        help="Inference backend: torch; onnxruntime or openvino (exact fp32, faster on CPU); "
                             "openvino-bf16 (bf16 on CPUs with native bf16, checked against fp32).")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for inference (default 0: all physical cores).")


def _load_predictor(args: argparse.Namespace):
    import torch

    from .engines import make_engine
    from .models import load_model
    from .predictor import SAMIHSPredictor

    if args.threads < 0:
        raise ValueError(f"--threads must be 0 (all physical cores) or a positive number, not {args.threads}.")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, device=args.device)
    return SAMIHSPredictor(model, engine=make_engine(model, args.engine, threads=args.threads or None))


def run_segment(args: argparse.Namespace) -> int:
    from .measurements import measure_hemorrhage
    from .session import HemorrhageSession
    from .volume_io import clicks_to_kji, read_ct, to_axial_stack, write_mask

    output = Path(args.output)
    volume = read_ct(Path(args.input), _parse_numbers(args.spacing, (3,), "--spacing") if args.spacing else None)
    positives = clicks_to_kji([_parse_numbers(p, (2, 3), "--point") for p in args.point], args.coords, volume)
    negatives = clicks_to_kji([_parse_numbers(p, (2, 3), "--negative") for p in args.negative or []],
                               args.coords, volume)
    box = None
    if args.box:
        values = _parse_numbers(args.box, (4, 5), "--box")
        corners = clicks_to_kji([values[:2] + values[4:], values[2:4] + values[4:]], "ijk", volume)
        box = (corners[0][1], corners[0][2], corners[1][1], corners[1][2])
    slices = {k for k, _, _ in positives + negatives}
    if len(slices) != 1:
        raise InputError(f"All clicks of one segmentation must be on one slice; got slices {sorted(slices)}.")
    axial, spacing, permutation = to_axial_stack(volume)
    if permutation != (0, 1, 2):
        raise InputError("This volume's slice axis is not superior-inferior; resample it to axial first.")
    predictor = _load_predictor(args)
    predictor.set_volume(axial, spacing)
    session = HemorrhageSession(predictor)
    k = slices.pop()
    progress = _Progress("propagating")
    started = time.perf_counter()
    try:
        outcome = session.click(k, [(x, y) for _, x, y in positives], [(x, y) for _, x, y in negatives], box,
                                propagate=not args.no_propagate and axial.shape[0] > 1, progress=progress)
    finally:
        progress.close()
    seconds = time.perf_counter() - started
    write_mask(output, session.mask.astype(np.uint8), volume)
    measurements = measure_hemorrhage(session.mask, spacing)
    report = {
        "input": str(args.input), "output": str(output), "model": str(args.model),
        "device": str(predictor.model.device), "click_slice": k,
        "predicted_iou": {str(s): round(v, 4) for s, v in sorted(outcome.slice_iou.items())},
        "stop_reasons": outcome.stop_reasons, "seconds": round(seconds, 2),
        "measurements": measurements.to_dict(),
    }
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(report, indent=2))
    print(f"Hemorrhage volume: {measurements.volume_ml:.2f} mL (ABC/2 {measurements.abc_over_2_ml:.2f} mL) "
          f"on slices {measurements.first_slice}-{measurements.last_slice}; wrote {output}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from scipy import ndimage as ndi

    from .measurements import measure_hemorrhage
    from .metrics import dice
    from .overview_png import write_overview_png
    from .phantom import make_head_phantom
    from .session import HemorrhageSession
    from .volume_io import CTVolume, write_ct, write_seg_nrrd

    out = Path(args.out)
    phantom = make_head_phantom()
    spacing_ijk = phantom.spacing_zyx[::-1]
    volume = CTVolume(phantom.volume_hu, spacing_ijk, (-115.0, -115.0, -60.0), np.eye(3), "phantom")
    truth = phantom.bleed_mask(0)
    k = int(np.argmax(truth.reshape(truth.shape[0], -1).sum(axis=1)))
    depth = ndi.distance_transform_edt(truth[k])
    j, i = np.unravel_index(int(np.argmax(depth)), depth.shape)  # the click: deepest point of the bleed
    print(f"Synthetic head CT {phantom.volume_hu.shape[::-1]} voxels, spacing {spacing_ijk} mm; "
          f"click at column {i}, row {j}, slice {k}")
    predictor = _load_predictor(args)
    predictor.set_volume(phantom.volume_hu, phantom.spacing_zyx)
    session = HemorrhageSession(predictor)
    progress = _Progress("segmenting")
    started = time.perf_counter()
    try:
        session.click(k, [(float(i), float(j))], progress=progress)
    finally:
        progress.close()
    seconds = time.perf_counter() - started
    ct_path = write_ct(out / "demo_head_ct.nrrd", volume)
    seg_path = write_seg_nrrd(out / "demo_hemorrhage.seg.nrrd", {"Hemorrhage": session.mask}, volume)
    measurements = measure_hemorrhage(session.mask, phantom.spacing_zyx)
    truth_ml = measure_hemorrhage(truth, phantom.spacing_zyx).volume_ml
    score = dice(session.mask, truth)
    png_path = write_overview_png(out / "demo_overview.png", phantom.volume_hu, session.mask, click_kji=(k, j, i),
                                  title=f"SAMIHS demo: {measurements.volume_ml:.1f} mL, Dice {score:.3f}")
    report = {"dice_vs_truth": round(score, 4), "truth_volume_ml": round(truth_ml, 3), "seconds": round(seconds, 2),
              "device": str(predictor.model.device), "measurements": measurements.to_dict()}
    (out / "demo_report.json").write_text(json.dumps(report, indent=2))
    print(f"Wrote {ct_path}, {seg_path}, {png_path}")
    print(f"Dice vs phantom truth: {score:.3f}")
    print(f"Hemorrhage volume: {measurements.volume_ml:.2f} mL (truth {truth_ml:.2f} mL; ABC/2 "
          f"{measurements.abc_over_2_ml:.2f} mL) in {seconds:.1f} s on {predictor.model.device}")
    return 0


def run_batch_command(args: argparse.Namespace) -> int:
    from .batch import REPORT_NAME, run_batch

    predictor = _load_predictor(args)
    progress = _Progress("volumes")
    progress._bar.unit = "volume"
    try:
        rows = run_batch([Path(p) for p in args.inputs], args.prompts, Path(args.output), predictor, progress)
    finally:
        progress.close()
    failed = {name: row for name, row in rows.items() if row["status"] != "ok"}
    for name, row in sorted(failed.items()):
        print(f"FAILED {name}: {row['reason']}", file=sys.stderr)
    print(f"{len(rows) - len(failed)} segmented, {len(failed)} failed; report: {Path(args.output) / REPORT_NAME}")
    return 0 if rows and not failed else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samihs", description="Click-to-segment intracranial hemorrhage on head CT.")
    commands = parser.add_subparsers(dest="command", required=True)

    segment = commands.add_parser("segment", help="Segment a hemorrhage from clicks on one slice.")
    segment.add_argument("input", help="NIfTI/NRRD/MHA volume, DICOM series folder, or one DICOM/PNG slice.")
    segment.add_argument("--point", action="append", required=True, metavar="X,Y[,Z]", help="Positive click (write --point=-10,20,5 when it starts with a minus).")
    segment.add_argument("--negative", action="append", metavar="X,Y[,Z]", help="Negative click (not bleed).")
    segment.add_argument("--box", metavar="X0,Y0,X1,Y1[,Z]", help="Box around the bleed (IJK pixels).")
    segment.add_argument("--coords", choices=("ijk", "ras"), default="ijk",
                         help="Click coordinates: IJK voxel indices (I column, J row, K slice) or RAS mm.")
    _add_model_options(segment)
    segment.add_argument("--spacing", metavar="SI,SJ,SK", help="Voxel spacing in mm when the file lacks it.")
    segment.add_argument("--no-propagate", action="store_true", help="Segment the clicked slice only.")
    segment.add_argument("-o", "--output", required=True, help="Output .seg.nrrd, .nii.gz or .nrrd.")
    segment.add_argument("--report", help="Write a JSON report (volume in mL, ABC/2, per-slice IoU).")
    segment.set_defaults(handler=run_segment)

    batch = commands.add_parser("batch", help="Segment every volume of folders/files; one CSV row per volume.")
    batch.add_argument("inputs", nargs="+", help="Volumes, folders of volumes, or DICOM series folders.")
    batch.add_argument("--prompts", required=True,
                       help="'auto' (seeds from hyperdense regions), a JSON file {volume: {points, negative, "
                            "coords}}, or a folder of <volume>.mrk.json Slicer markups.")
    batch.add_argument("-o", "--output", required=True, help="Output folder.")
    _add_model_options(batch)
    batch.set_defaults(handler=run_batch_command)

    demo = commands.add_parser("demo", help="Segment a synthetic head CT from one click.")
    demo.add_argument("--out", default="samihs-demo", help="Output folder.")
    _add_model_options(demo)
    demo.set_defaults(handler=run_demo)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``samihs`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (InputError, CheckpointError, EngineError, ValueError, FileNotFoundError) as error:
        print(f"samihs: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
