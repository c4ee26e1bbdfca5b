"""Inference engines: one interface (``encode`` / ``decode`` as on SegmentAnythingModel),
interchangeable backends. PyTorch for GPU, training and reference; ONNX Runtime as the fast,
exact CPU backend that also works inside Slicer (wheels for Python 3.9-3.12, no compiler)."""

from .base import InferenceEngine
from .torch_engine import TorchEngine

ENGINE_CHOICES = ("torch", "onnxruntime")


def make_engine(model, name: str = "torch", cache_dir=None, threads=None) -> InferenceEngine:
    """An engine of ``name`` for ``model`` (exports and verifies ONNX graphs on first use)."""
    if name == "torch":
        return TorchEngine(model)
    if name == "onnxruntime":
        from .onnx_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine.from_model(model, cache_dir=cache_dir, threads=threads)
    raise ValueError(f"Unknown engine {name!r}; use one of {ENGINE_CHOICES}.")


__all__ = ["ENGINE_CHOICES", "InferenceEngine", "TorchEngine", "make_engine"]
