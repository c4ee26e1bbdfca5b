"""The PyTorch engine: the model itself (GPU, training, and the reference for the others). It keeps
its embeddings where the model runs and hands back NumPy answers, as the other engines do."""

from typing import Optional, Tuple

import numpy as np
import torch

from SAMIHSLib.models.sam import SegmentAnythingModel


def gpu_dtype() -> torch.dtype:
    """The reduced precision autocast runs on a CUDA GPU: bf16 where the GPU has it, else fp16."""
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class TorchEngine:
    name = "torch"

    def __init__(self, model: SegmentAnythingModel) -> None:
        self.model = model.eval()

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def device_type(self) -> str:
        return self.model.device.type

    @property
    def precision(self) -> str:
        """fp32, or on a CUDA GPU the autocast precision (bf16 or fp16)."""
        if self.device_type == "cuda":
            return "bf16" if gpu_dtype() == torch.bfloat16 else "fp16"
        return "fp32"

    def _autocast(self):
        if self.device_type == "cuda":
            return torch.autocast("cuda", dtype=gpu_dtype())
        return torch.autocast(self.device_type, enabled=False)

    def _tensor(self, array: Optional[np.ndarray]) -> Optional[torch.Tensor]:
        return None if array is None else torch.from_numpy(np.asarray(array)).to(self.device)

    def encode(self, image01: np.ndarray) -> torch.Tensor:
        with torch.inference_mode(), self._autocast():
            return self.model.encode(self._tensor(np.ascontiguousarray(image01, np.float32))).float()

    def decode(self, embedding: torch.Tensor, points: Optional[Tuple[np.ndarray, np.ndarray]] = None,
               boxes: Optional[np.ndarray] = None, mask_input: Optional[np.ndarray] = None,
               multimask_output: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        prompt_points = None if points is None else (self._tensor(points[0]), self._tensor(points[1]))
        with torch.inference_mode(), self._autocast():
            lowres, iou = self.model.decode(embedding.to(self.device), prompt_points, self._tensor(boxes),
                                            self._tensor(mask_input), multimask_output)
        return lowres.float().cpu().numpy(), iou.float().cpu().numpy()
