"""Bleeds of other ages: blood is hyperdense (50-90 HU) when acute, then falls by about 1-2 HU a
day to isodense (subacute) and hypodense (chronic subdural collections, 0-25 HU). The real slices
are almost all acute, so a model trained on them alone answers a click on a chronic collection with
nothing. This re-draws some bleeds' HU as an older bleed's, keeping their texture."""

from typing import Tuple

import numpy as np
from scipy import ndimage as ndi

AGED_MEAN_HU = (8.0, 45.0)  # chronic to subacute
AGED_TEXTURE_SCALE = (0.4, 1.0)  # older collections are smoother
EDGE_SIGMA_PX = 1.0  # the change fades over the partial-volume edge instead of leaving a bright rim


def age_bleeds(image_hu: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
               probability: float) -> Tuple[np.ndarray, int]:
    """(image with each connected bleed of ``mask`` aged with ``probability``, how many were aged);
    the input is not modified and the mask is unchanged."""
    if probability <= 0.0 or not mask.any():
        return image_hu, 0
    labels, count = ndi.label(mask)
    image, aged = image_hu, 0
    for label in range(1, count + 1):
        if rng.random() >= probability:
            continue
        component = labels == label
        values = image[component]
        median = float(np.median(values))
        target = rng.uniform(*AGED_MEAN_HU)
        scale = rng.uniform(*AGED_TEXTURE_SCALE)
        # The whole collection moves by one offset, faded over its edge (partial volume moves
        # part of the way); its texture shrinks only inside.
        weight = np.clip(ndi.gaussian_filter(component.astype(np.float32), EDGE_SIGMA_PX), 0.0, 1.0)
        weight[component] = 1.0
        image = image + weight * (target - median)
        image[component] = target + (values - median) * scale
        image = image.astype(np.float32)
        aged += 1
    return image, aged
