"""One candidate model per cross-validation fold, trained on the other folds' scans only, so that
``python -m training clickeval --method DIR/fold{fold}/model.samihs.pt`` tests each slice with a
model that never saw its scan.

With a frozen encoder (``cache_embeddings``) the augmented copies of every slice are encoded once
and shared by all folds: a slice's copies carry only bleeds pasted from slices of its own fold, so
a copy is used exactly when its whole content belongs to a training fold.
"""

import dataclasses
import json
from pathlib import Path
from typing import Dict, List, Sequence

from SAMIHSLib.io.atomic_write import write_text_atomic

from .datasets import Case
from .distributed import SINGLE_PROCESS, ProcessGroup
from .folds import fold_of_scan
from .batches import (BatchMaker, EmbeddingBank, TrainingSlice, build_trainable_model, frozen_stages,
                      seed_everything, training_slices)
from .checkpoint_export import export_checkpoint
from .trainer import fold_config, train
from .training_config import TrainingConfig


ALL_FOLDS = -1  # the run on every scan, after the folds


def same_fold_donors(slices: Sequence[TrainingSlice], folds: List[List[str]]):
    """A donor pool (``BatchMaker``'s ``donors``) that offers only slices of the recipient's fold."""
    fold_of = fold_of_scan(folds)
    by_fold: Dict[int, List[TrainingSlice]] = {}
    for item in slices:
        by_fold.setdefault(fold_of[item.patient], []).append(item)
    return lambda sample: by_fold[fold_of[sample.patient]]


def train_folds(config: TrainingConfig, cases: Sequence[Case], folds: List[List[str]], out: Path,
                only: Sequence[int] = (), progress: bool = True, group: ProcessGroup = SINGLE_PROCESS,
                also_all: bool = False) -> List[Path]:
    """Train fold ``k``'s model on the scans outside fold ``k``; write ``out/fold{k}/model.samihs.pt``
    (under torchrun every process trains each fold on its share, rank 0 writes). With ``also_all``,
    then one model on every scan from the same bank (``out/all/model.samihs.pt``: what ships)."""
    if not config.cache_embeddings:
        raise ValueError("Fold training shares one embedding bank: set cache_embeddings (a frozen encoder).")
    out = Path(out)
    config = dataclasses.replace(config, output_dir=str(out))
    slices = training_slices(cases)
    fold_of = fold_of_scan(folds)
    rng = seed_everything(config.seed)
    device = group.device(config.device)
    encoder = build_trainable_model(config, device)
    maker = BatchMaker(encoder, config, rng, donors=same_fold_donors(slices, folds))
    bank = EmbeddingBank(encoder, maker, slices, config.augmented_copies, device, progress=progress,
                         stages=frozen_stages(encoder, config))
    del encoder
    written = []
    runs = [fold for fold in range(len(folds)) if not only or fold in only] + ([ALL_FOLDS] if also_all else [])
    for fold in runs:
        indices = [i for i, item in enumerate(slices) if fold == ALL_FOLDS or fold_of[item.patient] != fold]
        fold_run = fold_config(config, "all" if fold == ALL_FOLDS else f"fold{fold}")
        model, losses = train(fold_run, resume=False, progress=progress, bank=bank.subset(indices), group=group)
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
        write_text_atomic(out / "folds_trained.json", json.dumps({"folds": [str(p) for p in written],
                                                                  "config": config.to_dict()}, indent=2) + "\n")
    return written
