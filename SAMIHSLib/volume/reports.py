"""A :class:`SAMIHSLib.io.report.SegmentationReport` from a segmented mask: its measurements, the
slices it fills and what ran. The CLI, the batch, the Slicer logic and the web app build their
reports here."""

import dataclasses
from typing import Optional, Sequence

import numpy as np

from SAMIHSLib.interaction.measurements import measure_hemorrhage
from SAMIHSLib.interaction.predictor import SAMIHSPredictor
from SAMIHSLib.io.report import SegmentationReport


def mask_report(volume: str, mask: np.ndarray, spacing_zyx: Sequence[float],
                predictor: Optional[SAMIHSPredictor] = None, outcome: Optional[object] = None,
                **fields) -> SegmentationReport:
    """The report of ``mask`` (axial slice, row, column) on ``volume``: measurements and filled
    slices (none when the mask is empty), the engine, precision and device of ``predictor``, and
    from ``outcome`` (a session's click or propagation result) the predicted IoU, the method and
    any stop reason per slice, its message as the reason and what the bleed detector added. ``fields`` set the rest."""
    filled = [int(k) for k in np.nonzero(np.asarray(mask).any(axis=(1, 2)))[0]]
    if filled:
        measurements = measure_hemorrhage(mask, spacing_zyx).to_dict()
    else:  # no slice numbers for an empty mask
        measurements = {"volume_ml": 0.0, "abc_over_2_ml": 0.0, "max_axial_area_mm2": 0.0, "num_slices": 0}
    report = SegmentationReport(volume, measurements=measurements, filled_slices=filled)
    if predictor is not None:
        report.engine, report.precision = predictor.engine_name, predictor.precision
        report.device = predictor.device_type
    if outcome is not None:
        report.predicted_iou = dict(outcome.slice_iou)
        report.answered_by = dict(outcome.slice_methods)
        report.stop_reasons = dict(outcome.stop_reasons)
        report.reason = outcome.message
        report.detector_added = outcome.detector_added
    return dataclasses.replace(report, **fields)
