"""How closely an engine reproduces PyTorch fp32 on CT slices with known bleeds: the measure of
the precision policy (bf16 is acceptable where masks stay >= 0.99 Dice of fp32 on real CT)."""

from typing import Iterable, List, Sequence, Tuple

import numpy as np

from SAMIHSLib.metrics import dice
from SAMIHSLib.models.sam import SegmentAnythingModel
from SAMIHSLib.interaction.predictor import SAMIHSPredictor
from SAMIHSLib.interaction.prompts import SlicePrompt
from SAMIHSLib.interaction.regions import deepest_point


def mask_agreements(model: SegmentAnythingModel, engine, slices: Iterable[Tuple[np.ndarray, np.ndarray]],
                    spacing_zyx: Sequence[float]) -> List[float]:
    """Dice between ``engine``'s masks and PyTorch's for three prompts per (slice in HU, bleed
    mask): the bleed's tight box, a click at its deepest point, and that click with a negative
    click outside the box."""
    reference, fast = SAMIHSPredictor(model), SAMIHSPredictor(model, engine=engine)
    agreements = []
    for image_hu, bleed in slices:
        for predictor in (reference, fast):
            predictor.set_volume(image_hu, tuple(spacing_zyx))
        rows, cols = np.nonzero(bleed)
        click = deepest_point(bleed)
        outside = (max(0.0, float(cols.min()) - 30), max(0.0, float(rows.min()) - 30))
        for prompt in (SlicePrompt(box=(cols.min(), rows.min(), cols.max(), rows.max())),
                       SlicePrompt([click], []), SlicePrompt([click], [outside])):
            agreements.append(dice(reference.predict(0, prompt).mask, fast.predict(0, prompt).mask))
    return agreements
