"""The clicked bleed's appearance: its own HU band and its contrast with the tissue around it,
whatever its age (chronic collections are darker than brain, acute clots denser)."""

import numpy as np
import pytest

from SAMIHSLib.interaction.appearance import ACUTE_APPEARANCE, AppearanceConfig, contrast_hu, learn_appearance
from SAMIHSLib.interaction.regions import disc_around

SPACING = (5.0, 0.45, 0.45)


def _slice_with(bleed_hu: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    image = 35.0 + rng.normal(0.0, 2.0, (128, 128))  # brain
    image[:, :6] = 1000.0  # bone beside it: never part of the ring
    bleed = disc_around(image.shape, (64.0, 64.0), 15.0)
    image[bleed] = bleed_hu + rng.normal(0.0, 2.0, int(bleed.sum()))
    return image, bleed


@pytest.mark.parametrize("bleed_hu", [15.0, 42.0, 70.0], ids=["chronic", "isodense-ish", "acute"])
def test_the_band_reaches_the_bleed_s_own_hu_wherever_it_lies(bleed_hu):
    image, bleed = _slice_with(bleed_hu)
    own = learn_appearance(image, bleed, SPACING, AppearanceConfig(include_acute_band=False))
    assert own.low_hu < bleed_hu < own.high_hu
    assert own.high_hu - own.low_hu < 25.0  # its spread (+-2.6 HU at 10/90 %) and 5 HU each side
    assert own.median_hu == pytest.approx(bleed_hu, abs=1.0)
    assert own.fraction_in_band(image[bleed]) > 0.95
    shipped = learn_appearance(image, bleed, SPACING)  # the default also spans the acute band
    assert shipped.low_hu == pytest.approx(min(own.low_hu, ACUTE_APPEARANCE.low_hu))
    assert shipped.high_hu == pytest.approx(max(own.high_hu, ACUTE_APPEARANCE.high_hu))
    assert shipped.fraction_in_band(image[bleed]) > 0.95  # a chronic collection is inside its band


def test_contrast_has_the_sign_of_the_bleed_against_brain_and_ignores_bone():
    chronic, mask = _slice_with(15.0)
    acute, _ = _slice_with(70.0)
    assert contrast_hu(chronic, mask, SPACING, 2.0) == pytest.approx(-20.0, abs=2.0)
    assert contrast_hu(acute, mask, SPACING, 2.0) == pytest.approx(35.0, abs=2.0)
    brain = np.zeros_like(mask)
    brain[10:40, 60:90] = True  # a patch of brain: no contrast with the brain around it
    assert abs(contrast_hu(acute, brain, SPACING, 2.0)) < 2.0
    next_to_bone = np.zeros_like(mask)
    next_to_bone[40:60, 6:12] = True  # along the bone, whose 1000 HU must not count as tissue
    assert abs(contrast_hu(acute, next_to_bone, SPACING, 2.0)) < 2.0


def test_too_small_a_mask_falls_back_to_the_acute_band_and_says_its_contrast():
    image, bleed = _slice_with(70.0)
    tiny = np.zeros_like(bleed)
    tiny[20:22, 100:103] = True  # a 6-pixel dark spot in brain
    image[tiny] = 15.0
    appearance = learn_appearance(image, tiny, SPACING, AppearanceConfig(min_pixels=20))
    assert appearance.band == ACUTE_APPEARANCE.band
    assert appearance.contrast_hu < -5.0
