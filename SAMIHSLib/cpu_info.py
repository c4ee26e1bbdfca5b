"""What CPU a figure was measured on: model name, cores and the vector/matrix extensions that
decide speed (AVX2, AVX-512, bf16, VNNI, AMX). Recorded with every benchmark and evaluation."""

import os
import platform
import sys
from pathlib import Path
from typing import Dict, List

SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_tile")


def cpu_info() -> Dict[str, object]:
    """{"model", "logical_cores", "flags"} of this machine (flags: the speed-relevant ones present)."""
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    present: List[str] = [flag for flag in SPEED_FLAGS if flag in flags]
    return {"model": model, "logical_cores": os.cpu_count() or 0, "flags": present}


def cpu_description() -> str:
    """One line, e.g. "AMD EPYC, 2 logical cores, avx2 fma"."""
    info = cpu_info()
    flags = " ".join(info["flags"]) or "no AVX2"  # type: ignore[arg-type]
    return f"{info['model']}, {info['logical_cores']} logical cores, {flags}"


def physical_cores() -> int:
    """The threads an engine runs on by default: PyTorch's count where torch is loaded (which honours
    ``torch.set_num_threads`` and ``OMP_NUM_THREADS``), else ``OMP_NUM_THREADS``, else the physical
    cores this process may use (/proc/cpuinfo's distinct cores, at most the CPUs it is allowed)."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        return int(torch.get_num_threads())
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        pass
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cores, physical = set(), ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "physical id":
                physical = value.strip()
            elif key.strip() == "core id":
                cores.add((physical, value.strip()))
    return max(1, min(len(cores) or allowed, allowed))
