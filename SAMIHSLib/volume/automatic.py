"""Segmentation without clicks (``samihs batch --prompts auto``, the Slicer module's "Segment all
loaded volumes", the web app's batch): the bleed detector proposes regions, each kept region is
one suspected bleed that a reader can review and reject, and a head where nothing is kept is
reported as "no bleed found" with the detector's highest score.

``mode="detector"`` returns the detector's own regions. ``mode="seeded"`` turns each region into a
click (the deepest point of its largest slice) for the same click -> propagation path as a user's
click, as the band seeds did; which one ships is chosen on training folds
(``python -m training detectorcv``, docs/automatic-batch.md).
"""

import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from SAMIHSLib.interaction.regions import deepest_point, slice_with_most
from SAMIHSLib.io.volume_io import AxialStack
from SAMIHSLib.models.files import SHIPPED_MODELS_DIR
from SAMIHSLib.progress import ProgressCallback
from SAMIHSLib.volume.bleed_detection import BleedDetector, DetectedRegion

SHIPPED_DETECTOR = SHIPPED_MODELS_DIR / "bleed_detector.pt"
AUTOMATIC_MODES = ("detector", "seeded")
AUTOMATIC_MODE = "detector"


@dataclass
class AutomaticResult:
    """What automatic segmentation found in one volume (stack order: axial slice, row, column)."""

    regions: List[DetectedRegion]
    region_masks: List[np.ndarray] = field(repr=False)  # the final mask of each region, same order
    top_score: float
    region_threshold: float
    shape: Tuple[int, ...]  # the stack's (slices, rows, columns)

    @property
    def mask(self) -> np.ndarray:
        """Every kept region joined (all False when none was kept)."""
        return np.logical_or.reduce(self.region_masks) if self.region_masks else np.zeros(self.shape, bool)

    @property
    def bleed_found(self) -> bool:
        return bool(self.regions)

    def describe(self) -> str:
        """One line for a report: what was found and how sure the detector was."""
        if not self.regions:
            return (f"no bleed found: highest detector score {self.top_score:.3f} "
                    f"(a region needs {self.region_threshold:.3f})")
        return "; ".join(f"region {number}: {region.describe()}" for number, region in enumerate(self.regions, 1))


def detector_fingerprint(detector: BleedDetector) -> str:
    """SHA-256 of the detector's weights and thresholds: what made an automatic result."""
    from SAMIHSLib.models.checkpoint import sha256_tensors

    return f"{sha256_tensors(detector.network.state_dict())} {detector.thresholds.label()}"


@lru_cache(maxsize=2)
def load_detector(path: Optional[str] = None) -> BleedDetector:
    """The detector at ``path`` (default: the shipped one), loaded once per process."""
    return BleedDetector.load(Path(path) if path else SHIPPED_DETECTOR)


def segment_automatically(stack: AxialStack, detector: BleedDetector, predictor=None, mode: str = "detector",
                          cancel: Optional[threading.Event] = None,
                          progress: Optional[ProgressCallback] = None) -> AutomaticResult:
    """Detect suspected bleeds in ``stack`` and segment each (see the module docstring).
    ``predictor`` (a :class:`SAMIHSLib.interaction.predictor.SAMIHSPredictor`) is needed for
    ``mode="seeded"`` only."""
    if mode not in AUTOMATIC_MODES:
        raise ValueError(f"Unknown automatic mode {mode!r}; use one of {', '.join(AUTOMATIC_MODES)}.")
    probability = detector.probabilities(stack.array_hu, stack.spacing_zyx, cancel, progress)
    regions = detector.regions(probability, stack.spacing_zyx)
    masks = [region.mask for region in regions]
    if mode == "seeded" and regions:
        if predictor is None:
            raise ValueError("Seeded automatic segmentation needs a predictor.")
        masks = _segment_from_seeds(stack, regions, predictor, cancel, progress)
    return AutomaticResult(regions, masks, float(probability.max()), detector.thresholds.region_threshold,
                           stack.array_hu.shape)


def _segment_from_seeds(stack: AxialStack, regions: List[DetectedRegion], predictor,
                        cancel: Optional[threading.Event], progress: Optional[ProgressCallback]) -> List[np.ndarray]:
    from SAMIHSLib.interaction.session import HemorrhageSession

    predictor.set_volume(stack.array_hu, stack.spacing_zyx)
    masks = []
    for number, region in enumerate(regions):
        k = slice_with_most(region.mask)
        column, row = deepest_point(region.mask[k])
        if progress is not None:
            progress(number, len(regions), f"region {number + 1} of {len(regions)} (slice {k})")
        session = HemorrhageSession(predictor)
        session.click(k, [(column, row)], [], cancel=cancel)
        masks.append(session.mask.copy())
    return masks
