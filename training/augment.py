"""Augmentation of a CT slice and its mask: the paper's shift, rotation and Gaussian noise,
plus intensity and window jitter (in HU)."""

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
    """(image in HU, mask, window level jitter, window width jitter); the inputs are not modified."""
    angle = rng.uniform(-config.max_rotation_deg, config.max_rotation_deg)
    image = ndi.rotate(image_hu, angle, reshape=False, order=1, mode="constant", cval=-1000.0)
    rotated = ndi.rotate(mask.astype(np.float32), angle, reshape=False, order=1, mode="constant") > 0.5
    shift = rng.integers(-config.max_shift_px, config.max_shift_px + 1, size=2)
    image = ndi.shift(image, shift, order=0, mode="constant", cval=-1000.0)
    rotated = ndi.shift(rotated, shift, order=0, mode="constant", cval=0)
    image = image * (1 + rng.uniform(-config.intensity_scale, config.intensity_scale))
    image = image + rng.uniform(-config.intensity_offset_hu, config.intensity_offset_hu)
    image = image + rng.normal(0, rng.uniform(0, config.max_noise_hu), size=image.shape)
    return (image.astype(np.float32), rotated, float(rng.uniform(-1, 1) * config.window_level_jitter_hu),
            float(rng.uniform(-1, 1) * config.window_width_jitter_hu))
