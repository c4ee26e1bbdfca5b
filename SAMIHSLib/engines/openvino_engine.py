"""The OpenVINO engine: the cached ONNX graphs compiled for the CPU, in exact fp32 or, where the
CPU has native bf16 (AVX-512 BF16 / AMX), in bf16.

Precision policy: fp32 unless asked; bf16 only on CPUs that report it, and checked against
PyTorch fp32 masks on a synthetic head-CT slice whenever it is built (a model that disagrees is
refused). Its agreement on real CT (>= 0.99 mean Dice of fp32 masks) is asserted by a test on the
shared ct-ich slices.
"""

from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from SAMIHSLib.models.sam import SegmentAnythingModel
from SAMIHSLib.engines.errors import EngineError
from SAMIHSLib.engines.onnx_graphs import (EngineVerificationError, cached_onnx_graphs, decoder_inputs, float32_array,
                          verify_against_torch)

PRECISIONS = ("f32", "bf16")


class PrecisionNotSupportedError(EngineError):
    """The CPU cannot run the requested precision natively."""


def cpu_supports_bf16() -> bool:
    """Whether OpenVINO reports native bf16 on this CPU."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoEngine:
    """Encoder and decoder graphs compiled by OpenVINO for the CPU at ``precision``."""

    def __init__(self, encoder_path: Path, decoder_path: Path, threads: Optional[int] = None,
                 precision: str = "f32") -> None:
        import openvino as ov

        if precision not in PRECISIONS:
            raise ValueError(f"Unknown precision {precision!r}; use one of {PRECISIONS}.")
        if precision == "bf16" and not cpu_supports_bf16():
            raise PrecisionNotSupportedError("This CPU has no native bf16 (AVX-512 BF16 or AMX); use the "
                                             "'openvino' (fp32) or 'onnxruntime' engine.")
        self.name = "openvino" if precision == "f32" else f"openvino-{precision}"
        core = ov.Core()

        settings = {"INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),  # physical cores by default
                    "INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        self._encoder = core.compile_model(core.read_model(str(encoder_path)), "CPU", settings)
        self._decoder = core.compile_model(core.read_model(str(decoder_path)), "CPU", settings)
        # One request each: encoding runs on the background thread, decoding on the caller's.
        self._encode_request = self._encoder.create_infer_request()
        self._decode_request = self._decoder.create_infer_request()
        self._mask_side = int(self._decoder.input("mask_input").get_partial_shape()[-1].get_length())
        self.device = torch.device("cpu")

    @classmethod
    def from_model(cls, model: SegmentAnythingModel, cache_dir: Optional[Path] = None,
                   threads: Optional[int] = None, precision: str = "f32") -> "OpenVinoEngine":
        """Compile the model's cached (or freshly exported) graphs and check them against PyTorch."""
        if precision not in PRECISIONS:  # before any export is written
            raise ValueError(f"Unknown precision {precision!r}; use one of {PRECISIONS}.")
        # fresh exports are checked in exact fp32 before they are cached for every CPU backend
        encoder, decoder = cached_onnx_graphs(
            model, cache_dir, lambda e, d: verify_against_torch(cls(e, d, threads, "f32"), model))
        engine = cls(encoder, decoder, threads, precision)
        try:
            verify_against_torch(engine, model, max_embedding_difference=None if precision != "f32" else 1e-3)
        except EngineVerificationError as error:
            if precision == "f32":
                raise
            raise EngineVerificationError(f"{error} {precision} is not accurate enough for this model; use the "
                                          "'openvino' (fp32) engine.") from error
        return engine

    def encode(self, image01: torch.Tensor) -> torch.Tensor:
        result = self._encode_request.infer({"image": float32_array(image01)})
        return torch.from_numpy(np.array(result[self._encoder.output(0)], dtype=np.float32))

    def decode(self, embedding: torch.Tensor, points: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
               boxes: Optional[torch.Tensor] = None, mask_input: Optional[torch.Tensor] = None,
               multimask_output: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        result = self._decode_request.infer(decoder_inputs(embedding, points, boxes, mask_input, multimask_output,
                                                           self._mask_side))
        return (torch.from_numpy(np.array(result[self._decoder.output(0)])),
                torch.from_numpy(np.array(result[self._decoder.output(1)])))
