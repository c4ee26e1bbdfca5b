"""One candidate model per cross-validation fold, trained on the other folds' scans only, so that
``python -m training clickeval --method DIR/fold{fold}/model.samihs.pt`` tests each slice with a
model that never saw its scan.

With a frozen encoder (``cache_embeddings``) the augmented copies of every slice are encoded once
and shared by all folds: a slice's copies carry only bleeds pasted from slices of its own fold, so
a copy is used exactly when its whole content belongs to a training fold. Other recipes (adapters
in every encoder block) train each fold from its own slices.

Synthetic scans (``extra``, e.g. a config's phantoms) belong to no fold: every run trains on them,
and they lend bleeds only to each other.
"""

import dataclasses
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from SAMIHSLib.io.atomic_write import write_text_atomic

from .bank_store import bank_path, load_bank, save_bank
from .datasets import Case
from .distributed import SINGLE_PROCESS, ProcessGroup
from .folds import fold_of_scan
from .batches import (BatchMaker, EmbeddingBank, TrainingSlice, build_trainable_model, frozen_stages,
                      seed_everything, training_slices)
from .checkpoint_export import export_checkpoint
from .trainer import fold_config, train
from .training_config import TrainingConfig


ALL_FOLDS = -1  # the run on every scan, after the folds


NO_FOLD = -2  # the fold of a synthetic scan: trained on by every run, tested by none


def same_fold_donors(slices: Sequence[TrainingSlice], folds: List[List[str]]):
    """A donor pool (``BatchMaker``'s ``donors``) that offers only slices of the recipient's fold."""
    fold_of = fold_of_scan(folds)
    by_fold: Dict[int, List[TrainingSlice]] = {}
    for item in slices:
        by_fold.setdefault(fold_of.get(item.patient, NO_FOLD), []).append(item)
    return lambda sample: by_fold[fold_of.get(sample.patient, NO_FOLD)]


def embedding_bank(config: TrainingConfig, slices: List[TrainingSlice], folds: List[List[str]], group: ProcessGroup,
                   progress: bool, bank_folder: Optional[Path]) -> EmbeddingBank:
    """The frozen encoder's outputs for every slice's augmented copies, shared by the folds: stored
    in ``bank_folder`` under its key when given (read back when there), else built here."""
    stored = bank_path(bank_folder, config, slices, folds) if bank_folder is not None else None
    if stored is not None and stored.is_file():
        print(f"embedding bank read from {stored}", flush=True)
        return load_bank(stored, slices)
    rng = seed_everything(config.seed)
    device = group.device(config.device)
    encoder = build_trainable_model(config, device)
    maker = BatchMaker(encoder, config, rng, donors=same_fold_donors(slices, folds))
    bank = EmbeddingBank(encoder, maker, slices, config.augmented_copies, device, progress=progress,
                         stages=frozen_stages(encoder, config))
    if stored is not None and group.is_main:
        save_bank(bank, stored)
    return bank


def train_folds(config: TrainingConfig, cases: Sequence[Case], folds: List[List[str]], out: Path,
                only: Sequence[int] = (), progress: bool = True, group: ProcessGroup = SINGLE_PROCESS,
                also_all: bool = False, extra: Sequence[Case] = (),
                bank_folder: Optional[Path] = None) -> List[Path]:
    """Train fold ``k``'s model on the scans outside fold ``k`` (plus ``extra``); write
    ``out/fold{k}/model.samihs.pt`` (under torchrun every process trains each fold on its share,
    rank 0 writes). With ``also_all``, then one model on every scan (``out/all/model.samihs.pt``:
    what ships). With ``bank_folder``, the frozen encoder's bank is read from there when a call
    with the same bank stored it, else built and stored (``training/bank_store.py``)."""
    out = Path(out)
    config = dataclasses.replace(config, output_dir=str(out))
    fold_of = fold_of_scan(folds)
    unplaced = sorted({case.patient for case in cases} - set(fold_of))
    if unplaced:
        raise ValueError(f"Scans {unplaced[:5]} are in no fold of the fold file.")
    slices = training_slices(list(cases) + list(extra))
    bank = embedding_bank(config, slices, folds, group, progress, bank_folder) if config.cache_embeddings else None
    written = []
    runs = [fold for fold in range(len(folds)) if not only or fold in only] + ([ALL_FOLDS] if also_all else [])
    for fold in runs:
        indices = [i for i, item in enumerate(slices)
                   if fold == ALL_FOLDS or fold_of.get(item.patient, NO_FOLD) != fold]
        fold_run = fold_config(config, "all" if fold == ALL_FOLDS else f"fold{fold}")
        if bank is not None:
            model, losses = train(fold_run, resume=False, progress=progress, bank=bank.subset(indices), group=group)
        else:
            model, losses = train(fold_run, [slices[i] for i in indices], resume=False, progress=progress,
                                  group=group)
        if not group.is_main:
            continue
        held_out = [] if fold == ALL_FOLDS else sorted(folds[fold])
        patients = sorted({slices[i].patient for i in indices})
        data = f"{len(indices)} slices of {len(patients)} scans" + ("" if fold == ALL_FOLDS else f" outside fold {fold}")
        path = export_checkpoint(model, fold_run, Path(fold_run.output_dir) / "model.samihs.pt",
                                 {"final_loss": losses[-1], "held_out_scans": held_out, "training_scans": patients,
                                  "steps": len(losses)}, data)
        written.append(path)
    if group.is_main:
        record_trained_folds(out, written, config)
    return written


def record_trained_folds(out: Path, written: Sequence[Path], config: TrainingConfig) -> List[str]:
    """Write ``out/folds_trained.json``: the models ``written`` and those an earlier call listed there
    with the same recipe (folds trained a few per call add up; another recipe's list is replaced).
    Returns the listed paths."""
    record = Path(out) / "folds_trained.json"
    recipe = json.loads(json.dumps(config.to_dict()))  # as the file holds it (tuples read back as lists)
    listed = {str(path) for path in written}
    if record.is_file():
        earlier = json.loads(record.read_text())
        if earlier.get("config") == recipe:
            listed |= set(earlier.get("folds", []))
    folds = sorted(listed)
    write_text_atomic(record, json.dumps({"folds": folds, "config": recipe}, indent=2) + "\n")
    return folds
