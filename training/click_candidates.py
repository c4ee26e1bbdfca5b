"""Named click-handling settings the evaluations choose among on training folds
(``python -m training clickeval --method CHECKPOINT:click=NAME,NAME``; volumeeval the same)."""

from typing import Dict

from SAMIHSLib.interaction.click_segmentation import ClickSegmentationConfig

CLICK_CANDIDATES: Dict[str, ClickSegmentationConfig] = {
    "as shipped": ClickSegmentationConfig(),
    # For click-trained models (twenty-fourth session's candidate): an answer to a click on acute blood
    # that is mostly not blood is put to lite-base, their second opinion (a fold model drew the brain
    # around a 22-pixel subarachnoid clot where lite-base's click handling kept the clot).
    "second opinion on answers unlike the clicked blood": ClickSegmentationConfig(second_opinion_on_unlike_answers=True),
}


def click_candidates(names: str) -> Dict[str, ClickSegmentationConfig]:
    """``NAME,NAME`` -> those settings; a clear error for a name not in :data:`CLICK_CANDIDATES`."""
    chosen = names.split(",")
    unknown = [name for name in chosen if name not in CLICK_CANDIDATES]
    if unknown or not names:
        raise ValueError(f"Unknown click setting(s) {unknown or [names]}; use {sorted(CLICK_CANDIDATES)}.")
    return {name: CLICK_CANDIDATES[name] for name in chosen}
