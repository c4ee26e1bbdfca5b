"""One user's clicks on one axial slice of a CT -> the propagated 3D mask and its report: what
``samihs segment`` does between reading the CT and writing the files."""

import threading
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from SAMIHSLib.interaction.predictor import SAMIHSPredictor
from SAMIHSLib.interaction.prompts import Point
from SAMIHSLib.interaction.regions import PixelBox, box_of_points
from SAMIHSLib.volume.click_session import click_session
from SAMIHSLib.io.report import SegmentationReport
from SAMIHSLib.io.validation import InputError
from SAMIHSLib.io.volume_io import AxialStack, CTVolume
from SAMIHSLib.progress import ProgressCallback
from SAMIHSLib.volume.reports import mask_report

VoxelClick = Tuple[int, float, float]  # (slice k, column i, row j) of the CT volume


@dataclass
class AxialClicks:
    """Checked prompts of one segmentation: positive/negative points and a box on one axial slice
    of ``stack`` (pixel coordinates of that slice)."""

    stack: AxialStack
    slice_index: int
    positive: List[Point]
    negative: List[Point]
    box: Optional[PixelBox]

    @classmethod
    def from_volume(cls, volume: CTVolume, positive: Sequence[VoxelClick], negative: Sequence[VoxelClick] = (),
                    box_corners: Sequence[VoxelClick] = ()) -> "AxialClicks":
        """Volume voxel clicks -> the axial slice they share (sagittal/coronal acquisitions are
        segmented on their axial slices); a clear error when there are none or they span slices."""
        if not positive and not box_corners:
            raise InputError("Give at least one positive click on the bleed, or a box around it.")
        stack = AxialStack.of(volume)
        positive_px = [stack.click_to_stack(*click) for click in positive]
        negative_px = [stack.click_to_stack(*click) for click in negative]
        corners_px = [stack.click_to_stack(*corner) for corner in box_corners]
        slices = {k for k, _, _ in positive_px + negative_px + corners_px}
        if len(slices) != 1:
            raise InputError(f"All clicks of one segmentation must be on one axial slice; got slices {sorted(slices)}.")
        box = box_of_points([(x, y) for _, x, y in corners_px]) if corners_px else None
        return cls(stack, slices.pop(), [(x, y) for _, x, y in positive_px], [(x, y) for _, x, y in negative_px], box)


def segment_clicks(clicks: AxialClicks, predictor: SAMIHSPredictor, volume_name: str, propagate: bool = True,
                   progress: Optional[ProgressCallback] = None,
                   cancel: Optional[threading.Event] = None,
                   join_detector: bool = True) -> Tuple[np.ndarray, SegmentationReport]:
    """Click, then propagate through the volume unless ``propagate`` is False or it has one slice,
    the answer joined with the bleed detector's regions that overlap it unless ``join_detector`` is
    False; returns the mask in the CT volume's voxel order (k, j, i) and its report (seconds of the
    segmentation itself, encoded slices, per-slice IoU and methods, stop reasons, the message)."""
    stack = clicks.stack
    predictor.set_volume(stack.array_hu, stack.spacing_zyx)
    session = click_session(predictor, join_detector)
    started = time.perf_counter()
    outcome = session.click(clicks.slice_index, clicks.positive, clicks.negative, clicks.box,
                            propagate=propagate and stack.array_hu.shape[0] > 1, progress=progress, cancel=cancel)
    report = mask_report(volume_name, session.mask, stack.spacing_zyx, predictor, outcome,
                         clicked_slices=[clicks.slice_index], seconds=time.perf_counter() - started,
                         encoded_slices=predictor.encoder_calls)
    return stack.mask_to_volume(session.mask), report
