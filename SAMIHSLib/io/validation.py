"""Checks that refuse bad input with a clear, specific message before anything is computed."""

import numpy as np


class InputError(ValueError):
    """The input image, volume or prompt cannot be segmented as given."""


# A head CT always contains air (about -1000 HU) around the head; MR, PET or 8-bit images do not.
MIN_AIR_HU = -300.0
MAX_PLAUSIBLE_HU = 4000.0


def validate_ct_volume(volume_hu: np.ndarray, what: str = "volume") -> np.ndarray:
    """Return ``volume_hu`` as a (slices, rows, columns) array after checking it is a usable CT.

    A 2D slice becomes a one-slice volume. Raises :class:`InputError` for wrong dimensions,
    colour images, NaN/Inf, empty or constant data, or intensities that are not CT in HU.
    """
    array = np.asarray(volume_hu)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise InputError(f"The {what} must be 2D or 3D (one scalar per voxel); got {array.ndim}D with shape "
                         f"{array.shape}. Colour (RGB) images and 4D series are not CT.")
    if array.size == 0 or min(array.shape) == 0:
        raise InputError(f"The {what} is empty (shape {array.shape}).")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise InputError(f"The {what} has non-numeric or complex voxels ({array.dtype}).")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise InputError(f"The {what} contains {bad} NaN/Inf voxels; fix or crop them before segmenting.")
    low, high = float(array.min()), float(array.max())
    if low == high:
        raise InputError(f"The {what} is constant ({low}); there is nothing to segment.")
    if low > MIN_AIR_HU or high > MAX_PLAUSIBLE_HU * 4:
        raise InputError(
            f"The {what} does not look like CT in Hounsfield units (values {low:.0f} to {high:.0f}; a head CT has "
            f"air near -1000 HU). MR, PET or 8-bit images are not supported; if this is CT, apply its "
            "rescale slope/intercept first."
        )
    return array


def validate_slice_index(index: int, num_slices: int) -> int:
    if not 0 <= int(index) < num_slices:
        raise InputError(f"Slice index {index} is outside the volume (0 to {num_slices - 1}).")
    return int(index)


def validate_point_in_slice(x: float, y: float, shape_hw: tuple, what: str = "click") -> None:
    """``x`` is the column, ``y`` the row, in pixels."""
    h, w = shape_hw
    if not (np.isfinite(x) and np.isfinite(y)) or not (-0.5 <= x < w - 0.5 and -0.5 <= y < h - 0.5):
        raise InputError(f"The {what} at column {x:.1f}, row {y:.1f} is outside the image "
                         f"({w} columns x {h} rows).")
