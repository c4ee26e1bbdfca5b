"""Inference engines: one interface (``encode`` / ``decode`` as on SegmentAnythingModel),
interchangeable backends. PyTorch for GPU, training and reference; ONNX Runtime and OpenVINO as
fast CPU backends that also work inside Slicer (wheels for Python 3.9-3.12, no compiler): exact
fp32, and OpenVINO in bf16 on CPUs that have native bf16."""

from .base import EngineError, InferenceEngine
from .torch_engine import TorchEngine

ENGINE_CHOICES = ("torch", "onnxruntime", "openvino", "openvino-bf16")


def make_engine(model, name: str = "torch", cache_dir=None, threads=None) -> InferenceEngine:
    """An engine of ``name`` for ``model`` (exports and verifies ONNX graphs on first use);
    ``threads``: CPU threads of the ONNX Runtime / OpenVINO engines (default: torch's, i.e. the
    physical cores)."""
    if name == "torch":
        return TorchEngine(model)
    if name == "onnxruntime":
        from .onnx_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine.from_model(model, cache_dir=cache_dir, threads=threads)
    if name in ("openvino", "openvino-bf16"):
        from .openvino_engine import OpenVinoEngine

        return OpenVinoEngine.from_model(model, cache_dir=cache_dir, threads=threads,
                                         precision="bf16" if name.endswith("bf16") else "f32")
    raise ValueError(f"Unknown engine {name!r}; use one of {ENGINE_CHOICES}.")


__all__ = ["ENGINE_CHOICES", "EngineError", "InferenceEngine", "TorchEngine", "make_engine"]
