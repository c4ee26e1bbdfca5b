"""Augmentation of a CT slice and its mask: the paper's shift, rotation and Gaussian noise,
plus intensity and window jitter (in HU), and an optional zoom onto a crop (scale)."""

from dataclasses import dataclass
from typing import Tuple

import numpy as np
from scipy import ndimage as ndi


@dataclass(frozen=True)
class AugmentConfig:
    max_shift_px: int = 24
    max_rotation_deg: float = 15.0
    max_noise_hu: float = 6.0
    intensity_scale: float = 0.03
    intensity_offset_hu: float = 3.0
    window_level_jitter_hu: float = 4.0
    window_width_jitter_hu: float = 10.0


def augment_slice(image_hu: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                  config: AugmentConfig = AugmentConfig()) -> Tuple[np.ndarray, np.ndarray, float, float]:
    """(image in HU, mask, window level jitter, window width jitter); the inputs are not modified.
    ``image_hu`` is one slice (rows, columns) or a stack of them (n, rows, columns) moved alike, such as
    a slice and its neighbours; ``mask`` is (rows, columns)."""
    angle = rng.uniform(-config.max_rotation_deg, config.max_rotation_deg)
    image = ndi.rotate(image_hu, angle, axes=(-1, -2), reshape=False, order=1, mode="constant", cval=-1000.0)
    rotated = ndi.rotate(mask.astype(np.float32), angle, reshape=False, order=1, mode="constant") > 0.5
    shift = rng.integers(-config.max_shift_px, config.max_shift_px + 1, size=2)
    image = ndi.shift(image, (0,) * (image.ndim - 2) + tuple(shift), order=0, mode="constant", cval=-1000.0)
    rotated = ndi.shift(rotated, shift, order=0, mode="constant", cval=0)
    image = image * (1 + rng.uniform(-config.intensity_scale, config.intensity_scale))
    image = image + rng.uniform(-config.intensity_offset_hu, config.intensity_offset_hu)
    image = image + rng.normal(0, rng.uniform(0, config.max_noise_hu), size=image.shape)
    return (image.astype(np.float32), rotated, float(rng.uniform(-1, 1) * config.window_level_jitter_hu),
            float(rng.uniform(-1, 1) * config.window_width_jitter_hu))


def zoom_in(image_hu: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
            max_zoom: float) -> Tuple[np.ndarray, np.ndarray, float]:
    """A crop of ``image_hu``/``mask``, 1/zoom of the slice on each side, enlarged back to the slice's
    size, the zoom drawn log-uniformly in [1, ``max_zoom``]: (image, mask, zoom actually applied).
    On a slice with bleed the crop is centred near a random bleed pixel and always holds it; elsewhere
    it lies anywhere. A model fed bleeds at several pixel sizes cannot learn a bleed's size in pixels."""
    if max_zoom < 1.0:
        raise ValueError(f"max_zoom must be at least 1, not {max_zoom!r}.")
    rows, columns = image_hu.shape
    zoom = float(np.exp(rng.uniform(0.0, np.log(max_zoom))))
    side_y, side_x = max(1, int(round(rows / zoom))), max(1, int(round(columns / zoom)))
    if mask.any():
        ys, xs = np.nonzero(mask)
        pick = int(rng.integers(len(ys)))
        # the picked pixel lies within a quarter side of the crop's centre, so it stays inside
        y0 = int(ys[pick]) - side_y // 2 + int(rng.integers(-(side_y // 4), side_y // 4 + 1))
        x0 = int(xs[pick]) - side_x // 2 + int(rng.integers(-(side_x // 4), side_x // 4 + 1))
    else:
        y0, x0 = int(rng.integers(0, rows - side_y + 1)), int(rng.integers(0, columns - side_x + 1))
    y0, x0 = int(np.clip(y0, 0, rows - side_y)), int(np.clip(x0, 0, columns - side_x))
    factors = (rows / side_y, columns / side_x)
    crop = np.ascontiguousarray(image_hu[y0:y0 + side_y, x0:x0 + side_x], dtype=np.float32)
    image = ndi.zoom(crop, factors, order=1, mode="nearest", grid_mode=True)
    enlarged = ndi.zoom(mask[y0:y0 + side_y, x0:x0 + side_x].astype(np.float32), factors, order=1,
                        mode="nearest", grid_mode=True) > 0.5
    return image, enlarged, factors[0]  # float32: ndi.zoom keeps the crop's dtype
