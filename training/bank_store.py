"""The staged training's embedding bank on disk: recipes that differ only in how they train (loss,
steps, learning rate, prompts) reuse one encoding of their augmented copies instead of spending
another 20 minutes on 2 cores rebuilding it.

A stored bank is found by a key over everything that makes it: the recipe's fields except those only
the training loop reads (:data:`TRAINING_LOOP_FIELDS`), the slices (pixels, masks, subtypes,
patients), the folds (which decide the pasted bleeds' donors), the source of ``training`` and
``SAMIHSLib`` (any code change makes a new key), torch's version and the CPU. A field not named there
is part of the key, so a new recipe option can only cause a rebuild, never a stale bank.
"""

import hashlib
import json
from pathlib import Path
from typing import List, Sequence

import numpy as np
import torch

from SAMIHSLib.cpu_info import cpu_description
from SAMIHSLib.imaging.transforms import SliceToModelTransform
from SAMIHSLib.io.atomic_write import atomic_output

from .batches import EmbeddingBank, PreparedSlice, TrainingSlice
from .training_config import TrainingConfig

# Read by the training loop only (prompts, loss, optimiser, schedule, names), never while the bank is
# built (training/batches.py: BatchMaker.image_and_target, EmbeddingBank).
TRAINING_LOOP_FIELDS = frozenset({
    "name", "output_dir", "boundary_loss", "bce_weight", "boundary_weight_floor", "learning_rate", "batch_size",
    "epochs", "lr_step_epochs", "lr_gamma", "max_steps", "max_minutes", "corrective_clicks",
    "deepest_click_probability", "box_probability", "region_box_probability", "extra_click_probability",
    "clicked_bleed_target", "subtype_balance"})
_SOURCE_ROOTS = ("training", "SAMIHSLib")


def _source_digest() -> str:
    """One digest of every Python file of the packages that build a bank."""
    digest = hashlib.sha1()
    project = Path(__file__).resolve().parent.parent
    for root in _SOURCE_ROOTS:
        for path in sorted((project / root).rglob("*.py")):
            digest.update(str(path.relative_to(project)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def bank_path(folder: Path, config: TrainingConfig, slices: Sequence[TrainingSlice], folds: List[List[str]]) -> Path:
    """Where in ``folder`` the bank that ``config`` builds from ``slices`` with these ``folds`` is stored."""
    return Path(folder) / f"{bank_key(config, slices, folds)}.pt"


def bank_key(config: TrainingConfig, slices: Sequence[TrainingSlice], folds: List[List[str]]) -> str:
    """The name of the bank ``config`` builds from ``slices`` with these ``folds`` (hex digest)."""
    recipe = {key: value for key, value in config.to_dict().items() if key not in TRAINING_LOOP_FIELDS}
    digest = hashlib.sha1(json.dumps({"recipe": recipe, "folds": folds, "torch": torch.__version__,
                                      "cpu": cpu_description(), "source": _source_digest()},
                                     sort_keys=True, default=str).encode())
    for item in slices:
        described = f"{item.patient}|{item.pixel_mm!r}|{item.flags}|{item.image_hu.shape}|{item.image_hu.dtype}"
        digest.update(described.encode())
        # the neighbouring slices are part of the input only where the recipe feeds them
        neighbours = item.neighbours_hu if config.neighbour_channels and item.neighbours_hu is not None else ()
        for array in (item.image_hu, item.mask, item.subtypes, *neighbours):
            if array is not None:
                digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def save_bank(bank: EmbeddingBank, path: Path) -> Path:
    """Write ``bank`` (its embeddings and prepared slices, tensors only) to ``path`` atomically."""
    items = [[{"embedding": embedding, "model_image": prepared.model_image,
               "mask": torch.from_numpy(np.ascontiguousarray(prepared.mask)),
               "image_hu": torch.from_numpy(np.ascontiguousarray(prepared.image_hu)),
               "original_hw": list(prepared.transform.original_hw), "input_size": prepared.transform.input_size,
               "pixel_mm": float(prepared.pixel_mm)} for embedding, prepared in versions]
             for versions in bank.items]
    with atomic_output(path) as temporary:
        torch.save({"stages": bank.stages, "items": items}, temporary)
    return Path(path)


def load_bank(path: Path, slices: Sequence[TrainingSlice]) -> EmbeddingBank:
    """The bank ``save_bank`` wrote, for the same ``slices`` (in the same order)."""
    stored = torch.load(path, map_location="cpu", weights_only=True)
    if len(stored["items"]) != len(slices):
        raise ValueError(f"The stored embedding bank {path} holds {len(stored['items'])} slices, not {len(slices)}.")
    items = [[(entry["embedding"], PreparedSlice(
        entry["model_image"], entry["mask"].numpy(), SliceToModelTransform(tuple(entry["original_hw"]),
                                                                           int(entry["input_size"])),
        entry["image_hu"].numpy(), entry["pixel_mm"])) for entry in versions] for versions in stored["items"]]
    return EmbeddingBank.of_items(slices, items, int(stored["stages"]))
