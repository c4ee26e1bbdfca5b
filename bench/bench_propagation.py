"""One click -> 3D on a 32-slice 512x512 phantom (0.45 x 0.45 x 5 mm), on CPU.

Measures (a) 3D Dice of each propagation prompt mode on three bleed shapes, (b) seconds for a
one-click propagation from nothing encoded and the share spent in the image encoder, and
(c) seconds once a background encoder has encoded every slice.
Writes bench/results/propagation.json for LiteMedSAM as released (the default), or
propagation_<model>.json for another model.  Run: .venv/bin/python bench/bench_propagation.py [lite]
"""

import json
import sys
import time
from pathlib import Path

from SAMIHSLib.cpu_tuning import tune_process_for_inference  # noqa: E402

tune_process_for_inference()  # this program owns its process: before torch loads (cpu_tuning)
import numpy as np

from SAMIHSLib.cpu_info import cpu_description
from SAMIHSLib.interaction.background_encoder import BackgroundEncoder
from SAMIHSLib.metrics import dice
from SAMIHSLib.models import load_model
from SAMIHSLib.phantom import BleedSpec, make_head_phantom
from SAMIHSLib.interaction.predictor import SAMIHSPredictor, SliceEmbeddingCache
from SAMIHSLib.interaction.propagation import PROMPT_MODES, PropagationConfig
from SAMIHSLib.interaction.regions import deepest_point, slice_with_most  # noqa: E402
from SAMIHSLib.interaction.session import HemorrhageSession
from SAMIHSLib.io.atomic_write import write_text_atomic

REPO = Path(__file__).resolve().parents[1]
BLEEDS = (BleedSpec("intraparenchymal", (24.0, -12.0, 2.0), (13.0, 10.0, 16.0), 66.0),
          BleedSpec("epidural", (-50.0, 30.0, 5.0), (22.0, 8.0, 18.0), 70.0),
          BleedSpec("subdural", (-40.0, -60.0, 0.0), (40.0, 6.0, 25.0), 62.0))


def _click(phantom, bleed):
    truth = phantom.bleed_mask(bleed)
    k = slice_with_most(truth)
    return k, deepest_point(truth[k])


class EncoderTimer:
    def __init__(self, model):
        self.seconds, self._start = 0.0, 0.0
        model.image_encoder.register_forward_pre_hook(lambda *_: setattr(self, "_start", time.perf_counter()))
        model.image_encoder.register_forward_hook(
            lambda *_: setattr(self, "seconds", self.seconds + time.perf_counter() - self._start))


def main(model_spec: str = "lite-base") -> dict:
    phantom = make_head_phantom(shape=(32, 512, 512), spacing_zyx=(5.0, 0.45, 0.45), bleeds=BLEEDS)
    model = load_model(model_spec, device="cpu")
    timer = EncoderTimer(model)
    shared = SAMIHSPredictor(model, SliceEmbeddingCache(max_bytes=2 << 30))
    shared.set_volume(phantom.volume_hu, phantom.spacing_zyx)
    modes = {}
    for mode in PROMPT_MODES:
        scores = {}
        for bleed, spec in enumerate(BLEEDS):
            session = HemorrhageSession(shared, propagation_config=PropagationConfig(prompt_mode=mode))
            k, click = _click(phantom, bleed)
            session.click(k, [click])
            scores[spec.kind] = round(dice(session.mask, phantom.bleed_mask(bleed)), 4)
        scores["mean"] = round(float(np.mean(list(scores.values()))), 4)
        modes[mode] = scores
        print(mode, scores, flush=True)

    k, click = _click(phantom, 0)
    cold = SAMIHSPredictor(model, SliceEmbeddingCache(max_bytes=2 << 30))
    cold.set_volume(phantom.volume_hu, phantom.spacing_zyx)
    timer.seconds = 0.0
    start = time.perf_counter()
    HemorrhageSession(cold).click(k, [click])
    cold_seconds = time.perf_counter() - start
    encoder_share = timer.seconds / cold_seconds
    cold_encoded = cold.encoder_calls

    warm = SAMIHSPredictor(model, SliceEmbeddingCache(max_bytes=2 << 30))
    warm.set_volume(phantom.volume_hu, phantom.spacing_zyx)
    encoder = BackgroundEncoder(warm)
    start = time.perf_counter()
    encoder.focus(k)
    encoder.wait_idle()
    background_seconds = time.perf_counter() - start
    encoder.stop()
    start = time.perf_counter()
    HemorrhageSession(warm).click(k, [click])
    warm_seconds = time.perf_counter() - start

    result = {
        "model": model_spec, "volume": "phantom 32 x 512 x 512, 0.45 x 0.45 x 5 mm", "device": "cpu",
        "cpu": cpu_description(), "engine": "torch",
        "dice_by_prompt_mode": modes,
        "one_click_3d_seconds_nothing_encoded": round(cold_seconds, 2),
        "slices_encoded_for_that_click": cold_encoded,
        "encoder_share_of_that_time": round(encoder_share, 3),
        "background_encoding_all_32_slices_seconds": round(background_seconds, 2),
        "one_click_3d_seconds_all_encoded": round(warm_seconds, 2),
    }
    name = "propagation.json" if model_spec == "lite-base" else f"propagation_{Path(model_spec).stem}.json"
    write_text_atomic(REPO / "bench" / "results" / name, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(0 if main(*sys.argv[1:]) else 1)
