"""Shared timing helpers of the benchmarks."""

import statistics
import time
from typing import Callable, Tuple


def median_ms(function: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls, in ms (one decimal)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000.0)
    return round(statistics.median(times), 1)


def interleaved_medians_ms(first: Callable[[], object], second: Callable[[], object],
                           rounds: int) -> Tuple[float, float]:
    """Median ms of each of two functions called alternately ``rounds`` times: both see the same
    load on a shared machine (only for runtimes whose thread pools do not fight each other)."""
    times = ([], [])
    for _ in range(rounds):
        for function, spent in zip((first, second), times):
            start = time.perf_counter()
            function()
            spent.append((time.perf_counter() - start) * 1000.0)
    return round(statistics.median(times[0]), 1), round(statistics.median(times[1]), 1)
