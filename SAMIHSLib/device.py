"""Choice of compute device: CUDA, then Apple MPS, then CPU."""

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(requested: str = "auto") -> "torch.device":
    """``"auto"`` -> the best available device; an explicit name is checked for availability."""
    import torch

    if requested not in DEVICE_CHOICES and not requested.startswith("cuda:"):
        raise ValueError(f"Unknown device {requested!r}; use one of {DEVICE_CHOICES}.")
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("CUDA was requested but no CUDA GPU is available; use --device cpu or auto.")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("MPS was requested but is not available on this machine; use --device cpu or auto.")
    return torch.device(requested)


def only_cpu_here(requested: str = "auto") -> bool:
    """Whether ``requested`` surely means the CPU, told without importing torch: "cpu", or "auto" on
    Linux with no NVIDIA or AMD GPU device node (elsewhere, or with one, torch is asked)."""
    if requested == "cpu":
        return True
    if requested != "auto" or not sys.platform.startswith("linux"):
        return False
    return not any(Path("/dev").glob("nvidia[0-9]*")) and not Path("/dev/kfd").exists()
