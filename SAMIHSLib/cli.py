"""The ``samihs`` command line: ``segment``, ``demo`` (and ``batch``).

Every error a user can cause (bad file, bad click, bad model) ends with a one-line message and
exit status 2, before any output file is written.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from SAMIHSLib.device import DEVICE_CHOICES
from SAMIHSLib.engines import AUTO_ENGINE, ENGINE_CHOICES, ENGINES, EngineError
from SAMIHSLib.model_names import DEFAULT_MODEL
from SAMIHSLib.io.validation import InputError

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
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"'lite-base' (LiteMedSAM as released, with the intensity-guided click handling), "
                             f"'samihs' or 'lite' (the shipped fine-tuned SAMIHS checkpoints) or a checkpoint path; default "
                             f"{DEFAULT_MODEL!r}, chosen by the 5-fold evaluation (docs/accuracy-2d.md).")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES,
                        help="Where the model runs: auto (CUDA, then Apple MPS, then CPU), or one of them.")
    parser.add_argument("--engine", default=AUTO_ENGINE, choices=(AUTO_ENGINE,) + ENGINE_CHOICES,
                        help="Inference backend. auto (default): the fastest exact engine installed (OpenVINO, "
                             "then ONNX Runtime, then PyTorch; PyTorch on a GPU), or OpenVINO bf16 on a CPU with "
                             "native bf16 for a model whose bf16 answers matched fp32 on the accuracy tables; " +
                             "; ".join(f"{name}: {spec.label}" for name, spec in ENGINES.items()) + ".")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for inference (default 0: all physical cores).")


def _load_predictor(args: argparse.Namespace):
    from SAMIHSLib.interaction.predictor import check_threads, load_predictor

    check_threads(args.threads, "--threads")
    return load_predictor(args.model, args.device, args.engine, args.threads,
                          announce=lambda text: print(f"samihs: {text}", file=sys.stderr))


def run_segment(args: argparse.Namespace) -> int:
    from SAMIHSLib.io.atomic_write import check_writable
    from SAMIHSLib.io.report import write_report_json
    from SAMIHSLib.io.volume_io import check_mask_output, clicks_to_slice_column_row, read_ct, write_mask
    from SAMIHSLib.volume.click_to_volume import AxialClicks, segment_clicks

    output = check_mask_output(Path(args.output))  # every output checked before any work
    if args.report:
        check_writable(args.report, "report")
    if args.dicom_seg:
        if not str(args.dicom_seg).lower().endswith(".dcm"):
            raise InputError(f"--dicom-seg writes a DICOM file: its name must end with .dcm, not {args.dicom_seg}.")
        check_writable(args.dicom_seg, "DICOM SEG output")
    if not args.point and not args.box:
        raise InputError("Give at least one --point (a click on the bleed) or a --box around it.")
    volume = read_ct(Path(args.input), _parse_numbers(args.spacing, (3,), "--spacing") if args.spacing else None)
    if (str(output).lower().endswith(".dcm") or args.dicom_seg) and not volume.dicom_files:
        raise InputError("A DICOM SEG references its source images: give a DICOM series folder as input.")
    positives = clicks_to_slice_column_row([_parse_numbers(p, (2, 3), "--point") for p in args.point or []],
                                           args.coords, volume)
    negatives = clicks_to_slice_column_row([_parse_numbers(p, (2, 3), "--negative") for p in args.negative or []],
                                           args.coords, volume)
    box_corners = []
    if args.box:
        values = _parse_numbers(args.box, (4, 5), "--box")
        box_corners = clicks_to_slice_column_row([values[:2] + values[4:], values[2:4] + values[4:]], "ijk", volume)
    if volume.spacing_assumed:
        print(f"samihs: warning: {args.input}: {volume.spacing_note or 'the file records no voxel size'}; using "
              f"{' x '.join(f'{s:.3g}' for s in volume.spacing_ijk)} mm (every mm rule and volume in mL depend on "
              "it): give --spacing SI,SJ,SK if you know it.", file=sys.stderr)
    clicks = AxialClicks.from_volume(volume, positives, negatives, box_corners)
    predictor = _load_predictor(args)
    propagate = not args.no_propagate and volume.array_hu.shape[0] > 1
    progress = _Progress("propagating") if propagate else None  # no empty bar for a single slice
    try:
        mask, report = segment_clicks(clicks, predictor, str(args.input), propagate, progress,
                                      join_detector=not args.no_detector_join)
    finally:
        if progress is not None:
            progress.close()
    write_mask(output, mask.astype(np.uint8), volume)
    if args.dicom_seg:
        write_mask(Path(args.dicom_seg), mask.astype(np.uint8), volume)
    report.segmentation, report.model = str(output), str(args.model)
    report.spacing_mm, report.spacing_assumed = list(volume.spacing_ijk), volume.spacing_assumed
    report.spacing_note = volume.spacing_note
    if args.report:
        write_report_json(report, args.report)
    if report.reason:
        print(f"samihs: warning: {report.reason}", file=sys.stderr)
    if report.detector_added:
        print(f"samihs: {report.detector_added}")
    if not report.filled_slices:
        print(f"No hemorrhage segmented: {report.reason or 'the model found nothing at the click'}; "
              f"wrote an empty {output}")
        return 0
    measured = report.measurements
    print(f"Hemorrhage volume: {measured['volume_ml']:.2f} mL (ABC/2 {measured['abc_over_2_ml']:.2f} mL) "
          f"on slices {measured['first_slice']}-{measured['last_slice']}; wrote {output}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from SAMIHSLib.interaction.measurements import measure_hemorrhage
    from SAMIHSLib.io.atomic_write import write_text_atomic
    from SAMIHSLib.metrics import dice
    from SAMIHSLib.io.overview_png import write_overview_png
    from SAMIHSLib.phantom import make_head_phantom
    from SAMIHSLib.interaction.regions import deepest_point, slice_with_most
    from SAMIHSLib.io.segment_terms import SEGMENT_NAME
    from SAMIHSLib.volume.click_to_volume import AxialClicks, segment_clicks
    from SAMIHSLib.io.volume_io import CTVolume, write_ct, write_seg_nrrd

    out = Path(args.out)
    phantom = make_head_phantom()
    spacing_ijk = phantom.spacing_zyx[::-1]
    volume = CTVolume(phantom.volume_hu, spacing_ijk, (-115.0, -115.0, -60.0), np.eye(3), "phantom")
    truth = phantom.bleed_mask(0)
    k = slice_with_most(truth)
    i, j = (int(v) for v in deepest_point(truth[k]))  # the click: deepest point of the bleed
    print(f"Synthetic head CT {phantom.volume_hu.shape[::-1]} voxels, spacing {spacing_ijk} mm; "
          f"click at column {i}, row {j}, slice {k}")
    predictor = _load_predictor(args)
    progress = _Progress("segmenting")
    try:
        mask, report = segment_clicks(AxialClicks.from_volume(volume, [(k, float(i), float(j))]), predictor,
                                      "phantom", progress=progress)
    finally:
        progress.close()
    ct_path = write_ct(out / "demo_head_ct.nrrd", volume)
    seg_path = write_seg_nrrd(out / "demo_hemorrhage.seg.nrrd", {SEGMENT_NAME: mask}, volume)
    measured = report.measurements
    truth_ml = measure_hemorrhage(truth, phantom.spacing_zyx).volume_ml
    score = dice(mask, truth)
    png_path = write_overview_png(out / "demo_overview.png", phantom.volume_hu, mask, click_kji=(k, j, i),
                                  title=f"SAMIHS demo: {measured['volume_ml']:.1f} mL, Dice {score:.3f}")
    report.segmentation, report.model = str(seg_path), str(args.model)
    write_text_atomic(out / "demo_report.json", json.dumps(
        {"dice_vs_truth": round(score, 4), "truth_volume_ml": round(truth_ml, 3), **report.to_dict()}, indent=2) + "\n")
    print(f"Wrote {ct_path}, {seg_path}, {png_path}")
    print(f"Dice vs phantom truth: {score:.3f}")
    print(f"Hemorrhage volume: {measured['volume_ml']:.2f} mL (truth {truth_ml:.2f} mL; ABC/2 "
          f"{measured['abc_over_2_ml']:.2f} mL) in {report.seconds:.1f} s on {predictor.device_type}")
    return 0


def run_batch_command(args: argparse.Namespace) -> int:
    from SAMIHSLib.io.atomic_write import check_writable
    from SAMIHSLib.batch import DONE_STATUSES, NO_BLEED_FOUND, REPORT_NAME, PromptSource, run_batch

    PromptSource(args.prompts)  # a malformed prompts file is refused before anything is loaded
    check_writable(Path(args.output) / REPORT_NAME, "batch report")
    inputs = [Path(p) for p in args.inputs]
    progress = _Progress("volumes")
    progress._bar.unit = "volume"
    try:
        if args.ray:
            from SAMIHSLib.batch_ray import run_batch_on_ray

            rows = run_batch_on_ray(inputs, args.prompts, Path(args.output), args.model, args.device, args.engine,
                                    args.ray, args.ray_workers, args.ray_cpus_per_worker, args.ray_gpus_per_worker,
                                    progress, dicom_seg=args.dicom_seg)
        else:
            rows = run_batch(inputs, args.prompts, Path(args.output), _load_predictor(args), progress,
                             dicom_seg=args.dicom_seg)
    finally:
        progress.close()
    failed = {name: row for name, row in rows.items() if row["status"] not in DONE_STATUSES}
    for name, row in sorted(failed.items()):
        print(f"FAILED {name}: {row['reason']}", file=sys.stderr)
    clean = sorted(name for name, row in rows.items() if row["status"] == NO_BLEED_FOUND)
    for name in clean:
        print(f"{name}: {rows[name]['reason']}")
    print(f"{len(rows) - len(failed) - len(clean)} segmented, {len(clean)} with no bleed found, {len(failed)} failed; "
          f"report: {Path(args.output) / REPORT_NAME}")
    return 0 if rows and not failed else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samihs", description="Click-to-segment intracranial hemorrhage on head CT.")
    commands = parser.add_subparsers(dest="command", required=True)

    segment = commands.add_parser(
        "segment", help="Segment a hemorrhage from clicks on one slice.", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Segment the hemorrhage under a click (or inside a box) and propagate it through the slices.",
        epilog="examples:\n"
               "  samihs segment CT.nrrd --point 309,229,12 -o bleed.seg.nrrd --report bleed.json\n"
               "  samihs segment CT.nii.gz --coords ras --point=-12.5,30.1,8 --negative=-20,31,8 -o bleed.nii.gz\n"
               "  samihs segment CT.nrrd --box 280,200,340,260,12 -o bleed.seg.nrrd\n"
               "  samihs segment slice.dcm --point 250,300 --spacing 0.45,0.45,5 -o bleed.nrrd")
    segment.add_argument("input", help="NIfTI/NRRD/MHA volume, DICOM series folder, or one DICOM/PNG slice.")
    segment.add_argument("--point", action="append", metavar="X,Y[,Z]",
                         help="Positive click (write --point=-10,20,5 when it starts with a minus). A --box alone "
                              "also works.")
    segment.add_argument("--negative", action="append", metavar="X,Y[,Z]", help="Negative click (not bleed).")
    segment.add_argument("--box", metavar="X0,Y0,X1,Y1[,Z]", help="Box around the bleed (IJK pixels).")
    segment.add_argument("--coords", choices=("ijk", "ras", "lps"), default="ijk", type=str.lower,
                         help="Click coordinates: IJK voxel indices (I column, J row, K slice), or RAS mm "
                              "(as Slicer's cursor shows them), or LPS mm (as DICOM).")
    _add_model_options(segment)
    segment.add_argument("--spacing", metavar="SI,SJ,SK", help="Voxel spacing in mm when the file lacks it.")
    segment.add_argument("--no-propagate", action="store_true", help="Segment the clicked slice only.")
    segment.add_argument("--no-detector-join", action="store_true",
                         help="The model's answer alone: do not join the bleed detector's regions that overlap it.")
    segment.add_argument("-o", "--output", required=True,
                         help="Output .seg.nrrd, .nii.gz, .nrrd, or .dcm (DICOM SEG; needs a DICOM series input).")
    segment.add_argument("--dicom-seg", metavar="SEG.dcm",
                         help="Also write a DICOM SEG referencing the input DICOM series (needs highdicom).")
    segment.add_argument("--report", help="Write a JSON report (volume in mL, ABC/2, per-slice IoU).")
    segment.set_defaults(handler=run_segment)

    batch = commands.add_parser(
        "batch", help="Segment every volume of folders/files; one CSV row per volume.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Segment many CT volumes; a volume that fails is reported and the rest go on. A rerun "
                    "skips volumes whose result was made from the same input, prompts, model and engine.",
        epilog="examples:\n"
               "  samihs batch CT_FOLDER/ other.nii.gz --prompts auto -o results/\n"
               "  samihs batch CT_FOLDER/ --prompts clicks.json -o results/   "
               "# {\"ct01\": {\"points\": [[i, j, k]], \"coords\": \"ijk\"}}\n"
               "  samihs batch CT_FOLDER/ --prompts markups/ -o results/      # markups/ct01.mrk.json from Slicer")
    batch.add_argument("inputs", nargs="+", help="Volumes, folders of volumes, or DICOM series folders.")
    batch.add_argument("--prompts", required=True,
                       help="'auto' (no clicks: the bleed detector's regions, one segment each; a head with none is "
                            "'no bleed found'), a JSON file {volume: {points, negative, coords}}, or a folder of "
                            "<volume>.mrk.json Slicer markups.")
    batch.add_argument("-o", "--output", required=True, help="Output folder.")
    batch.add_argument("--dicom-seg", action="store_true",
                       help="Also write <volume>.seg.dcm (DICOM SEG) for every DICOM series input (needs highdicom).")
    scale = batch.add_argument_group("Ray (pip install 'samihs[scale]')")
    scale.add_argument("--ray", metavar="ADDRESS",
                       help="Spread the volumes over Ray workers: 'auto' (the running cluster, else a local "
                            "instance), 'local' (a new instance on this machine) or a cluster address "
                            "(ray://head:10001). Same outputs and report as without it.")
    scale.add_argument("--ray-workers", type=int, default=0,
                       help="Workers, each with its own model (default 0: as many as the CPUs/GPUs hold).")
    scale.add_argument("--ray-cpus-per-worker", type=float, default=1.0, help="CPU cores per worker (default 1).")
    scale.add_argument("--ray-gpus-per-worker", type=float, default=0.0,
                       help="GPU share per worker, e.g. 0.25 puts four workers on one GPU (default 0: CPU).")
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
    from SAMIHSLib.cpu_tuning import tune_process_for_inference

    tune_process_for_inference()  # the command owns its process; before torch loads
    from SAMIHSLib.models.files import CheckpointError

    try:
        return int(args.handler(args))
    except (InputError, CheckpointError, EngineError, ValueError, OSError) as error:
        message = " ".join(str(error).split()) or type(error).__name__  # always one line
        print(f"samihs: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
