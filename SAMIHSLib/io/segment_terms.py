"""What SAMIHS calls its result everywhere it writes one: the segment's name and colour (Slicer
segmentations, label maps, the web app) and its coded meaning (DICOM SEG)."""

SEGMENT_NAME = "Hemorrhage"
SEGMENT_COLOR = (0.85, 0.15, 0.15)  # red, as Slicer shows it

# SNOMED CT 50960005 "Hemorrhage" in the category 49755003 "Morphologically Abnormal Structure",
# as pydicom's code dictionary (codes.SCT) spells them.
HEMORRHAGE_CODE = ("50960005", "SCT", "Hemorrhage")
ABNORMAL_STRUCTURE_CODE = ("49755003", "SCT", "Morphologically Abnormal Structure")
