"""The files a user downloads from the browser app, written atomically into the session's folder:
the segmentation as ``.seg.nrrd`` (Slicer) and as DICOM SEG (for a DICOM series input), and the
report (JSON, or CSV in the batch report's columns) with the volume, ABC/2, which slices were filled
and why propagation stopped."""

from pathlib import Path
from typing import Sequence

import numpy as np

from SAMIHSLib.io.atomic_write import atomic_output, write_text_atomic
from SAMIHSLib.io.report import SegmentationReport, reports_csv_text, write_report_json


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
    """The report (SAMIHSLib's one schema) as JSON (``.json``) or as the batch CSV's row (``.csv``)."""
    path = Path(path)
    if path.suffix == ".json":
        return write_report_json(report, path)
    write_text_atomic(path, reports_csv_text([report.csv_row()]))
    return path
