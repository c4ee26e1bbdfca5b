"""The interface every inference engine implements."""

from typing import Any, Optional, Protocol, Tuple

import numpy as np


class InferenceEngine(Protocol):
    """``encode``: (1, 3, S, S) float32 image in [0, 1] -> the (1, 256, 64, 64) embedding, in the
    engine's own form (a NumPy array on the CPU engines, a tensor where the model lives for PyTorch),
    which only ``decode`` reads.
    ``decode``: embedding + prompts as float32 arrays in model-input coordinates (clicks: (1, N, 2)
    coordinates and (1, N) labels; box: (1, 4); dense prompt: (1, 1, L, L)) -> (low-res logits
    (1, 1, L, L), predicted IoU (1, 1)) as float32 arrays."""

    name: str
    precision: str  # "fp32", "bf16" or "fp16": what reports say ran
    device_type: str  # "cpu", "cuda" or "mps": where it runs

    def encode(self, image01: np.ndarray) -> Any:
        ...

    def decode(self, embedding: Any, points: Optional[Tuple[np.ndarray, np.ndarray]] = None,
               boxes: Optional[np.ndarray] = None, mask_input: Optional[np.ndarray] = None,
               multimask_output: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        ...
