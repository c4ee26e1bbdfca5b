"""Every coordinate change between an original 2D slice and the model's square input.

The slice (rows x columns) is scaled so that its longest side equals the model's input size,
then zero-padded at the bottom/right, as in segment-anything's ``ResizeLongestSide``. Points
are (x = column, y = row) in pixels. Nothing else in SAMIHSLib rescales points or masks.
"""

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from SAMIHSLib.imaging.bilinear import resize_bilinear


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

    def image_to_model(self, image01: np.ndarray) -> np.ndarray:
        """(H, W) intensities in [0, 1], repeated as the three channels, or (3, H, W) channels of their
        own -> (1, 3, S, S) float32 array, resized and zero-padded."""
        image = np.ascontiguousarray(image01, dtype=np.float32)
        if image.ndim != 2 and not (image.ndim == 3 and image.shape[0] == 3):
            raise ValueError(f"Expected an image of (rows, columns) or (3, rows, columns), got {image.shape}.")
        # Bilinear at exactly 2x down equals a 2x2 box average, matching LiteMedSAM's training resize.
        resized = resize_bilinear(image.reshape(1, -1, *image.shape[-2:]), self.resized_hw)
        padded = np.zeros((1, 3, self.input_size, self.input_size), np.float32)
        padded[:, :, :resized.shape[-2], :resized.shape[-1]] = resized  # a grey image fills all three
        return padded

    def points_to_model(self, points_xy: np.ndarray) -> np.ndarray:
        """(N, 2) pixel (column, row) coordinates -> model-input coordinates."""
        return np.asarray(points_xy, dtype=np.float32).reshape(-1, 2) * self.scale

    def box_to_model(self, box_xyxy: np.ndarray) -> np.ndarray:
        """(x0, y0, x1, y1) in pixels -> model-input coordinates, shape (4,)."""
        return self.points_to_model(np.asarray(box_xyxy, dtype=np.float32).reshape(2, 2)).reshape(4)

    def mask_to_model_lowres(self, mask: np.ndarray, lowres_size: int) -> np.ndarray:
        """A binary or logit (H, W) mask -> (1, 1, L, L) float32 array on the decoder's low-res grid."""
        factor = lowres_size / float(self.input_size)
        h, w = self.resized_hw
        size = (max(1, int(round(h * factor))), max(1, int(round(w * factor))))
        resized = resize_bilinear(np.asarray(mask, dtype=np.float32)[None, None], size)
        padded = np.zeros((1, 1, lowres_size, lowres_size), np.float32)
        padded[..., :size[0], :size[1]] = resized
        return padded

    def lowres_logits_to_original(self, logits: np.ndarray) -> np.ndarray:
        """(B, C, L, L) decoder logits -> (B, C, H, W) float32 logits at the slice's native resolution."""
        upscaled = np.asarray(logits, dtype=np.float32)
        if upscaled.shape[-1] != self.input_size:  # LiteMedSAM's decoder already answers at input size
            upscaled = resize_bilinear(upscaled, (self.input_size, self.input_size))
        h, w = self.resized_hw
        return resize_bilinear(upscaled[..., :h, :w], self.original_hw)
