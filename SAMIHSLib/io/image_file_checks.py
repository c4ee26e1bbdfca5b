"""Checks of an image file before its voxels are read: the declared size against a memory budget
(a 1 KB header may declare terabytes), and the declared data against what the file holds (ITK's
NIfTI reader silently fills a short file with zeros; NRRD and MHA readers report it)."""

import gzip
import os
import struct
from pathlib import Path
from typing import Sequence, Tuple

import numpy as np

from SAMIHSLib.io.validation import InputError

# A head CT is at most about 512 x 512 x 1000 voxels; 2^28 (1 GiB as float32) leaves room.
DEFAULT_MAX_VOXELS = 1 << 28
_NIFTI_HEADER_BYTES = 348


def max_voxels() -> int:
    """The voxel budget: ``SAMIHS_MAX_VOXELS`` from the environment, else 2^28."""
    value = os.environ.get("SAMIHS_MAX_VOXELS", "")
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_MAX_VOXELS


def check_declared_size(size_ijk: Sequence[int], source: str) -> None:
    """Refuse an image whose header declares more voxels than the budget (before allocating)."""
    count = int(np.prod([int(s) for s in size_ijk], dtype=np.float64))
    if count > max_voxels():
        dims = " x ".join(str(int(s)) for s in size_ijk)
        raise InputError(f"{source} declares {dims} voxels ({count / 1e6:.0f} million), more than the "
                         f"{max_voxels() / 1e6:.0f} million a head CT needs; refusing to allocate it "
                         "(set SAMIHS_MAX_VOXELS to raise the limit).")


def _nifti_header(raw: bytes, source: str) -> Tuple[int, int]:
    """(declared data bytes, data offset) of a NIfTI-1 header."""
    for endian in ("<", ">"):
        if struct.unpack(endian + "i", raw[:4])[0] == _NIFTI_HEADER_BYTES:
            break
    else:
        raise InputError(f"{source} is not a NIfTI-1 file (bad header size).")
    dims = struct.unpack(endian + "8h", raw[40:56])
    bitpix = struct.unpack(endian + "h", raw[72:74])[0]
    vox_offset = struct.unpack(endian + "f", raw[108:112])[0]
    ndim = dims[0]
    if not 1 <= ndim <= 7 or any(d < 1 for d in dims[1:ndim + 1]) or bitpix <= 0:
        raise InputError(f"{source} has an invalid NIfTI header (dim {dims}, bitpix {bitpix}).")
    check_declared_size(dims[1:ndim + 1], source)
    voxels = int(np.prod(dims[1:ndim + 1], dtype=np.int64))
    return voxels * bitpix // 8, max(int(vox_offset), _NIFTI_HEADER_BYTES)


def check_nifti_complete(path: Path) -> None:
    """Refuse a .nii / .nii.gz whose (decompressed) data is shorter than its header declares."""
    path = Path(path)
    compressed = path.name.lower().endswith(".gz")
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as handle:  # type: ignore[operator]
            raw = handle.read(_NIFTI_HEADER_BYTES)
            if len(raw) < _NIFTI_HEADER_BYTES:
                raise InputError(f"{path} is truncated: {len(raw)} bytes, shorter than a NIfTI header.")
            data_bytes, offset = _nifti_header(raw, str(path))
            needed = offset + data_bytes
            if compressed:
                have = _NIFTI_HEADER_BYTES
                while have < needed:
                    chunk = handle.read(min(1 << 22, needed - have))
                    if not chunk:
                        break
                    have += len(chunk)
            else:
                have = path.stat().st_size
    except (OSError, EOFError) as error:  # gzip: "Compressed file ended before the end-of-stream marker"
        raise InputError(f"{path} is truncated or corrupt: {error}") from error
    if have < needed:
        raise InputError(f"{path} is truncated: its header declares {needed} bytes of image, the file holds "
                         f"{have}. Copy the file again.")


def check_series_spacing(positions_mm: Sequence[Sequence[float]], source: str, tolerance: float = 0.5) -> None:
    """Refuse a DICOM series with a missing slice: the steps between consecutive slice positions
    (mm, in reading order) must agree within ``tolerance`` of their median."""
    if len(positions_mm) < 3:
        return
    steps = np.linalg.norm(np.diff(np.asarray(positions_mm, dtype=float), axis=0), axis=1)
    median = float(np.median(steps))
    if median <= 0:
        raise InputError(f"{source} has slices at the same position; it is not one volume.")
    bad = np.nonzero(np.abs(steps - median) > tolerance * median)[0]
    if bad.size:
        index = int(bad[0])
        raise InputError(f"{source} has a gap of {steps[index]:.1f} mm between slices {index} and {index + 1} "
                         f"(the others are {median:.1f} mm apart): a slice is missing.")
