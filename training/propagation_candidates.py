"""Named propagation settings the 3D evaluation chooses among on training folds
(``python -m training volumeeval --method lite-base:propagation=NAME,NAME``; the detector's
regions joined to the answer: ``lite-base:detector=NAME,NAME``)."""

from dataclasses import replace
from typing import Dict, Optional

from SAMIHSLib.interaction.appearance import AppearanceConfig
from SAMIHSLib.interaction.detected_regions import DetectorJoin
from SAMIHSLib.interaction.propagation import STOP_RULES, PropagationConfig

# The learned propagation: the clicked bleed's own band (joined with the acute band), the seeded
# region kept within 4 mm of the previous mask and dropped when it floods, and a contrast rule.
# (Fallback prompts on empty slices only, as when it was measured.)
LEARNED = PropagationConfig(learn_appearance=True, region_reach_mm=4.0, drop_flooding_region=True,
                            min_contrast_hu=2.0, min_contrast_fraction=0.1, fallback_rules=("empty",))

PROPAGATION_CANDIDATES: Dict[str, PropagationConfig] = {
    # The acute bands, fallback prompts on empty, unsure and swollen answers (chosen on the training folds).
    "as shipped": PropagationConfig(),
    "learned band": LEARNED,
    # For click-trained models: a slice they are dropped on is asked of lite-base, their second opinion
    # (twenty-third session's candidate: on fold 0's volumes it kept 090's thin epidural going).
    "second opinion on dropped slices": PropagationConfig(second_opinion_rules=STOP_RULES),
    # Measured and not kept (training/results/volumes_5fold_fallbacks: named "as shipped" there):
    "fallbacks on empty slices only": PropagationConfig(fallback_rules=("empty",)),
    # The default until the twenty-first session: a click on a missed slice may answer any size.
    "missed-slice clicks of any size": PropagationConfig(hold_missed_slice_clicks_to_growth=False),
    # Measured and not kept (training/results/volumes_5fold_candidates, volumes_5fold_lite_base):
    "contrast >= 2 HU only": replace(LEARNED, min_contrast_fraction=0.0),
    "flooding region kept": replace(LEARNED, min_contrast_fraction=0.0, drop_flooding_region=False),
    "contrast >= a quarter of the seed's": replace(LEARNED, min_contrast_fraction=0.25),
    "no contrast rule": replace(LEARNED, min_contrast_hu=None),
    "unbounded region": replace(LEARNED, region_reach_mm=None),
    "own band only (no acute band)": replace(LEARNED, appearance=AppearanceConfig(include_acute_band=False)),
}

# Thirty-second session's candidates: the bleed detector's regions that overlap a click's 3D answer
# joined to it (each fold's detector trained without that fold's patients: volumeeval --fold-detectors).
DETECTOR_JOIN_CANDIDATES: Dict[str, Optional[DetectorJoin]] = {
    "as shipped": None,
    **{f"detector's regions joined at pixel > {threshold:g}": DetectorJoin(threshold) for threshold in (0.3, 0.5, 0.7)},
    "detector's regions joined at pixel > 0.5 after positive corrections too": DetectorJoin(0.5, on_positive_corrections=True),
}
