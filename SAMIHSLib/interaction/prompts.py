"""Prompts on one slice, in that slice's pixel coordinates (x = column, y = row)."""

import hashlib
from dataclasses import dataclass, field
from typing import Hashable, List, Optional, Sequence, Tuple

import numpy as np

Point = Tuple[float, float]


@dataclass
class SlicePrompt:
    """Positive/negative clicks, an optional box (x0, y0, x1, y1) and an optional previous mask
    (binary or logits, at the slice's native resolution) used as a dense prompt."""

    positive_points: List[Point] = field(default_factory=list)
    negative_points: List[Point] = field(default_factory=list)
    box: Optional[Tuple[float, float, float, float]] = None
    mask_input: Optional[np.ndarray] = None

    @property
    def has_points(self) -> bool:
        return bool(self.positive_points or self.negative_points)

    def is_empty(self) -> bool:
        return not self.has_points and self.box is None and self.mask_input is None

    def points_and_labels(self) -> Tuple[np.ndarray, np.ndarray]:
        """(N, 2) float32 coordinates and (N,) int labels: 1 positive, 0 negative."""
        coords = list(self.positive_points) + list(self.negative_points)
        labels = [1] * len(self.positive_points) + [0] * len(self.negative_points)
        return np.asarray(coords, dtype=np.float32).reshape(-1, 2), np.asarray(labels, dtype=np.int64)

    def all_points(self) -> Sequence[Point]:
        return list(self.positive_points) + list(self.negative_points)

    def signature(self) -> Hashable:
        """Equal for prompts that ask the model the same thing (a key for remembering answers)."""
        mask = None
        if self.mask_input is not None:
            array = np.ascontiguousarray(self.mask_input)
            mask = (array.shape, array.dtype.str, hashlib.sha1(array.data).hexdigest())
        return (tuple((float(x), float(y)) for x, y in self.positive_points),
                tuple((float(x), float(y)) for x, y in self.negative_points),
                None if self.box is None else tuple(float(v) for v in self.box), mask)
