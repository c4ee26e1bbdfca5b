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
# Slices more asked of the detector at a time while a joined region reaches the end of those read.
GROWTH_SLICES = 4
SLICES_PER_REQUEST = 8


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
                     changeable: np.ndarray, avoid: Optional[np.ndarray] = None) -> Tuple[int, np.ndarray]:
    """The voxels of the detector's regions that overlap ``answer`` (k, j, i), on ``changeable``
    slices (a (k,) bool: locked and user-checked slices are not), without a region that touches
    ``avoid`` (k, j, i): (first slice, the (slices, j, i) block from there), so that a thin-slice
    scan's whole volume is never copied.

    The probabilities are computed on the answer's slices and one beyond each end; while a
    region reaches the end of what was computed, up to GROWTH_SLICES more that way. Regions are
    grown from their seeds, not labelled: no integer label volume (a thin-slice CT's would be
    hundreds of MB)."""
    slices = np.nonzero(answer.any(axis=(1, 2)))[0]
    if not slices.size:
        return 0, np.zeros((0,) + answer.shape[1:], bool)
    count = answer.shape[0]
    first, last = max(0, int(slices[0]) - 1), min(count - 1, int(slices[-1]) + 1)
    above = _above(evidence, range(first, last + 1), pixel_threshold)
    while True:
        block = np.stack(above)
        joined = ndi.binary_propagation(answer[first:last + 1] & block, structure=REGION_STRUCTURE, mask=block)
        if avoid is not None:
            joined &= ~ndi.binary_propagation(avoid[first:last + 1] & block, structure=REGION_STRUCTURE, mask=block)
        grow_down = first > 0 and joined[0].any()
        grow_up = last < count - 1 and joined[-1].any()
        if not (grow_down or grow_up):
            break
        if grow_down:
            new_first = max(0, first - GROWTH_SLICES)
            above[:0] = _above(evidence, range(new_first, first), pixel_threshold)
            first = new_first
        if grow_up:
            new_last = min(count - 1, last + GROWTH_SLICES)
            above += _above(evidence, range(last + 1, new_last + 1), pixel_threshold)
            last = new_last
    joined[~changeable[first:last + 1]] = False
    return first, joined


def _above(evidence: BleedEvidence, slices: Sequence[int], pixel_threshold: float) -> List[np.ndarray]:
    """Each slice's voxels above the threshold, asked a few slices at a time (float32
    probabilities of a long run of thin slices would take hundreds of MB at once)."""
    slices = list(slices)
    return [above for start in range(0, len(slices), SLICES_PER_REQUEST)
            for above in evidence.probability(slices[start:start + SLICES_PER_REQUEST]) > pixel_threshold]


def negative_reach(shape: Tuple[int, int, int], negatives: Sequence[Tuple[int, Point]], reach_px: float) -> np.ndarray:
    """(k, j, i) True within ``reach_px`` of each negative click (slice k, (column, row))."""
    near = np.zeros(shape, bool)
    for k, point in negatives:
        near[k] |= disc_around(shape[1:], point, reach_px)
    return near
