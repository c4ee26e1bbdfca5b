"""What CPU a figure was measured on: model name, cores and the vector/matrix extensions that
decide speed (AVX2, AVX-512, bf16, VNNI, AMX). Recorded with every benchmark and evaluation."""

import os
import platform
import sys
from pathlib import Path
from typing import Dict, List, Tuple

SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_tile")


def _cpuinfo_fields() -> List[Tuple[str, str]]:
    """(key, value) of every line of /proc/cpuinfo, stripped (none where there is no such file)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return []
    fields = (line.partition(":") for line in cpuinfo.read_text(errors="replace").splitlines())
    return [(key.strip(), value.strip()) for key, _, value in fields]


def cpu_info() -> Dict[str, object]:
    """{"model", "logical_cores", "flags"} of this machine (flags: the speed-relevant ones present)."""
    model, flags = platform.processor() or platform.machine(), set()
    for key, value in _cpuinfo_fields():
        if key == "model name" and value:
            model = value
        elif key == "flags":
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
    for key, value in _cpuinfo_fields():
        if key == "physical id":
            physical = value
        elif key == "core id":
            cores.add((physical, value))
    return max(1, min(len(cores) or allowed, allowed))
