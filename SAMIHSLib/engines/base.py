"""The interface every inference engine implements."""

from typing import Optional, Tuple

import torch

try:
    from typing import Protocol
except ImportError:  # pragma: no cover - Python < 3.8
    Protocol = object  # type: ignore[assignment,misc]




class InferenceEngine(Protocol):
    """``encode``: (1, 3, S, S) image in [0, 1] -> (1, 256, 64, 64) embedding.
    ``decode``: embedding + prompts in model-input coordinates -> (low-res logits, IoU)."""

    name: str

    def encode(self, image01: torch.Tensor) -> torch.Tensor:
        ...

    def decode(self, embedding: torch.Tensor, points: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
               boxes: Optional[torch.Tensor] = None, mask_input: Optional[torch.Tensor] = None,
               multimask_output: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        ...
