"""A second look at each region the bleed detector proposes: what the region looks like on the CT
(its HU, its contrast with the tissue around it, the same place on the other side of the head, the
bone around it) beside the detector's own probabilities, weighed by a logistic regression fitted
on training folds (``python -m training detectorcv --review``). Measured against the thresholds
and not shipped (docs/automatic-batch.md), so it lives with the training code.

Why: the detector fires on the falx and on the cortex along the inner table in nearly every head
(partial volume reads as blood), on both sides alike; bleeds are denser than the tissue around
them and seldom mirrored. A fixed size floor kept those false regions out, and small bleeds with
them.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage as ndi

from SAMIHSLib.interaction.regions import HEAD_HU, largest_component

REVIEW_FEATURES = ("log_ml", "score_logit", "mean_probability", "slices", "median_hu", "contrast_hu",
                   "asymmetry_hu", "bone_ring")
RING_PX = 3  # the tissue around a region: this many pixels around it on its slices
SOFT_TISSUE_HU = (-20.0, 120.0)  # the ring's tissue a region is compared with: no air, no bone
BONE_HU = 150.0
_RING = np.ones((1, 2 * RING_PX + 1, 2 * RING_PX + 1), bool)  # in-plane only: slices are thick

HeadAxis = Tuple[float, float, np.ndarray]  # centroid row, column and unit long-axis direction (row, column)


def head_axes(volume_hu: np.ndarray) -> List[Optional[HeadAxis]]:
    """Per axial slice: the head's centroid and long (anterior-posterior) axis, about which the
    other side of the head is mirrored; None where a slice holds too little head."""
    axes: List[Optional[HeadAxis]] = []
    for image in volume_hu:
        rows, columns = np.nonzero(ndi.binary_fill_holes(largest_component(image > HEAD_HU)))
        if len(rows) < 100:
            axes.append(None)
            continue
        centre = np.array([rows.mean(), columns.mean()])
        values, vectors = np.linalg.eigh(np.cov(np.stack([rows - centre[0], columns - centre[1]])))
        axes.append((float(centre[0]), float(centre[1]), vectors[:, int(np.argmax(values))]))
    return axes


def mirrored_values(image: np.ndarray, rows: np.ndarray, columns: np.ndarray, axis: HeadAxis) -> np.ndarray:
    """``image`` at the mirror images of the pixels (rows, columns) across the head's long axis."""
    centre_row, centre_column, direction = axis
    offset = np.stack([rows - centre_row, columns - centre_column])
    along = direction @ offset
    mirror = 2 * (np.array([[centre_row], [centre_column]]) + direction[:, None] * along) - np.stack([rows, columns])
    mirror_rows = np.clip(np.round(mirror[0]).astype(int), 0, image.shape[0] - 1)
    mirror_columns = np.clip(np.round(mirror[1]).astype(int), 0, image.shape[1] - 1)
    return image[mirror_rows, mirror_columns]


def region_features(volume_hu: np.ndarray, probability: np.ndarray, labels: np.ndarray, scores: Sequence[float],
                    volumes_ml: Sequence[float], axes: Optional[List[Optional[HeadAxis]]] = None) -> np.ndarray:
    """(regions, len(REVIEW_FEATURES)) for the labelled regions 1..n of a (k, j, i) volume, in
    :data:`REVIEW_FEATURES` order (``scores``, ``volumes_ml``: each region's, from label 1)."""
    axes = head_axes(volume_hu) if axes is None else axes
    rows = []
    for number, box in enumerate(ndi.find_objects(labels), 1):
        if box is None:
            continue
        padded = (box[0],) + tuple(slice(max(s.start - RING_PX, 0), s.stop + RING_PX) for s in box[1:])
        region = labels[padded] == number
        hu = volume_hu[padded].astype(np.float32)
        ring = ndi.binary_dilation(region, _RING) & ~region
        soft = ring & (hu >= SOFT_TISSUE_HU[0]) & (hu <= SOFT_TISSUE_HU[1])
        median = float(np.median(hu[region]))
        slices, region_rows, region_columns = np.nonzero(region)
        mirrored = [mirrored_values(volume_hu[k + padded[0].start], region_rows[slices == k] + padded[1].start,
                                    region_columns[slices == k] + padded[2].start, axes[k + padded[0].start])
                    for k in np.unique(slices) if axes[k + padded[0].start] is not None]
        score = min(max(float(scores[number - 1]), 1e-6), 1 - 1e-6)
        rows.append([
            np.log(max(float(volumes_ml[number - 1]), 1e-3)),
            np.log(score / (1 - score)),
            float(probability[padded][region].mean()),
            float(len(np.unique(slices))),
            median,
            median - float(np.median(hu[soft])) if soft.any() else 0.0,
            median - float(np.median(np.concatenate(mirrored))) if mirrored else 0.0,
            float((hu[ring] >= BONE_HU).mean()) if ring.any() else 0.0,
        ])
    return np.asarray(rows, float).reshape(-1, len(REVIEW_FEATURES))


@dataclass(frozen=True)
class RegionReview:
    """A logistic regression on standardized region features, and the probability from which a
    region is kept."""

    mean: Tuple[float, ...]
    scale: Tuple[float, ...]
    weights: Tuple[float, ...]
    bias: float
    threshold: float
    features: Tuple[str, ...] = REVIEW_FEATURES

    def __post_init__(self) -> None:
        if tuple(self.features) != REVIEW_FEATURES:
            raise ValueError(f"This review weighs {list(self.features)}; this version computes {list(REVIEW_FEATURES)}.")
        if not len(self.mean) == len(self.scale) == len(self.weights) == len(REVIEW_FEATURES):
            raise ValueError("A region review needs a mean, scale and weight for every feature.")

    def probability(self, features: np.ndarray) -> np.ndarray:
        """The probability that each region (a row of :func:`region_features`) is a bleed."""
        z = (np.asarray(features, float) - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.weights) + self.bias)))

    def with_threshold(self, threshold: float) -> "RegionReview":
        return RegionReview(self.mean, self.scale, self.weights, self.bias, float(threshold), self.features)

    def to_dict(self) -> Dict[str, object]:
        return {"features": list(self.features), "mean": list(self.mean), "scale": list(self.scale),
                "weights": list(self.weights), "bias": self.bias, "threshold": self.threshold}

    @classmethod
    def from_dict(cls, values: Dict[str, object]) -> "RegionReview":
        return cls(tuple(float(v) for v in values["mean"]), tuple(float(v) for v in values["scale"]),
                   tuple(float(v) for v in values["weights"]), float(values["bias"]), float(values["threshold"]),
                   tuple(values["features"]))
