"""Shared timing helper of the benchmarks."""

import statistics
import time
from typing import Callable


def median_ms(function: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls, in ms (one decimal)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000.0)
    return round(statistics.median(times), 1)
