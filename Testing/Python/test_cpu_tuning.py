"""Process-level CPU tuning: applied by the programs that own their process (CLI, web app,
training, benchmarks, Ray workers), never by importing or using the library (inside Slicer the
process is Slicer's); short OpenMP spinning only before torch loads, never over the user's own
setting; glibc keeping large buffers in the heap."""

import os
import subprocess
import sys

import pytest

REPORT = "import os; from SAMIHSLib import cpu_tuning; print(os.environ.get('GOMP_SPINCOUNT', 'unset'), cpu_tuning._tuned)"


def _run(code: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    environment.update(env)
    result = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


def test_using_the_library_leaves_the_process_as_it_was():
    """What the Slicer module does: import SAMIHSLib and load the model on the CPU."""
    code = "import SAMIHSLib; from SAMIHSLib.models import load_model; load_model('lite-base', device='cpu'); " + REPORT
    assert _run(code) == "unset False"


def test_the_command_line_tunes_its_own_process():
    code = ("from SAMIHSLib.cli import main; "
            "status = main(['segment', 'no-such-ct.nrrd', '--point', '1,2,3', '-o', 'out.seg.nrrd']); "
            "assert status == 2; " + REPORT)
    from SAMIHSLib.cpu_tuning import OPENMP_SPIN_COUNT

    expected_tuned = sys.platform.startswith("linux")
    assert _run(code) == f"{OPENMP_SPIN_COUNT} {expected_tuned}"


def test_the_users_spin_count_is_kept():
    code = "from SAMIHSLib.cpu_tuning import tune_process_for_inference; tune_process_for_inference(); " + REPORT
    assert _run(code, GOMP_SPINCOUNT="123").split()[0] == "123"


def test_nothing_is_set_once_torch_is_loaded():
    """libgomp has read its environment by then: setting it would only mislead."""
    code = "import torch; from SAMIHSLib.cpu_tuning import shorten_openmp_spin; assert not shorten_openmp_spin(); " + REPORT
    assert _run(code).split()[0] == "unset"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_large_buffers_stay_in_the_heap_on_glibc():
    from SAMIHSLib.cpu_tuning import keep_large_buffers_in_heap

    assert keep_large_buffers_in_heap()
    assert keep_large_buffers_in_heap()  # idempotent
