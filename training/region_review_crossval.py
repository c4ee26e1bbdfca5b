"""The region review (:mod:`training.region_features`) cross-validated by patient on the
detector's out-of-fold probabilities (``python -m training detectorcv --review``).

Every candidate region of every volume, at each pixel threshold, is tabled once: its features and
what keeping it would add (voxels, voxels on bleed, the bleeds > 0.5 mL it touches). Regions are
disjoint, so a volume's record under any review setting is a sum over the regions kept. For test
fold f the review is fitted on the other folds' regions; its (pixel threshold, review threshold)
is chosen by :func:`training.detector_crossval.choose_setting` on those folds' records, whose
review probabilities come from reviews that did not see them (nested: for each training fold g,
a review fitted on the folds other than f and g).
"""

import csv
import io
import itertools
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import numpy as np
from scipy import ndimage as ndi

from SAMIHSLib.metrics import volume_ml
from SAMIHSLib.volume.bleed_detection import candidate_regions
from SAMIHSLib.volume.head_axis import head_axes

from .detector_crossval import DetectionRecord, choose_setting
from .region_features import REVIEW_FEATURES, RegionReview, region_features
from .volume_eval import EvalVolume, bleeds_over_half_ml

PIXEL_THRESHOLDS = (0.3, 0.5, 0.7)
REVIEW_THRESHOLDS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
BLEED_SHARE = 0.25  # a region is a bleed, for fitting, when at least this share of its voxels is bleed
L2 = 1.0


@dataclass
class RegionTable:
    """One volume's candidate regions at one pixel threshold."""

    volume: str
    fold: int
    has_bleed: bool
    truth_voxels: int
    voxel_ml: float
    bleeds_over_half_ml: int
    top_score: float
    features: np.ndarray = field(repr=False)  # (regions, features)
    voxels: np.ndarray = field(repr=False)  # (regions,)
    on_bleed: np.ndarray = field(repr=False)  # (regions,) voxels that are bleed
    touched: List[Tuple[int, ...]] = field(repr=False)  # per region: the bleeds > 0.5 mL it touches

    @property
    def is_bleed(self) -> np.ndarray:
        return self.on_bleed >= BLEED_SHARE * np.maximum(self.voxels, 1)

    def record(self, setting: str, keep: np.ndarray) -> DetectionRecord:
        """What automatic batch would report on this volume keeping the regions ``keep``."""
        found = int(self.voxels[keep].sum())
        union = found + self.truth_voxels
        return DetectionRecord(setting, self.volume, self.fold, self.has_bleed, found * self.voxel_ml,
                               self.truth_voxels * self.voxel_ml,
                               2.0 * float(self.on_bleed[keep].sum()) / union if union else 1.0,
                               self.bleeds_over_half_ml,
                               len(set(itertools.chain.from_iterable(t for t, k in zip(self.touched, keep) if k))),
                               int(keep.sum()), self.top_score)


def region_tables(item: EvalVolume, probability: np.ndarray) -> Dict[float, RegionTable]:
    """``item``'s candidate regions at every pixel threshold of :data:`PIXEL_THRESHOLDS`."""
    bleeds = bleeds_over_half_ml(item.truth, item.spacing_zyx)
    axes = head_axes(item.image_hu)
    voxel_ml = volume_ml(np.ones((1, 1, 1), bool), item.spacing_zyx)
    tables = {}
    for pixel in PIXEL_THRESHOLDS:
        labels, count, scores, volumes = candidate_regions(probability, item.spacing_zyx, pixel)
        boxes = ndi.find_objects(labels)
        regions = [labels[box] == number for number, box in enumerate(boxes, 1)]
        tables[pixel] = RegionTable(
            item.name, item.fold, bool(item.truth.any()), int(item.truth.sum()), voxel_ml, len(bleeds),
            float(probability.max()), region_features(item.image_hu, probability, labels, scores, volumes, axes),
            np.array([int(r.sum()) for r in regions], dtype=np.int64),
            np.array([int((r & item.truth[box]).sum()) for r, box in zip(regions, boxes)], dtype=np.int64),
            [tuple(i for i, bleed in enumerate(bleeds) if (r & bleed[box]).any()) for r, box in zip(regions, boxes)])
    return tables


def setting_label(pixel: float, review: float) -> str:
    return f"pixel>{pixel:g}, review>={review:g}"


def fit_review(features: np.ndarray, is_bleed: np.ndarray, threshold: float = 0.5, l2: float = 1.0) -> RegionReview:
    """Logistic regression (Newton's method, L2 on the standardized weights, not the bias) of
    ``is_bleed`` on ``features``."""
    features, target = np.asarray(features, float), np.asarray(is_bleed, float)
    if len(features) == 0 or target.min() == target.max():
        raise ValueError("A region review needs regions that are bleed and regions that are not.")
    mean, scale = features.mean(0), features.std(0) + 1e-6
    design = np.hstack([(features - mean) / scale, np.ones((len(features), 1))])
    penalty = np.full(design.shape[1], l2)
    penalty[-1] = 0.0
    coefficients = np.zeros(design.shape[1])
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-design @ coefficients))
        gradient = design.T @ (p - target) + penalty * coefficients
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty) + 1e-9 * np.eye(len(coefficients))
        step = np.linalg.solve(hessian, gradient)
        coefficients -= step
        if np.abs(step).max() < 1e-10:
            break
    return RegionReview(tuple(mean), tuple(scale), tuple(coefficients[:-1]), float(coefficients[-1]), float(threshold))


def fit(tables: Sequence[RegionTable]) -> RegionReview:
    """The review fitted on every region of ``tables``."""
    features = np.concatenate([t.features for t in tables])
    return fit_review(features, np.concatenate([t.is_bleed for t in tables]), l2=L2)


def review_records(tables: Sequence[RegionTable], review: RegionReview, pixel: float) -> List[DetectionRecord]:
    """Each volume's record under every review threshold of :data:`REVIEW_THRESHOLDS`."""
    records = []
    for table in tables:
        probability = review.probability(table.features) if len(table.features) else np.zeros(0)
        records += [table.record(setting_label(pixel, threshold), probability >= threshold)
                    for threshold in REVIEW_THRESHOLDS]
    return records


def _folds_of(tables: Dict[float, List[RegionTable]]) -> List[int]:
    return sorted({t.fold for t in tables[PIXEL_THRESHOLDS[0]]})


def out_of_fold_records(tables: Dict[float, List[RegionTable]], excluded: Sequence[int] = ()) -> List[DetectionRecord]:
    """Every setting's records for the folds not in ``excluded``, each fold's regions reviewed by
    a review fitted on the other folds not in ``excluded``."""
    folds = [f for f in _folds_of(tables) if f not in excluded]
    records = []
    for pixel, fold in itertools.product(PIXEL_THRESHOLDS, folds):
        fitted = fit([t for t in tables[pixel] if t.fold not in excluded and t.fold != fold])
        records += review_records([t for t in tables[pixel] if t.fold == fold], fitted, pixel)
    return records


def select_per_fold(tables: Dict[float, List[RegionTable]]) -> Tuple[List[DetectionRecord], List[str]]:
    """Each fold's records under the review fitted and the setting chosen on the other folds."""
    selected, chosen = [], []
    for fold in _folds_of(tables):
        setting = choose_setting(out_of_fold_records(tables, excluded=[fold]))
        pixel, threshold = parse_setting(setting)
        fitted = fit([t for t in tables[pixel] if t.fold != fold])
        selected += [r for r in review_records([t for t in tables[pixel] if t.fold == fold], fitted, pixel)
                     if r.setting == setting]
        chosen.append(setting)
    return selected, chosen


def parse_setting(setting: str) -> Tuple[float, float]:
    """(pixel threshold, review threshold) of a :func:`setting_label`."""
    pixel, review = setting.split(", ")
    return float(pixel.split(">")[1]), float(review.split(">=")[1])


def review_on_all_folds(tables: Dict[float, List[RegionTable]]) -> Tuple[float, RegionReview, List[DetectionRecord]]:
    """The pixel threshold and review a shipped detector would take: the setting chosen on all
    folds' out-of-fold records, the review fitted on every region at its pixel threshold."""
    records = out_of_fold_records(tables)
    pixel, threshold = parse_setting(choose_setting(records))
    return pixel, fit(tables[pixel]).with_threshold(threshold), records


_VOLUME_COLUMNS = ("volume", "fold", "has_bleed", "truth_voxels", "voxel_ml", "bleeds_over_half_ml", "top_score")


def tables_csv(tables: Dict[float, List[RegionTable]]) -> str:
    """Every region of every table, one row each (a volume without regions: one row, region -1),
    with features at full precision: what the review's fits and choices are recomputed from."""
    header = [*_VOLUME_COLUMNS, "pixel", "region", "voxels", "on_bleed", "touched", *REVIEW_FEATURES]
    lines = [",".join(header)]
    for pixel in sorted(tables):
        for table in tables[pixel]:
            head = [table.volume, str(table.fold), str(table.has_bleed), str(table.truth_voxels), repr(table.voxel_ml),
                    str(table.bleeds_over_half_ml), repr(table.top_score), repr(pixel)]
            if not len(table.voxels):
                lines.append(",".join(head + ["-1", "0", "0", ""] + [""] * len(REVIEW_FEATURES)))
            for index in range(len(table.voxels)):
                lines.append(",".join(head + [str(index), str(int(table.voxels[index])), str(int(table.on_bleed[index])),
                                              ";".join(map(str, table.touched[index]))] +
                                      [repr(float(v)) for v in table.features[index]]))
    return "\n".join(lines) + "\n"


def read_tables_csv(text: str) -> Dict[float, List[RegionTable]]:
    """The tables written by :func:`tables_csv`."""
    rows: Dict[Tuple[float, str], List[Dict[str, str]]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        rows.setdefault((float(row["pixel"]), row["volume"]), []).append(row)
    tables: Dict[float, List[RegionTable]] = {}
    for (pixel, _), volume_rows in rows.items():
        first = volume_rows[0]
        regions = [r for r in volume_rows if r["region"] != "-1"]
        tables.setdefault(pixel, []).append(RegionTable(
            first["volume"], int(first["fold"]), first["has_bleed"] == "True", int(first["truth_voxels"]),
            float(first["voxel_ml"]), int(first["bleeds_over_half_ml"]), float(first["top_score"]),
            np.array([[float(r[name]) for name in REVIEW_FEATURES] for r in regions], float).reshape(-1, len(REVIEW_FEATURES)),
            np.array([int(r["voxels"]) for r in regions], dtype=np.int64),
            np.array([int(r["on_bleed"]) for r in regions], dtype=np.int64),
            [tuple(int(v) for v in r["touched"].split(";") if v) for r in regions]))
    return tables
