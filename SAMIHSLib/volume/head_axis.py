"""The head's long (anterior-posterior) axis on each axial slice, and the other side of the head
across it: where a bleed's mirror image lies. Bleeds are seldom mirrored; the falx and the cortex
along the inner table, which partial volume makes read as blood, are.
"""

from typing import List, Optional, Tuple

import numpy as np
from scipy import ndimage as ndi

from SAMIHSLib.interaction.regions import HEAD_HU, largest_component

HeadAxis = Tuple[float, float, np.ndarray]  # centroid row, column and unit long-axis direction (row, column)


def head_axes(volume_hu: np.ndarray) -> List[Optional[HeadAxis]]:
    """Per axial slice: the head's centroid and long (anterior-posterior) axis, about which the
    other side of the head is mirrored; None where a slice holds too little head."""
    axes: List[Optional[HeadAxis]] = []
    for image in volume_hu:
        rows, columns = np.nonzero(ndi.binary_fill_holes(largest_component(image > HEAD_HU)))
        if len(rows) < 100:
            axes.append(None)
            continue
        centre = np.array([rows.mean(), columns.mean()])
        values, vectors = np.linalg.eigh(np.cov(np.stack([rows - centre[0], columns - centre[1]])))
        axes.append((float(centre[0]), float(centre[1]), vectors[:, int(np.argmax(values))]))
    return axes


def mirrored_values(image: np.ndarray, rows: np.ndarray, columns: np.ndarray, axis: HeadAxis) -> np.ndarray:
    """``image`` at the mirror images of the pixels (rows, columns) across the head's long axis."""
    centre_row, centre_column, direction = axis
    offset = np.stack([rows - centre_row, columns - centre_column])
    along = direction @ offset
    mirror = 2 * (np.array([[centre_row], [centre_column]]) + direction[:, None] * along) - np.stack([rows, columns])
    mirror_rows = np.clip(np.round(mirror[0]).astype(int), 0, image.shape[0] - 1)
    mirror_columns = np.clip(np.round(mirror[1]).astype(int), 0, image.shape[1] - 1)
    return image[mirror_rows, mirror_columns]
