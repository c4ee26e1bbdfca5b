"""Every coordinate change between an original 2D slice and the model's square input.

The slice (rows x columns) is scaled so that its longest side equals the model's input size,
then zero-padded at the bottom/right, as in segment-anything's ``ResizeLongestSide``. Points
are (x = column, y = row) in pixels. Nothing else in SAMIHSLib rescales points or masks.
"""

from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SliceToModelTransform:
    """Geometry of one slice shape -> model input of ``input_size`` x ``input_size``."""

    original_hw: Tuple[int, int]
    input_size: int

    @property
    def scale(self) -> float:
        return self.input_size / float(max(self.original_hw))

    @property
    def resized_hw(self) -> Tuple[int, int]:
        h, w = self.original_hw
        return int(round(h * self.scale)), int(round(w * self.scale))

    def image_to_model(self, image01: np.ndarray) -> torch.Tensor:
        """(H, W) intensities in [0, 1], repeated as the three channels, or (3, H, W) channels of their
        own -> (1, 3, S, S) float tensor, resized and zero-padded."""
        image = np.ascontiguousarray(image01, dtype=np.float32)
        if image.ndim != 2 and not (image.ndim == 3 and image.shape[0] == 3):
            raise ValueError(f"Expected an image of (rows, columns) or (3, rows, columns), got {image.shape}.")
        tensor = torch.from_numpy(image).reshape(1, -1, *image.shape[-2:])
        # Bilinear at exactly 2x down equals a 2x2 box average, matching LiteMedSAM's training resize.
        resized = F.interpolate(tensor, size=self.resized_hw, mode="bilinear", align_corners=False)
        pad_h = self.input_size - resized.shape[-2]
        pad_w = self.input_size - resized.shape[-1]
        padded = F.pad(resized, (0, pad_w, 0, pad_h))
        return padded.expand(1, 3, self.input_size, self.input_size).contiguous()

    def points_to_model(self, points_xy: np.ndarray) -> np.ndarray:
        """(N, 2) pixel (column, row) coordinates -> model-input coordinates."""
        return np.asarray(points_xy, dtype=np.float32).reshape(-1, 2) * self.scale

    def box_to_model(self, box_xyxy: np.ndarray) -> np.ndarray:
        """(x0, y0, x1, y1) in pixels -> model-input coordinates, shape (4,)."""
        return self.points_to_model(np.asarray(box_xyxy, dtype=np.float32).reshape(2, 2)).reshape(4)

    def mask_to_model_lowres(self, mask: np.ndarray, lowres_size: int) -> torch.Tensor:
        """A binary or logit (H, W) mask -> (1, 1, L, L) tensor on the decoder's low-res grid."""
        tensor = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
        factor = lowres_size / float(self.input_size)
        h, w = self.resized_hw
        size = (max(1, int(round(h * factor))), max(1, int(round(w * factor))))
        resized = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)
        return F.pad(resized, (0, lowres_size - size[1], 0, lowres_size - size[0]))

    def lowres_logits_to_original(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, C, L, L) decoder logits -> (B, C, H, W) logits at the slice's native resolution."""
        upscaled = logits.float()
        if upscaled.shape[-1] != self.input_size:  # LiteMedSAM's decoder already answers at input size
            upscaled = F.interpolate(upscaled, size=(self.input_size, self.input_size), mode="bilinear",
                                     align_corners=False)
        h, w = self.resized_hw
        return F.interpolate(upscaled[..., :h, :w], size=self.original_hw, mode="bilinear", align_corners=False)
