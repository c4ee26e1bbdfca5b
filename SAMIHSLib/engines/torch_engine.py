"""The PyTorch engine: the model itself (GPU, training, and the reference for the others)."""

from typing import Optional, Tuple

import torch

from SAMIHSLib.models.sam import SegmentAnythingModel


class TorchEngine:
    name = "torch"
    precision = "fp32"  # the predictor adds autocast on a GPU (SAMIHSPredictor.precision)

    def __init__(self, model: SegmentAnythingModel) -> None:
        self.model = model.eval()

    @property
    def device(self) -> torch.device:
        return self.model.device

    def encode(self, image01: torch.Tensor) -> torch.Tensor:
        return self.model.encode(image01)

    def decode(self, embedding: torch.Tensor, points: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
               boxes: Optional[torch.Tensor] = None, mask_input: Optional[torch.Tensor] = None,
               multimask_output: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.model.decode(embedding, points, boxes, mask_input, multimask_output)
