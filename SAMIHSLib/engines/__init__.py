"""Inference engines: one interface (``encode`` / ``decode`` as on SegmentAnythingModel),
interchangeable backends. PyTorch for GPU, training and reference; ONNX Runtime and OpenVINO as
fast CPU backends that also work inside Slicer (wheels for Python 3.9-3.12, no compiler): exact
fp32, and OpenVINO in bf16 on CPUs that have native bf16.

``ENGINES`` is the one registry of names, labels and what each needs; the CLI, the Slicer module's
UI and the web app all read it. Importing this package does not import torch (``samihs --help``
stays fast); the backends are imported when an engine is made.
"""

import importlib.util
from dataclasses import dataclass
from typing import Dict, List, Tuple

from SAMIHSLib.engines.errors import EngineError


@dataclass(frozen=True)
class EngineSpec:
    """One engine: its label in menus, the Python module it needs, and whether it is exact fp32."""

    label: str
    needs_module: str
    exact: bool
    # Lower is faster on a CPU (measured: bench/bench_engines.py); "auto" picks the fastest exact one.
    cpu_rank: int


ENGINES: Dict[str, EngineSpec] = {
    "torch": EngineSpec("PyTorch (exact; GPU when present)", "torch", True, 3),
    "onnxruntime": EngineSpec("ONNX Runtime (exact fp32, faster on CPU)", "onnxruntime", True, 2),
    "openvino": EngineSpec("OpenVINO (exact fp32, fastest exact on CPU)", "openvino", True, 1),
    "openvino-bf16": EngineSpec("OpenVINO bf16 (CPUs with native bf16; checked against fp32)", "openvino", False, 0),
}
ENGINE_CHOICES: Tuple[str, ...] = tuple(ENGINES)
AUTO_ENGINE = "auto"


def installed_engines() -> List[str]:
    """Engine names whose Python package is installed here (bf16 may still be refused by the CPU)."""
    return [name for name, spec in ENGINES.items() if importlib.util.find_spec(spec.needs_module) is not None]


def resolve_engine_name(name: str, device: str = "cpu", model=None) -> str:
    """``auto`` -> PyTorch on a GPU; on a CPU, OpenVINO bf16 where the CPU has native bf16 and
    ``model``'s bf16 accuracy was checked (:mod:`SAMIHSLib.engines.precision`), else the fastest
    exact engine installed. Other names are checked."""
    if name == AUTO_ENGINE:
        if device not in ("cpu", "auto"):
            return "torch"
        installed = installed_engines()
        if model is not None and "openvino-bf16" in installed:
            from SAMIHSLib.engines.precision import auto_runs_bf16

            if auto_runs_bf16(model):
                return "openvino-bf16"
        exact = [n for n in installed if ENGINES[n].exact]
        return min(exact, key=lambda n: ENGINES[n].cpu_rank)
    if name not in ENGINES:
        raise ValueError(f"Unknown engine {name!r}; use one of {(AUTO_ENGINE,) + ENGINE_CHOICES}.")
    return name


def make_engine(model, name: str = "torch", cache_dir=None, threads=None):
    """An engine of ``name`` for ``model`` (exports and verifies ONNX graphs on first use);
    ``threads``: CPU threads of the ONNX Runtime / OpenVINO engines (default:
    ``SAMIHSLib.cpu_info.physical_cores``). ``auto``: see :func:`resolve_engine_name`."""
    name = resolve_engine_name(name, model.device.type if hasattr(model, "device") else "cpu", model)
    if name == "torch":
        from SAMIHSLib.engines.torch_engine import TorchEngine

        return TorchEngine(model)
    if name == "onnxruntime":
        from SAMIHSLib.engines.onnx_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine.from_model(model, cache_dir=cache_dir, threads=threads)
    from SAMIHSLib.engines.openvino_engine import OpenVinoEngine

    return OpenVinoEngine.from_model(model, cache_dir=cache_dir, threads=threads,
                                     precision="bf16" if name.endswith("bf16") else "f32")


def __getattr__(name: str):
    """Lazy access to the torch-backed classes (PEP 562), so importing the registry stays light."""
    if name == "TorchEngine":
        from SAMIHSLib.engines.torch_engine import TorchEngine

        return TorchEngine
    if name == "InferenceEngine":
        from SAMIHSLib.engines.base import InferenceEngine

        return InferenceEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AUTO_ENGINE", "ENGINES", "ENGINE_CHOICES", "EngineError", "EngineSpec", "installed_engines",
           "make_engine", "resolve_engine_name"]
