"""The clicked bleed's own appearance, learned on the slice the user clicked, to judge the slices
propagation reaches.

Blood is not always hyperdense: a chronic subdural collection reads near CSF (0-25 HU), a subacute
one or a thin layer with partial volume is isodense to brain (30-45 HU), an acute clot 50-90 HU.
So the band a propagated slice is held to reaches the clicked mask's own HU spread (its 10th-90th
percentile, widened a little for noise and the change between slices) wherever that lies; the
acute blood band stays in it, since a clot's density changes from slice to slice.
What every bleed keeps is contrast with the tissue around it (denser than brain, or for a chronic
collection darker): a propagated mask with none has left the bleed for brain.
"""

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np
from scipy import ndimage as ndi

from SAMIHSLib.interaction.regions import BLOOD_HU


@dataclass(frozen=True)
class AppearanceConfig:
    """How the band is learned: percentiles of the mask's (denoised) HU and the margin (HU)
    added on each side; the band never leaves ``BLOOD_HU.possible``."""

    lower_percentile: float = 10.0
    upper_percentile: float = 90.0
    margin_hu: float = 5.0
    # Fewer pixels than this say too little about a bleed: the acute check band is used instead.
    min_pixels: int = 20
    # The ring around a mask its contrast is measured against (mm wide; bone, air and fat left out).
    ring_mm: float = 2.0
    # The band also spans the acute blood band (False: the mask's own spread only).
    include_acute_band: bool = True


@dataclass(frozen=True)
class BleedAppearance:
    """The HU band of one bleed (``low_hu``..``high_hu``) and its median, from its seed slice."""

    low_hu: float
    high_hu: float
    median_hu: float
    contrast_hu: float = 0.0  # median HU of the bleed minus that of the tissue around it

    @property
    def band(self) -> Tuple[float, float]:
        return self.low_hu, self.high_hu

    def fraction_in_band(self, values_hu: np.ndarray) -> float:
        """Share of ``values_hu`` (a mask's denoised HU) inside this bleed's band (0 if empty)."""
        if values_hu.size == 0:
            return 0.0
        return float(np.mean((values_hu >= self.low_hu) & (values_hu <= self.high_hu)))

    def describe(self) -> str:
        return f"{self.low_hu:.0f}-{self.high_hu:.0f} HU (median {self.median_hu:.0f})"


SOFT_TISSUE_HU = (-20.0, 100.0)  # what a ring may hold: not air, fat or bone


def contrast_hu(slice_hu: np.ndarray, mask: np.ndarray, spacing_zyx: Sequence[float], ring_mm: float) -> float:
    """Median HU inside ``mask`` minus the median of the soft tissue in a ring ``ring_mm`` wide
    around it, on a denoised slice; 0 when either is empty."""
    from SAMIHSLib.interaction.regions import mm_to_whole_px

    if not mask.any():
        return 0.0
    rows, cols = np.nonzero(mask)
    pad = mm_to_whole_px(ring_mm, spacing_zyx, minimum=1) + 1
    box = (slice(max(0, rows.min() - pad), rows.max() + pad + 1), slice(max(0, cols.min() - pad), cols.max() + pad + 1))
    local, inside = slice_hu[box], mask[box]
    ring = ndi.binary_dilation(inside, iterations=pad - 1) & ~inside
    ring &= (local > SOFT_TISSUE_HU[0]) & (local < SOFT_TISSUE_HU[1])
    if not ring.any():
        return 0.0
    return float(np.median(local[inside]) - np.median(local[ring]))


ACUTE_APPEARANCE = BleedAppearance(BLOOD_HU.check_band[0], BLOOD_HU.check_band[1],
                                   float(np.mean(BLOOD_HU.check_band)))


def learn_appearance(slice_hu: np.ndarray, mask: np.ndarray, spacing_zyx: Sequence[float],
                     config: AppearanceConfig = AppearanceConfig()) -> BleedAppearance:
    """The appearance of the bleed ``mask`` covers on the denoised HU slice ``slice_hu``; the
    acute band when the mask is too small to tell."""
    values = slice_hu[mask]
    contrast = contrast_hu(slice_hu, mask, spacing_zyx, config.ring_mm)
    if values.size < config.min_pixels:
        return BleedAppearance(ACUTE_APPEARANCE.low_hu, ACUTE_APPEARANCE.high_hu, ACUTE_APPEARANCE.median_hu, contrast)
    low, median, high = np.percentile(values, [config.lower_percentile, 50.0, config.upper_percentile])
    low, high = low - config.margin_hu, high + config.margin_hu
    if config.include_acute_band:
        low, high = min(low, ACUTE_APPEARANCE.low_hu), max(high, ACUTE_APPEARANCE.high_hu)
    possible_low, possible_high = BLOOD_HU.possible
    return BleedAppearance(float(max(possible_low, low)), float(min(possible_high, high)), float(median), contrast)
