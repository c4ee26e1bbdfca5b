"""Process-level CPU tuning: short OpenMP spinning (set before torch loads libgomp, never over
the user's own setting) and glibc keeping large buffers in the heap."""

import os
import subprocess
import sys

import pytest

PROBE = "import os, {first}, {second}; print(os.environ.get('GOMP_SPINCOUNT', 'unset'))"


def _spin_count_seen(first: str, second: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    environment.update(env)
    command = [sys.executable, "-c", PROBE.format(first=first, second=second)]
    return subprocess.run(command, env=environment, capture_output=True, text=True, check=True).stdout.strip()


def test_importing_samihslib_first_shortens_openmp_spin():
    from SAMIHSLib.cpu_tuning import OPENMP_SPIN_COUNT

    assert _spin_count_seen("SAMIHSLib", "torch") == OPENMP_SPIN_COUNT


def test_the_users_spin_count_is_kept():
    assert _spin_count_seen("SAMIHSLib", "torch", GOMP_SPINCOUNT="123") == "123"


def test_nothing_is_set_once_torch_is_loaded():
    """libgomp has read its environment by then: setting it would only mislead."""
    assert _spin_count_seen("torch", "SAMIHSLib") == "unset"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_large_buffers_stay_in_the_heap_on_glibc():
    from SAMIHSLib.cpu_tuning import keep_large_buffers_in_heap

    assert keep_large_buffers_in_heap()
    assert keep_large_buffers_in_heap()  # idempotent
