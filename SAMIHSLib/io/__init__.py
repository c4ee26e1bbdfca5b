"""Files in and out: CT volumes and slices (NRRD, NIfTI, MHA, DICOM, PNG) as axial stacks,
markups, DICOM SEG, the overview PNG, input checks, and atomic writes."""
