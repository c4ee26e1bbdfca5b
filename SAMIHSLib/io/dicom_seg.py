"""DICOM SEG output with highdicom: the hemorrhage mask of a DICOM series input as a binary
Segmentation that references the source CT instances, coded as hemorrhage (SNOMED CT) and naming
SAMIHS as the algorithm, so a PACS or viewer shows it over the CT it came from."""

from pathlib import Path
from typing import Sequence

import numpy as np

from SAMIHSLib.io.segment_terms import ABNORMAL_STRUCTURE_CODE, HEMORRHAGE_CODE, SEGMENT_NAME
from SAMIHSLib.io.validation import InputError

AI_ALGORITHM_FAMILY_CODE = ("123110", "DCM", "Artificial Intelligence")  # CID 7162


def write_dicom_seg(path: Path, mask_kji: np.ndarray, source_files: Sequence[str]) -> Path:
    """Write ``mask_kji`` ((k, j, i) bool, k in the order of ``source_files``, the series' files
    as read) as a DICOM SEG at ``path`` (atomically). Needs highdicom (``pip install highdicom``)."""
    try:
        import highdicom as hd
        import pydicom
    except ImportError as error:
        raise InputError("DICOM SEG output needs highdicom: pip install highdicom") from error
    from SAMIHSLib import __version__
    from SAMIHSLib.io.atomic_write import atomic_output

    if not source_files:
        raise InputError("DICOM SEG references its source images: give a DICOM series folder as input.")
    if mask_kji.shape[0] != len(source_files):
        raise InputError(f"The mask has {mask_kji.shape[0]} slices, the DICOM series {len(source_files)}.")
    sources = [pydicom.dcmread(str(name)) for name in source_files]
    algorithm = hd.AlgorithmIdentificationSequence(name="SAMIHS", version=__version__,
                                                   family=hd.sr.CodedConcept(*AI_ALGORITHM_FAMILY_CODE))
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=SEGMENT_NAME,
        segmented_property_category=hd.sr.CodedConcept(*ABNORMAL_STRUCTURE_CODE),
        segmented_property_type=hd.sr.CodedConcept(*HEMORRHAGE_CODE),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
        algorithm_identification=algorithm)
    segmentation = hd.seg.Segmentation(
        source_images=sources, pixel_array=np.asarray(mask_kji, dtype=np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[description],
        series_instance_uid=hd.UID(), series_number=900, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="SAMIHS", manufacturer_model_name="SAMIHS click-to-segment hemorrhage",
        software_versions=__version__, device_serial_number="SAMIHS", series_description="SAMIHS hemorrhage",
        omit_empty_frames=False)
    with atomic_output(path) as temporary:
        segmentation.save_as(str(temporary))
    return Path(path)


def read_dicom_seg_mask(path: Path, source_files: Sequence[str]) -> np.ndarray:
    """The hemorrhage mask of a DICOM SEG as (k, j, i) bool, k in the order of ``source_files``."""
    import highdicom as hd
    import pydicom

    segmentation = hd.seg.segread(str(path))
    uids = [pydicom.dcmread(str(name), stop_before_pixels=True).SOPInstanceUID for name in source_files]
    pixels = segmentation.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1])
    return pixels[..., 0] > 0
