"""The files a user downloads from the browser app, written atomically into the session's folder:
the segmentation as ``.seg.nrrd`` (Slicer) and as DICOM SEG (for a DICOM series input), and a
report (JSON or CSV) with the volume, ABC/2, which slices were filled and why propagation stopped."""

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from SAMIHSLib.io.atomic_write import atomic_output, write_text_atomic


@dataclass
class SegmentationReport:
    """What the report says about one CT's hemorrhage segment."""

    ct: str
    model: str
    engine: str
    measurements: Dict[str, float]
    filled_slices: List[int] = field(default_factory=list)
    slice_iou: Dict[int, float] = field(default_factory=dict)
    stop_reasons: Dict[str, str] = field(default_factory=dict)
    message: str = ""

    def to_dict(self) -> Dict[str, object]:
        return {"ct": self.ct, "model": self.model, "engine": self.engine, "measurements": self.measurements,
                "filled_axial_slices": self.filled_slices,
                "predicted_iou_per_slice": {str(k): round(v, 3) for k, v in sorted(self.slice_iou.items())},
                "propagation_stopped": self.stop_reasons, "message": self.message}


def slice_status_text(filled: Sequence[int], stop_reasons: Dict[str, str]) -> str:
    """One line for the page: which axial slices hold bleed, where and why propagation stopped."""
    if not filled:
        return "No slice segmented yet."
    runs, start = [], filled[0]
    for previous, current in zip(filled, list(filled[1:]) + [None]):
        if current != previous + 1:
            runs.append(f"{start}" if start == previous else f"{start}-{previous}")
            start = current
    text = f"Bleed on axial slices {', '.join(runs)} ({len(filled)} slices)."
    if stop_reasons:
        text += " Stopped: " + "; ".join(f"{direction}: {reason}" for direction, reason in stop_reasons.items()) + "."
    return text


def write_segmentation_nrrd(scene, segmentation_node, path: Path) -> Path:
    """The segmentation node as a Slicer ``.seg.nrrd`` (atomically)."""
    storage = segmentation_node.GetStorageNode() or scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    segmentation_node.SetAndObserveStorageNodeID(storage.GetID())
    with atomic_output(Path(path)) as temporary:  # a crash never leaves half a file
        storage.SetFileName(str(temporary))
        if not storage.WriteData(segmentation_node):
            raise OSError(f"Could not write {path}.")
    return Path(path)


def write_dicom_segmentation(mask_kji: np.ndarray, dicom_files: Sequence[str], path: Path) -> Path:
    """A DICOM SEG referencing the source series (SAMIHSLib.io.dicom_seg, highdicom)."""
    if not dicom_files:
        raise ValueError("DICOM SEG needs a DICOM series as the CT; this CT came from another format.")
    from SAMIHSLib.io.dicom_seg import write_dicom_seg

    return write_dicom_seg(Path(path), mask_kji, dicom_files)


def write_report(report: SegmentationReport, path: Path) -> Path:
    """The report as JSON (``.json``) or as one CSV row per axial slice with bleed (``.csv``)."""
    path = Path(path)
    if path.suffix == ".json":
        write_text_atomic(path, json.dumps(report.to_dict(), indent=2) + "\n")
        return path
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["ct", "axial_slice", "predicted_iou", "volume_ml", "abc_over_2_ml"])
    for k in report.filled_slices:
        iou: Optional[float] = report.slice_iou.get(k)
        writer.writerow([report.ct, k, "" if iou is None else f"{iou:.3f}",
                         f"{report.measurements.get('volume_ml', 0.0):.3f}",
                         f"{report.measurements.get('abc_over_2_ml', 0.0):.3f}"])
    write_text_atomic(path, buffer.getvalue())
    return path
