"""Honest evaluation: patient-level folds, Dice per slice and per volume, HD95 in mm, volume
error in mL, and a table like the paper's Table 1 (Markdown + CSV)."""

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from SAMIHSLib.interaction.click_segmentation import ClickSegmentationConfig
from SAMIHSLib.io.atomic_write import write_text_atomic
from SAMIHSLib.metrics import dice, hd95_mm, volume_error_ml
from SAMIHSLib.interaction.predictor import SAMIHSPredictor
from SAMIHSLib.interaction.session import HemorrhageSession

from .datasets import Case
from .prompts import corrective_click, deepest_point


@dataclass
class SliceResult:
    case: str
    patient: str
    slice_index: int
    clicks: int
    dice: float
    hd95_mm: float


def patient_folds(cases: Sequence[Case], folds: int) -> List[Tuple[List[str], List[str]]]:
    """(train patients, test patients) per fold; no patient is ever on both sides.
    ``folds`` <= 0 means leave-one-patient-out."""
    patients = sorted({case.patient for case in cases})
    count = len(patients) if folds <= 0 else folds
    if count > len(patients) or count < 2:
        raise ValueError(f"Cannot make {count} patient folds from {len(patients)} patients.")
    groups = [patients[i::count] for i in range(count)]
    return [([p for p in patients if p not in group], group) for group in groups]


def predict_slice(predictor: SAMIHSPredictor, truth: np.ndarray, clicks: int, use_click_handling: bool) -> np.ndarray:
    """Mask after ``clicks`` simulated clicks as a user makes them in SAMIHS: the deepest point,
    then corrective clicks on the largest error (positive on missed bleed, negative on a false
    positive), each applied by a session as in the app. ``use_click_handling``: intensity-guided
    boxes with the clicks."""
    predictor_session = HemorrhageSession(predictor, ClickSegmentationConfig(intensity_guided=use_click_handling))
    predictor_session.click(0, [deepest_point(truth)], propagate=False)
    for _ in range(clicks - 1):
        correction = corrective_click(predictor_session.mask[0], truth)
        if correction is None:
            break
        point, positive = correction
        predictor_session.click(0, [point] if positive else [], [] if positive else [point], propagate=False)
    return predictor_session.mask[0]


def evaluate_cases(predictor: SAMIHSPredictor, cases: Sequence[Case], clicks: int = 1,
                   use_click_handling: bool = False) -> Tuple[List[SliceResult], Dict[str, object]]:
    """Per-slice results on every hemorrhage slice, and the summary: mean slice Dice, mean
    volume Dice (slices without hemorrhage count as predicted empty), HD95 mm, |volume error| mL."""
    rows: List[SliceResult] = []
    volume_dice, volume_error = [], []
    for case in cases:
        predicted = np.zeros_like(case.mask)
        for k in case.hemorrhage_slices():
            predictor.set_volume(case.image_hu[k], case.spacing_zyx)
            predicted[k] = predict_slice(predictor, case.mask[k], clicks, use_click_handling)
            rows.append(SliceResult(case.name, case.patient, k, clicks, dice(predicted[k], case.mask[k]),
                                    hd95_mm(predicted[k], case.mask[k], case.spacing_zyx[1:])))
        volume_dice.append(dice(predicted, case.mask))
        volume_error.append(abs(volume_error_ml(predicted, case.mask, case.spacing_zyx)))
    return rows, _summary(rows, volume_dice, volume_error)


def _summary(rows: Sequence[SliceResult], volume_dice: Sequence[float],
             volume_error: Sequence[float]) -> Dict[str, object]:
    """Means over slices (Dice, HD95 where finite) and over volumes (Dice, |volume error|); the
    per-volume values are kept so that folds pool exactly."""
    finite_hd = [r.hd95_mm for r in rows if np.isfinite(r.hd95_mm)]
    return {"slices": len(rows), "dice_slice": float(np.mean([r.dice for r in rows])),
            "dice_volume": float(np.mean(volume_dice)),
            "hd95_mm": float(np.mean(finite_hd)) if finite_hd else float("inf"),
            "volume_error_ml": float(np.mean(volume_error)),
            "per_volume_dice": list(volume_dice), "per_volume_error_ml": list(volume_error)}


def write_table(path_stem: Path, rows: Dict[str, Dict[str, float]], caption: str) -> None:
    """``rows``: method -> summary. Writes ``<stem>.md`` and ``<stem>.csv``."""
    columns = ["slices", "dice_slice", "dice_volume", "hd95_mm", "volume_error_ml"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["method"] + columns)
    for method, summary in rows.items():
        writer.writerow([method] + [summary.get(c, "") for c in columns])
    write_text_atomic(path_stem.with_suffix(".csv"), buffer.getvalue())
    lines = [caption, "", "| method | slices | Dice (slice) | Dice (volume) | HD95 (mm) | |vol. error| (mL) |",
             "|---|---|---|---|---|---|"]
    for method, s in rows.items():
        lines.append(f"| {method} | {s['slices']} | {s['dice_slice']:.3f} | {s['dice_volume']:.3f} | "
                     f"{s['hd95_mm']:.1f} | {s['volume_error_ml']:.3f} |")
    write_text_atomic(path_stem.with_suffix(".md"), "\n".join(lines) + "\n")


CLICK_MODES = {"clicks only": False, "clicks + intensity-guided boxes": True}


def run_fold(train_fold: Callable[[List[Case], str], object], train_cases: List[Case], test_cases: List[Case],
              clicks: Sequence[int]) -> Dict[Tuple[int, str], Tuple[List[SliceResult], Dict[str, object]]]:
    """Train one fold's model (named after its held-out patients) and evaluate it on the held-out
    cases, per (clicks, prompt mode)."""
    name = "test_" + "-".join(sorted({c.patient for c in test_cases}))
    predictor = SAMIHSPredictor(train_fold(train_cases, name))  # type: ignore[arg-type]
    return {(count, mode): evaluate_cases(predictor, test_cases, clicks=count, use_click_handling=guided)
            for count in clicks for mode, guided in CLICK_MODES.items()}


def cross_validate(cases: Sequence[Case], folds: int, train_fold: Callable[[List[Case], str], object],
                   extra_training: Sequence[Case] = (), clicks: Sequence[int] = (1, 3),
                   jobs: int = 1) -> Dict[str, Dict[str, object]]:
    """Train on each fold's training patients (plus ``extra_training``, e.g. phantoms) and test on
    its held-out patients; pooled summaries per click count, for the fine-tuned model prompted
    with the clicks alone and with the clicks plus intensity-guided boxes. ``train_fold(cases,
    name)`` returns a model; with ``jobs`` > 1 folds run in that many processes (it must pickle)."""
    work = [([c for c in cases if c.patient in train_patients] + list(extra_training),
             [c for c in cases if c.patient in test_patients])
            for train_patients, test_patients in patient_folds(cases, folds)]
    if jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: CUDA cannot be used in a forked child
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            outcomes = list(pool.map(run_fold, [train_fold] * len(work), *zip(*work), [tuple(clicks)] * len(work)))
    else:
        outcomes = [run_fold(train_fold, train, test, clicks) for train, test in work]
    return {f"fine-tuned, {count} click{'s' if count > 1 else ''}, {mode}":
            _pool([outcome[(count, mode)] for outcome in outcomes]) for count in clicks for mode in CLICK_MODES}


def _pool(results: List[Tuple[List[SliceResult], Dict[str, object]]]) -> Dict[str, object]:
    """One summary of several folds' results, as if evaluated together."""
    return _summary([r for fold_rows, _ in results for r in fold_rows],
                    [d for _, s in results for d in s["per_volume_dice"]],  # type: ignore[attr-defined]
                    [e for _, s in results for e in s["per_volume_error_ml"]])  # type: ignore[attr-defined]
