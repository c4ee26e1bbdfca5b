"""Which precision the ``auto`` engine runs a model in on this CPU.

bf16 halves the encoder's time on CPUs with native bf16 (AVX512-BF16 / AMX), but its masks are
not bit-equal to fp32. ``auto`` therefore runs bf16 only for models whose bf16 answers were
compared with fp32 on every row of the 2D and 3D cross-validation tables and stayed within
``BF16_MAX_DICE_DIFFERENCE`` (the comparison: ``python -m training precision``, committed under
``training/results/precision/``); every other model, and every other CPU, runs exact fp32.
"""

import functools
from typing import Dict

# The largest difference in mean Dice, on any row of the tables, that bf16 may make.
BF16_MAX_DICE_DIFFERENCE = 0.005

# weights_identity(model) -> the model and where its comparison is recorded. A test recomputes
# the verdict from the committed records and checks this table against it.
BF16_VALIDATED: Dict[str, str] = {}


def bf16_validated(model) -> bool:
    """Whether ``model``'s (a loaded model's, or a ``ModelSummary``'s) bf16 answers were shown to match
    fp32 on the cross-validation tables."""
    from SAMIHSLib.models.summary import ModelSummary

    if not BF16_VALIDATED:  # hashing the weights (~40 ms) is needed only when some model is listed
        return False
    if isinstance(model, ModelSummary):
        return model.weights_identity in BF16_VALIDATED
    from SAMIHSLib.models.checkpoint import weights_identity

    return weights_identity(model) in BF16_VALIDATED


@functools.lru_cache(maxsize=1)  # the CPU does not change; asking OpenVINO costs a Core (~5 ms)
def cpu_has_native_bf16() -> bool:
    """Whether OpenVINO reports native bf16 on this CPU (False when OpenVINO is not installed)."""
    try:
        import openvino as ov
    except ImportError:
        return False
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def auto_runs_bf16(model) -> bool:
    """Whether ``auto`` picks OpenVINO bf16 for ``model`` here: a CPU with native bf16 and a
    model whose bf16 accuracy was checked on the tables."""
    return cpu_has_native_bf16() and bf16_validated(model)
