"""Process-level CPU tuning for inference, for programs that own their process (the CLI, the web
app, training, benchmarks, Ray workers: :func:`tune_process_for_inference`). The library never
applies it by itself: inside Slicer the process, its allocator and its environment are Slicer's.

Measured here (2 cores, torch 2.13): LiteMedSAM's encoder spends about half its time in page
faults because glibc returns its 64 MiB stage-0 buffers to the OS after every call and
faults them in again on the next. Raising glibc's mmap and trim thresholds keeps them in the
heap: encoder 1,400 -> 750 ms per slice. Worker threads get their own malloc arenas, whose
heaps cannot hold such buffers, so they page-fault again (1.5 s per slice on the background
encoder thread); one arena for all threads fixes that. The cost is that up to the peak working
set stays resident between calls.

PyTorch's OpenMP workers (GNU libgomp) spin 300,000 times after each parallel region before they
sleep: milliseconds on this CPU, during which, on 2 cores, they take the CPU from the ONNX Runtime
or OpenVINO call that follows a torch operation (resizing the slice, upsampling the mask). A short
spin took a click on an encoded slice from 44 to 24 ms (ONNX Runtime) and 24 to 19 ms (OpenVINO
bf16) without slowing eager PyTorch; waiting passively instead slowed PyTorch's click by 25 %.
"""

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
KEEP_BYTES = 1 << 30
OPENMP_SPIN_COUNT = "10000"
_tuned = False


def keep_large_buffers_in_heap() -> bool:
    """Apply the glibc thresholds once per process; True if they are in effect (Linux/glibc)."""
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    _tuned = all(bool(mallopt(option, value)) for option, value in
                 ((M_MMAP_THRESHOLD, KEEP_BYTES), (M_TRIM_THRESHOLD, KEEP_BYTES), (M_ARENA_MAX, 1)))
    return _tuned


def shorten_openmp_spin() -> bool:
    """Set ``GOMP_SPINCOUNT`` unless the user did; libgomp reads it when torch first loads it, so
    this only works before ``import torch``. True if set."""
    if "torch" in sys.modules or "GOMP_SPINCOUNT" in os.environ:
        return False
    os.environ["GOMP_SPINCOUNT"] = OPENMP_SPIN_COUNT
    return True


def tune_process_for_inference() -> None:
    """Both settings, for a program that owns its process; call it first, before torch loads."""
    shorten_openmp_spin()
    keep_large_buffers_in_heap()
