"""The click session every app runs: the model's answer, propagated, joined with the shipped bleed
detector's regions that overlap it (chosen on the training folds of the 3D evaluation:
``training/results/volumes_5fold_detector_join``, docs/accuracy-3d.md).

The detector is loaded at the first join, not with the session: a session that never joins (a
negative click, a slice alone) never imports torch for it.
"""

from typing import Optional, Sequence

import numpy as np

from SAMIHSLib.interaction.detected_regions import DetectorJoin, DetectorRegions
from SAMIHSLib.interaction.predictor import SAMIHSPredictor
from SAMIHSLib.interaction.session import HemorrhageSession


class ShippedDetectorEvidence:
    """The shipped detector's probabilities on one volume, the detector loaded when first asked."""

    def __init__(self, volume_hu: np.ndarray, spacing_zyx: Sequence[float]) -> None:
        self.volume_hu, self.spacing_zyx = volume_hu, tuple(spacing_zyx)
        self._evidence = None

    def probability(self, slices: Sequence[int]) -> np.ndarray:
        """(len(slices), rows, columns) float32 bleed probabilities of those slices."""
        if self._evidence is None:
            from SAMIHSLib.volume.automatic import load_detector
            from SAMIHSLib.volume.bleed_detection import DetectorEvidence

            self._evidence = DetectorEvidence(load_detector(), self.volume_hu, self.spacing_zyx)
        return self._evidence.probability(slices)


def click_session(predictor: SAMIHSPredictor, join_detector: bool = True,
                  join: Optional[DetectorJoin] = None) -> HemorrhageSession:
    """A session on the predictor's volume (``set_volume`` first) as the apps run it; with
    ``join_detector`` False, the model's answers alone."""
    regions = None
    if join_detector:
        regions = DetectorRegions(ShippedDetectorEvidence(predictor.volume_hu, predictor.spacing_zyx),
                                  join or DetectorJoin())
    return HemorrhageSession(predictor, detector_regions=regions)
