"""One volume, many clicks: each positive click clicked and propagated on its own session, their
masks joined. The batch, the Slicer logic and the web app share it. The 50-90 HU band's seeds as
clicks (``auto_seed_clicks``) are the automatic batch's floor in its evaluation; the automatic batch
itself uses the bleed detector (:mod:`SAMIHSLib.volume.automatic`)."""

import threading
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from SAMIHSLib.interaction.auto_seeds import find_seed_clicks
from SAMIHSLib.interaction.predictor import SAMIHSPredictor
from SAMIHSLib.volume.click_session import click_session
from SAMIHSLib.io.validation import InputError
from SAMIHSLib.io.volume_io import AxialStack
from SAMIHSLib.progress import ProgressCallback

Click = Tuple[int, float, float]  # (slice k, column x, row y)


@dataclass
class VolumePrompts:
    """Clicks for one volume, as (slice k, column i, row j) voxel positions of the volume."""

    positive: List[Click] = field(default_factory=list)
    negative: List[Click] = field(default_factory=list)


def auto_seed_clicks(stack: AxialStack) -> List[Click]:
    """The band's seeds (hyperdense regions inside the skull) as volume voxel positions."""
    return [stack.click_to_volume(*seed) for seed in find_seed_clicks(stack.array_hu, stack.spacing_zyx)]


def segment_volume(predictor: SAMIHSPredictor, stack: AxialStack, prompts: VolumePrompts,
                   cancel: Optional[threading.Event] = None,
                   progress: Optional[ProgressCallback] = None) -> np.ndarray:
    """The joined mask (stack order: axial slice, row, column) of every positive click, each
    clicked and propagated on its own; ``prompts`` are volume voxel positions. ``progress(done,
    total, message)`` is called before each seed and for every propagated slice."""
    if not prompts.positive:
        raise InputError("No hyperdense region found to seed from (no suspected hemorrhage).")
    predictor.set_volume(stack.array_hu, stack.spacing_zyx)
    joined = np.zeros(stack.array_hu.shape, dtype=bool)
    negatives_stack = [stack.click_to_stack(*click) for click in prompts.negative]
    seeds = len(prompts.positive)
    for seed, click in enumerate(prompts.positive):
        k, x, y = stack.click_to_stack(*click)
        if progress is not None:
            progress(seed, seeds, f"seed {seed + 1} of {seeds} (slice {k})")
        session = click_session(predictor)
        negatives = [(nx, ny) for nk, nx, ny in negatives_stack if nk == k]
        slice_progress = None if progress is None else (
            lambda done, total, message, seed=seed: progress(seed, seeds, f"seed {seed + 1} of {seeds}: {message}"))
        session.click(k, [(x, y)], negatives, cancel=cancel, progress=slice_progress)
        joined |= session.mask
    return joined
