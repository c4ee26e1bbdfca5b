"""A click's 3D answer joined with the bleed detector's regions that overlap it.

Propagation stops where the model's answer on the next slice fails a rule, and the clicked slice's
answer may cut a bleed's rim; the bleed detector (:mod:`SAMIHSLib.volume.bleed_detection`) draws
some bleeds whole. Its regions (voxels above a pixel threshold, diagonal neighbours joined, as the
detector's own regions) that overlap the answer are added to it. A region that overlaps no answer
is left out: the user clicked one bleed. The detector's probabilities are asked for only on the
slices the answer and the joined regions reach.

Pure NumPy/SciPy: the detector comes in as a :class:`BleedEvidence`, so this layer needs no torch.
"""

from dataclasses import dataclass
from typing import List, Optional, Protocol, Sequence, Tuple

import numpy as np
from scipy import ndimage as ndi

from SAMIHSLib.interaction.prompts import Point
from SAMIHSLib.interaction.regions import disc_around

# Diagonal neighbours across slices belong together (slices are thick), as in the detector's regions.
REGION_STRUCTURE = np.ones((3, 3, 3), bool)


class BleedEvidence(Protocol):
    """Bleed probability per voxel of the session's volume, computed on demand."""

    def probability(self, slices: Sequence[int]) -> np.ndarray:
        """(len(slices), rows, columns) float32 probabilities of those slices."""


@dataclass(frozen=True)
class DetectorJoin:
    """When a click's answer is joined with the detector's regions. The defaults ship: chosen on the
    training folds of the 3D evaluation (``training/results/volumes_5fold_detector_join``)."""

    pixel_threshold: float = 0.3
    # False: only a new bleed's answer; True: a positive correction's too (regions within reach
    # of a negative click left out: the user said "not this" there).
    on_positive_corrections: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.pixel_threshold < 1.0:
            raise ValueError(f"The detector's pixel threshold must lie in (0, 1), got {self.pixel_threshold}.")


@dataclass
class DetectorRegions:
    """The session's detector: its evidence on this volume and when to join its regions."""

    evidence: BleedEvidence
    join: DetectorJoin = DetectorJoin()


def regions_touching(answer: np.ndarray, evidence: BleedEvidence, pixel_threshold: float,
                     changeable: np.ndarray, avoid: Optional[np.ndarray] = None) -> np.ndarray:
    """The voxels of the detector's regions that overlap ``answer`` (k, j, i), on ``changeable``
    slices (a (k,) bool: locked and user-checked slices are not), minus ``avoid`` (k, j, i) and
    without a region that touches it.

    The probabilities are computed on the answer's slices and one beyond each end; while a
    region reaches the end of what was computed, one more slice that way."""
    slices = np.nonzero(answer.any(axis=(1, 2)))[0]
    if not slices.size:
        return np.zeros_like(answer)
    count = answer.shape[0]
    first, last = max(0, int(slices[0]) - 1), min(count - 1, int(slices[-1]) + 1)
    computed: List[np.ndarray] = list(evidence.probability(range(first, last + 1)))
    while True:
        above = np.stack(computed) > pixel_threshold
        labels, _ = ndi.label(above, structure=REGION_STRUCTURE)
        chosen = np.unique(labels[answer[first:last + 1]])
        chosen = chosen[chosen > 0]
        if avoid is not None and chosen.size:
            chosen = np.setdiff1d(chosen, np.unique(labels[avoid[first:last + 1]]))
        joined = np.isin(labels, chosen) if chosen.size else np.zeros_like(above)
        grow_down = first > 0 and joined[0].any()
        grow_up = last < count - 1 and joined[-1].any()
        if not (grow_down or grow_up):
            break
        if grow_down:
            first -= 1
            computed.insert(0, evidence.probability([first])[0])
        if grow_up:
            last += 1
            computed.append(evidence.probability([last])[0])
    added = np.zeros_like(answer)
    added[first:last + 1] = joined
    added[~changeable] = False
    return added


def negative_reach(shape: Tuple[int, int, int], negatives: Sequence[Tuple[int, Point]], reach_px: float) -> np.ndarray:
    """(k, j, i) True within ``reach_px`` of each negative click (slice k, (column, row))."""
    near = np.zeros(shape, bool)
    for k, point in negatives:
        near[k] |= disc_around(shape[1:], point, reach_px)
    return near
