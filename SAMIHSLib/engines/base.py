"""The interface every inference engine implements."""

from typing import Optional, Protocol, Tuple

import torch


class InferenceEngine(Protocol):
    """``encode``: (1, 3, S, S) image in [0, 1] -> (1, 256, 64, 64) embedding.
    ``decode``: embedding + prompts in model-input coordinates -> (low-res logits, IoU)."""

    name: str
    precision: str  # "fp32" or "bf16": what reports say ran
    device: torch.device

    def encode(self, image01: torch.Tensor) -> torch.Tensor:
        ...

    def decode(self, embedding: torch.Tensor, points: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
               boxes: Optional[torch.Tensor] = None, mask_input: Optional[torch.Tensor] = None,
               multimask_output: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        ...
