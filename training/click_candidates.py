"""Named click-handling settings the evaluations choose among on training folds
(``python -m training clickeval --method CHECKPOINT:click=NAME,NAME``; volumeeval the same)."""

from typing import Dict

from SAMIHSLib.interaction.click_segmentation import ClickSegmentationConfig
from SAMIHSLib.interaction.regions import OwnBandGrowth

CLICK_CANDIDATES: Dict[str, ClickSegmentationConfig] = {
    "as shipped": ClickSegmentationConfig(),
    # For click-trained models (twenty-fourth session's candidate): an answer to a click on acute blood
    # that is mostly not blood is put to lite-base, their second opinion (a fold model drew the brain
    # around a 22-pixel subarachnoid clot where lite-base's click handling kept the clot).
    "second opinion on answers unlike the clicked blood": ClickSegmentationConfig(second_opinion_on_unlike_answers=True),
    # Thirty-first session's candidates: the answer grows into the rim of its own HU that the acute
    # bands cut off (reach mm, margin HU around its middle fifth); first every positive-only answer,
    # corrections included (training/results/volumes_5fold_own_band), then a new bleed's answer only.
    **{f"grown into its own HU band {reach:g} mm {margin:g} HU":
       ClickSegmentationConfig(own_band_growth=OwnBandGrowth(reach, 40.0, margin), own_band_growth_on_corrections=True)
       for reach in (2.0, 4.0) for margin in (5.0, 10.0)},
    **{f"first answer grown into its own HU band {reach:g} mm {margin:g} HU":
       ClickSegmentationConfig(own_band_growth=OwnBandGrowth(reach, 40.0, margin))
       for reach in (2.0, 4.0) for margin in (5.0, 10.0)},
    # Then the grown region as a box the model answers, kept when the model is at least as sure.
    **{f"first answer asked again with its own HU band {reach:g} mm {margin:g} HU":
       ClickSegmentationConfig(own_band_growth=OwnBandGrowth(reach, 40.0, margin, ask_the_model=True))
       for reach in (2.0, 4.0) for margin in (5.0, 10.0)},
}


def click_candidates(names: str) -> Dict[str, ClickSegmentationConfig]:
    """``NAME,NAME`` -> those settings; a clear error for a name not in :data:`CLICK_CANDIDATES`."""
    chosen = names.split(",")
    unknown = [name for name in chosen if name not in CLICK_CANDIDATES]
    if unknown or not names:
        raise ValueError(f"Unknown click setting(s) {unknown or [names]}; use {sorted(CLICK_CANDIDATES)}.")
    return {name: CLICK_CANDIDATES[name] for name in chosen}
