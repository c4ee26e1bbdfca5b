"""Test helper: write a CT volume as a real DICOM series with pydicom (generated in the test,
never committed)."""

from pathlib import Path
from typing import Sequence

import numpy as np


def write_dicom_series(folder: Path, slices_hu: np.ndarray, spacing_ijk: Sequence[float] = (0.5, 0.5, 5.0),
                       skip: int = -1) -> Path:
    """One CT file per slice of ``slices_hu`` ((k, j, i) int16 HU) in ``folder``; slice ``skip`` left out."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    for k, image in enumerate(slices_hu):
        if k == skip:
            continue
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"{k:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "CT", series, study
        ds.FrameOfReferenceUID, ds.PatientID, ds.PatientName = frame, "SAMIHS-TEST", "Phantom^Head"
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20261130", "120000", "", "1"
        ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = 1, k + 1, "SAMIHS test"
        ds.PatientBirthDate, ds.PatientSex, ds.ReferringPhysicianName = "", "O", ""
        ds.ImagePositionPatient = [0.0, 0.0, float(spacing_ijk[2]) * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [float(spacing_ijk[1]), float(spacing_ijk[0])], float(spacing_ijk[2])
        ds.Rows, ds.Columns = image.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = np.ascontiguousarray(image.astype(np.int16)).tobytes()
        ds.save_as(str(folder / f"{k:03d}.dcm"), enforce_file_format=True)
    return folder
