"""The one report schema: what SAMIHS says about one CT's hemorrhage segmentation.

The CLI's ``--report`` JSON, the batch CSV (one row per volume), the web app's JSON and CSV
downloads and the Slicer logic's report all write :class:`SegmentationReport`, so a field has one
name everywhere. JSON holds every field; a CSV row holds the scalar ones (``CSV_COLUMNS``), with the
measurements spread into their own columns. ``status_lines`` is the human-readable summary that the
Slicer panel and the web page both show.
"""

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from SAMIHSLib.io.atomic_write import write_text_atomic

OK, NO_BLEED_FOUND, FAILED = "ok", "no bleed found", "failed"

MEASUREMENT_COLUMNS = ("volume_ml", "abc_over_2_ml", "max_axial_area_mm2", "first_slice", "last_slice", "num_slices")
INTEGER_MEASUREMENTS = ("first_slice", "last_slice", "num_slices")
CSV_COLUMNS = ("volume", "status", "reason", "segmentation", "bleeds_clicked") + MEASUREMENT_COLUMNS + (
    "seconds", "engine", "precision", "device", "model", "detection_score", "detected_regions")


@dataclass
class SegmentationReport:
    """One CT's segmentation. ``reason`` says in words why a result is empty, fell back or failed
    (and lists the regions of an automatic result); ``measurements`` has ``MEASUREMENT_COLUMNS``
    (and the slice of largest area), empty when nothing was segmented."""

    volume: str
    status: str = OK
    reason: str = ""
    segmentation: str = ""
    model: str = ""
    engine: str = ""
    precision: str = ""
    device: str = ""
    measurements: Dict[str, float] = field(default_factory=dict)
    filled_slices: List[int] = field(default_factory=list)
    clicked_slices: List[int] = field(default_factory=list)
    bleeds_clicked: Optional[int] = None
    predicted_iou: Dict[int, float] = field(default_factory=dict)
    answered_by: Dict[int, str] = field(default_factory=dict)
    stop_reasons: Dict[str, str] = field(default_factory=dict)
    seconds: Optional[float] = None
    encoded_slices: Optional[int] = None
    spacing_mm: List[float] = field(default_factory=list)
    spacing_assumed: bool = False
    spacing_note: str = ""
    detection_score: Optional[float] = None
    detected_regions: Optional[int] = None
    detector_added: str = ""  # what the bleed detector's regions added to a click's answer, in words

    def to_dict(self) -> Dict[str, object]:
        """The JSON form: every field, in field order; per-slice maps keyed by the axial slice number
        as text, in slice order."""
        data = asdict(self)
        data["predicted_iou"] = {str(k): round(v, 4) for k, v in sorted(self.predicted_iou.items())}
        data["answered_by"] = {str(k): v for k, v in sorted(self.answered_by.items())}
        data["seconds"] = None if self.seconds is None else round(self.seconds, 2)
        data["detection_score"] = None if self.detection_score is None else round(self.detection_score, 4)
        return data

    def csv_row(self) -> Dict[str, str]:
        """The CSV form: ``CSV_COLUMNS``, empty where a value does not apply."""
        row = {"volume": self.volume, "status": self.status, "reason": self.reason,
               "segmentation": self.segmentation, "model": self.model, "engine": self.engine,
               "precision": self.precision, "device": self.device,
               "bleeds_clicked": _text(self.bleeds_clicked), "seconds": _text(self.seconds, "{:.1f}"),
               "detection_score": _text(self.detection_score, "{:.3f}"),
               "detected_regions": _text(self.detected_regions)}
        for column in MEASUREMENT_COLUMNS:  # slice numbers and counts as integers, mL and mm2 to 0.001
            row[column] = _text(self.measurements.get(column), "{:.0f}" if column in INTEGER_MEASUREMENTS else "{:.3f}")
        return row

    def headline(self) -> str:
        """The first thing to say: the volume (or that there is none, or the failure), then the reason
        and what the bleed detector added."""
        if self.status == FAILED:
            return f"Failed: {self.reason}"
        if self.filled_slices:
            text = (f"Hemorrhage: {self.measurements.get('volume_ml', 0.0):.2f} mL "
                    f"(ABC/2 {self.measurements.get('abc_over_2_ml', 0.0):.2f} mL).")
        elif self.status == NO_BLEED_FOUND and self.reason.startswith(NO_BLEED_FOUND):
            text = ""  # the reason says it, with the detector's score
        else:
            text = "No slice segmented yet." if self.status == OK else "No bleed found."
        notes = [note for note in (self.reason, self.detector_added) if note]
        return (text + "".join(f" {note[0].upper()}{note[1:]}." for note in notes)).lstrip()

    def slices_text(self) -> str:
        """Where the bleed is, and where and why propagation stopped."""
        text = slice_runs_text(self.filled_slices) if self.filled_slices else "No slice segmented yet."
        if self.stop_reasons:
            text += " Propagation stopped: " + "; ".join(
                f"{direction}: {why}" for direction, why in sorted(self.stop_reasons.items())) + "."
        return text

    def status_lines(self) -> List[str]:
        """What the Slicer panel and the web page show: the headline, then the slices."""
        return [self.headline()] + ([self.slices_text()] if self.filled_slices or self.stop_reasons else [])


def _text(value: object, form: str = "{}") -> str:
    return "" if value is None else form.format(value)


def slice_runs_text(filled: Sequence[int]) -> str:
    """"Bleed on axial slices 3-7, 9 (6 slices)." for the filled slice numbers."""
    runs, start = [], filled[0]
    for previous, current in zip(filled, list(filled[1:]) + [None]):
        if current != previous + 1:
            runs.append(f"{start}" if start == previous else f"{start}-{previous}")
            start = current
    return f"Bleed on axial slices {', '.join(runs)} ({len(filled)} slices)."


def write_report_json(report: SegmentationReport, path: Path) -> Path:
    """The report as JSON, atomically."""
    write_text_atomic(Path(path), json.dumps(report.to_dict(), indent=2) + "\n")
    return Path(path)


def reports_csv_text(rows: Sequence[Dict[str, str]]) -> str:
    """CSV text of report rows (:meth:`SegmentationReport.csv_row`, or rows read back), one per CT."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({column: row.get(column, "") for column in CSV_COLUMNS})
    return buffer.getvalue()


def read_reports_csv(path: Path) -> Dict[str, Dict[str, str]]:
    """Rows of a report CSV keyed by volume (empty when the file does not exist)."""
    if not Path(path).is_file():
        return {}
    with open(path, newline="") as handle:
        return {row["volume"]: row for row in csv.DictReader(handle)}
