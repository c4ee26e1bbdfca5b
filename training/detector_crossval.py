"""Patient-level cross-validation of the automatic bleed detector on whole head CTs
(``python -m training detectorcv``), and the all-scans detector that ``samihs batch --prompts auto``
ships with.

Per fold: the detector is trained on the other folds' volumes (with and without bleed) and
predicts every voxel of its own. Each threshold setting of ``THRESHOLD_GRID`` then gives, per
volume, what automatic batch would report: mL found, all-bleed 3D Dice, bleeds > 0.5 mL touched,
regions kept and the highest score. Each fold's setting is chosen on the other folds' records only
(:func:`choose_setting`); the shipped detector's on all folds' records. Per-slice detection AUC
(slice score: its highest probability) stands beside the floor's (today's 50-90 HU band: in-band
suspected-bleed voxels on the slice).
"""

import csv
import dataclasses
import io
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy.stats import rankdata

from SAMIHSLib.interaction.auto_seeds import suspected_blood
from SAMIHSLib.io.atomic_write import atomic_output, write_text_atomic
from SAMIHSLib.metrics import dice, volume_ml
from SAMIHSLib.models.bleed_detector import BleedDetectorNet, DetectorConfig
from SAMIHSLib.volume.bleed_detection import (BleedDetector, DetectionThresholds, candidate_regions,
                                              logits_to_probability)

from .detector_training import DetectorTrainingConfig, DetectorVolume, detector_volume, recipe_dict, train_detector
from .record_csv import csv_text, records_csv
from .volume_eval import EvalVolume, bleeds_over_half_ml

THRESHOLD_GRID = [DetectionThresholds(pixel, region, minimum)
                  for pixel, region, minimum in itertools.product((0.3, 0.5, 0.7), (0.5, 0.9, 0.98, 0.995),
                                                                  (0.1, 0.3, 0.5, 1.0))]
# The bounds for bleed-free heads, applied on the training folds when choosing thresholds.
FREE_MEAN_ML, FREE_MAX_ML = 0.5, 2.0


@dataclass
class DetectionRecord:
    """Automatic batch on one volume under one threshold setting."""

    setting: str
    volume: str
    fold: int
    has_bleed: bool
    found_ml: float
    truth_ml: float
    dice_all: float
    bleeds_over_half_ml: int
    bleeds_found: int
    regions: int
    top_score: float  # the highest probability in the volume (also when nothing is kept)


def predict_logits(network: BleedDetectorNet, volume: DetectorVolume) -> torch.Tensor:
    """(K, S, S) float16 logits of every slice of a prepared volume (as the app computes them)."""
    mirrored = None if volume.mirrored is None else volume.mirrored.float()
    return BleedDetector(network, DetectionThresholds()).slice_logits(volume.slices.float(), volume.offset,
                                                                      mirrored=mirrored).half()


def detection_record(setting: str, item: EvalVolume, mask: np.ndarray, bleeds: Sequence[np.ndarray],
                     regions: int, top_score: float) -> DetectionRecord:
    """What automatic batch's ``mask`` on ``item`` scores; ``bleeds``: its true bleeds over 0.5 mL."""
    return DetectionRecord(setting, item.name, item.fold, bool(item.truth.any()), volume_ml(mask, item.spacing_zyx),
                           volume_ml(item.truth, item.spacing_zyx), dice(mask, item.truth), len(bleeds),
                           sum(bool((mask & bleed).any()) for bleed in bleeds), regions, top_score)


def volume_records(item: EvalVolume, probability: np.ndarray) -> List[DetectionRecord]:
    """One record per threshold setting of ``THRESHOLD_GRID`` for one volume."""
    bleeds = bleeds_over_half_ml(item.truth, item.spacing_zyx)
    top = float(probability.max())
    records = []
    for pixel in sorted({setting.pixel_threshold for setting in THRESHOLD_GRID}):
        labels, _, scores, volumes = candidate_regions(probability, item.spacing_zyx, pixel)
        for setting in (s for s in THRESHOLD_GRID if s.pixel_threshold == pixel):
            kept = np.flatnonzero((scores >= setting.region_threshold) & (volumes >= setting.min_region_ml)) + 1
            mask = np.isin(labels, kept) if len(kept) else np.zeros(labels.shape, bool)
            records.append(detection_record(setting.label(), item, mask, bleeds, len(kept), top))
    return records


def summarize_detection(records: Sequence[DetectionRecord]) -> Dict[str, float]:
    """The issue's figures over some records of one setting."""
    bleed = [r for r in records if r.has_bleed]
    free = [r for r in records if not r.has_bleed]
    free_ml = np.array([r.found_ml for r in free]) if free else np.zeros(0)
    return {
        "bleed_volumes": len(bleed), "bleed_free_volumes": len(free),
        "dice_all_mean": float(np.mean([r.dice_all for r in bleed])) if bleed else float("nan"),
        "abs_volume_error_ml_mean": float(np.mean([abs(r.found_ml - r.truth_ml) for r in bleed])) if bleed else float("nan"),
        "abs_volume_error_ml_median": float(np.median([abs(r.found_ml - r.truth_ml) for r in bleed])) if bleed else float("nan"),
        "bleeds_found": int(sum(r.bleeds_found for r in bleed)),
        "bleeds_over_half_ml": int(sum(r.bleeds_over_half_ml for r in bleed)),
        "bleed_free_ml_mean": float(free_ml.mean()) if len(free_ml) else float("nan"),
        "bleed_free_ml_max": float(free_ml.max()) if len(free_ml) else float("nan"),
        "bleed_free_heads_over_2ml": int((free_ml > FREE_MAX_ML).sum()),
        "bleed_free_no_bleed_found": int(sum(r.regions == 0 for r in free)),
    }


def choose_setting(records: Sequence[DetectionRecord]) -> str:
    """The setting for unseen volumes, from training-fold records only: among settings whose
    bleed-free heads average < 0.5 mL with none over 2 mL, the best mean all-bleed Dice (then the
    most bleeds found); if none keeps the heads clean, the least mL in them."""
    by_setting: Dict[str, List[DetectionRecord]] = {}
    for record in records:
        by_setting.setdefault(record.setting, []).append(record)
    summaries = {setting: summarize_detection(rows) for setting, rows in by_setting.items()}
    clean = [s for s, m in summaries.items()
             if m["bleed_free_ml_mean"] < FREE_MEAN_ML and m["bleed_free_ml_max"] <= FREE_MAX_ML]
    if clean:
        return max(sorted(clean), key=lambda s: (round(summaries[s]["dice_all_mean"], 6), summaries[s]["bleeds_found"]))
    return min(sorted(summaries), key=lambda s: summaries[s]["bleed_free_ml_mean"])


def select_per_fold(records: Sequence[DetectionRecord], folds: int) -> Tuple[List[DetectionRecord], List[str]]:
    """Each fold's records under the setting chosen on the other folds."""
    chosen, selected = [], []
    for fold in range(folds):
        setting = choose_setting([r for r in records if r.fold != fold])
        chosen.append(setting)
        selected += [r for r in records if r.fold == fold and r.setting == setting]
    return selected, chosen


def setting_by_label(label: str) -> DetectionThresholds:
    """The grid setting with this label."""
    for setting in THRESHOLD_GRID:
        if setting.label() == label:
            return setting
    raise ValueError(f"No threshold setting is labelled {label!r}.")


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if not positives or not negatives:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def slice_scores(item: EvalVolume, probability: np.ndarray) -> List[Dict[str, object]]:
    """Per slice: has bleed, the detector's highest probability, the band's suspected voxels."""
    band = np.zeros(item.truth.shape, bool)
    for component in suspected_blood(item.image_hu, item.spacing_zyx):
        band |= component
    return [{"volume": item.name, "fold": item.fold, "slice": k, "bleed": bool(item.truth[k].any()),
             "detector": float(probability[k].max()), "band_voxels": int(band[k].sum())}
            for k in range(item.truth.shape[0])]


def detection_records_csv(rows: Sequence[DetectionRecord]) -> str:
    """Detection records as the committed files hold them (6 significant digits, ``\\n`` line ends)."""
    return records_csv(rows, DetectionRecord, float_digits=6, line_end="\n")


def detection_table(selected: Sequence[DetectionRecord], floor: Dict[str, float], auc: Dict[str, float],
                    caption: str, more_rows: Sequence[Tuple[str, Sequence[DetectionRecord]]] = ()) -> str:
    """The issue's table: detector (per-fold thresholds) beside the floor (the HU band)."""
    m = summarize_detection(selected)

    def row(name: str, s: Dict[str, float], area: float) -> str:
        return (f"| {name} | {s['dice_all_mean']:.3f} | {s['abs_volume_error_ml_mean']:.1f} / "
                f"{s['abs_volume_error_ml_median']:.1f} | {s['bleeds_found']} of {s['bleeds_over_half_ml']} | "
                f"{s['bleed_free_ml_mean']:.2f} / {s['bleed_free_ml_max']:.2f}; {s['bleed_free_heads_over_2ml']} | "
                f"{s.get('bleed_free_no_bleed_found', float('nan')):.0f} of {s['bleed_free_volumes']} | {area:.3f} |")

    return "\n".join([
        caption, "",
        "| method | all-bleed 3D Dice (mean) | abs. volume error mL (mean / median) | bleeds > 0.5 mL found | "
        "mL in bleed-free heads (mean / max; heads over 2 mL) | bleed-free heads with no bleed found | "
        "per-slice detection AUC |",
        "|---|---|---|---|---|---|---|",
        row("floor: 50-90 HU band seeds + lite-base", floor, auc["band"]),
        row("bleed detector (thresholds per fold)", m, auc["detector"]),
        *[row(name, summarize_detection(rows), float("nan")) for name, rows in more_rows],
    ]) + "\n"


class DetectorCrossValidation:
    """Trains one detector per fold (and the all-scans one), keeps every fold's out-of-fold
    logits, and writes records, choices and tables under ``out``."""

    def __init__(self, volumes: Sequence[EvalVolume], folds: int, config: DetectorConfig,
                 recipe: DetectorTrainingConfig, progress: Callable[[str], None] = print) -> None:
        self.volumes = sorted(volumes, key=lambda v: (v.fold, v.name))
        self.folds = folds
        self.config = config
        self.recipe = recipe
        self.progress = progress
        self.prepared = {item.name: detector_volume(item.name, item.image_hu, item.truth, item.spacing_zyx, config)
                         for item in self.volumes}

    def train(self, training: Sequence[EvalVolume], log_path: Path) -> BleedDetectorNet:
        rows: List[Dict[str, float]] = []

        def log(row: Dict[str, float]) -> None:
            rows.append(row)
            self.progress(f"  step {row['step']}: loss {row['loss']:.4f} ({row['seconds']:.0f} s)")

        network = train_detector([self.prepared[v.name] for v in training], self.config, self.recipe, log)
        write_text_atomic(log_path, csv_text(["step", "loss", "learning_rate", "seconds"], rows))
        return network

    def run(self, out: Path, runs: Path, only_folds: Optional[Sequence[int]] = None) -> Dict[str, torch.Tensor]:
        """Train and predict every fold; returns out-of-fold logits by volume (also saved in ``runs``)."""
        runs.mkdir(parents=True, exist_ok=True)
        logits: Dict[str, torch.Tensor] = {}
        for fold in (only_folds if only_folds is not None else range(self.folds)):
            started = time.perf_counter()
            training = [v for v in self.volumes if v.fold != fold]
            self.progress(f"fold {fold}: training on {len(training)} volumes")
            network = self.train(training, out / f"train_log_fold{fold}.csv")
            BleedDetector(network, DetectionThresholds()).save(runs / f"detector_fold{fold}.pt")
            for item in (v for v in self.volumes if v.fold == fold):
                logits[item.name] = predict_logits(network, self.prepared[item.name])
            self.progress(f"fold {fold}: {time.perf_counter() - started:.0f} s")
        with atomic_output(runs / "out_of_fold_logits.pt") as temporary:
            torch.save(logits, temporary)
        return logits

    def evaluate(self, logits: Dict[str, torch.Tensor]) -> Tuple[List[DetectionRecord], List[Dict[str, object]]]:
        """Records under every setting and per-slice scores, for the volumes in ``logits``."""
        records, slices = [], []
        for item in self.volumes:
            if item.name not in logits:
                continue
            probability = logits_to_probability(logits[item.name], item.truth.shape[1:])
            records += volume_records(item, probability)
            slices += slice_scores(item, probability)
        return records, slices


def seeded_records(volumes: Sequence[EvalVolume], runs: Path, chosen: Sequence[str], predictor,
                   progress: Callable[[str], None] = print) -> List[DetectionRecord]:
    """``mode="seeded"`` on every volume: its fold's detector and threshold setting propose the
    regions, each becomes a click for the session (the app's own ``segment_automatically``)."""
    from SAMIHSLib.volume.automatic import segment_automatically

    records = []
    for item in sorted(volumes, key=lambda v: (v.fold, v.name)):
        detector = BleedDetector.load(runs / f"detector_fold{item.fold}.pt")
        detector.thresholds = setting_by_label(chosen[item.fold])
        predictor.cache.clear()
        found = segment_automatically(item.stack(), detector, predictor, "seeded")
        records.append(detection_record(f"seeded: {chosen[item.fold]}", item, found.mask,
                                        bleeds_over_half_ml(item.truth, item.spacing_zyx), len(found.regions),
                                        found.top_score))
        progress(f"seeded {item.name}: {records[-1].found_ml:.1f} mL, Dice {records[-1].dice_all:.3f}")
    return records


def choose_mode_per_fold(detector_selected: Sequence[DetectionRecord], seeded: Sequence[DetectionRecord],
                         folds: int) -> Tuple[List[DetectionRecord], List[str]]:
    """Per fold, the mode (the detector's own regions, or seeded clicks) that :func:`choose_setting`
    prefers on the other folds' records; each fold's records under its chosen mode."""
    relabelled = ([dataclasses.replace(r, setting="detector") for r in detector_selected] +
                  [dataclasses.replace(r, setting="seeded") for r in seeded])
    return select_per_fold(relabelled, folds)


def band_floor_records(text: str) -> List[DetectionRecord]:
    """The floor's per-volume records (``volumeeval --auto``: band seeds + lite-base, CSV text) in
    the detector's record form."""
    return [DetectionRecord("50-90 HU band", row["volume"], int(row["fold"]), row["has_bleed"] == "True",
                            float(row["found_ml"]), float(row["truth_ml"]), float(row["dice_all"]),
                            int(row["bleeds_over_half_ml"]), int(row["bleeds_found"]),
                            int(row["seeds"]) if row["status"] != "no bleed found" else 0, float("nan"))
            for row in csv.DictReader(io.StringIO(text))]


def write_results(out: Path, records: Sequence[DetectionRecord], slices: Sequence[Dict[str, object]],
                  folds: int, floor: Dict[str, float], caption: str) -> Dict[str, object]:
    """Records, per-fold choices, slice scores, the table and a JSON summary under ``out``."""
    selected, chosen = select_per_fold(records, folds)
    auc = {"detector": roc_auc([s["detector"] for s in slices], [s["bleed"] for s in slices]),
           "band": roc_auc([s["band_voxels"] for s in slices], [s["bleed"] for s in slices])}
    summary = {"per_fold_setting": chosen, "detector": summarize_detection(selected), "floor": floor,
               "slice_auc": auc, "slices": len(slices),
               "slices_with_bleed": int(sum(bool(s["bleed"]) for s in slices)),
               "setting_on_all_folds": choose_setting(records)}
    write_text_atomic(out / "records.csv", detection_records_csv(records))
    write_text_atomic(out / "selected.csv", detection_records_csv(selected))
    write_text_atomic(out / "slice_scores.csv", csv_text(list(slices[0]), slices))
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_text_atomic(out / "tables.md", detection_table(selected, floor, auc, caption))
    return summary


def shipped_detector(network: BleedDetectorNet, records: Sequence[DetectionRecord], summary: Dict[str, object],
                     patients: Sequence[str], folds_file: str, config: DetectorConfig,
                     recipe: DetectorTrainingConfig) -> BleedDetector:
    """The all-scans detector with the setting chosen on all folds' records and its provenance."""
    provenance = {"recipe": recipe_dict(config, recipe), "patients": sorted(patients), "folds": folds_file,
                  "cross_validation": summary,
                  "data": "ct-ich-volumes (Hssayeni et al., Data 5(1):14, 2020; PhysioNet ct-ich, CC BY 4.0)"}
    return BleedDetector(network, setting_by_label(choose_setting(records)), provenance)
