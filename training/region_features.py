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

from SAMIHSLib.volume.head_axis import HeadAxis, head_axes, mirrored_values

REVIEW_FEATURES = ("log_ml", "score_logit", "mean_probability", "slices", "median_hu", "contrast_hu",
                   "asymmetry_hu", "bone_ring")
RING_PX = 3  # the tissue around a region: this many pixels around it on its slices
SOFT_TISSUE_HU = (-20.0, 120.0)  # the ring's tissue a region is compared with: no air, no bone
BONE_HU = 150.0
_RING = np.ones((1, 2 * RING_PX + 1, 2 * RING_PX + 1), bool)  # in-plane only: slices are thick


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
