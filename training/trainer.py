"""Fine-tuning SAMIHS: frozen image encoder, trainable PR adapters + prompt encoder + mask decoder.
The training loop; the config is ``training_config``, the batches ``batches``, the checkpoint
``checkpoint_export``.

One JSON config per experiment (``TrainingConfig``). Adam (lr 5e-4), batch 2, 200 epochs and
StepLR by default, as the paper; seeds; resume from ``last.pt``; a tqdm progress bar; a CSV log
(and TensorBoard when installed); bf16 autocast on CUDA, and on CPUs with native bf16 when asked.

``cache_embeddings``: the frozen part of the encoder runs once, on ``augmented_copies`` augmented
versions of every slice. Without adapters that is the whole encoder (decoder-side training only);
with ``trained_encoder_stages`` it is the TinyViT's front, and the adapted last stages train on
the cached output (staged training: the paper's adapters on 2 CPU cores).
"""

import csv
import dataclasses
import gc
import json
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from SAMIHSLib.io.atomic_write import atomic_output, write_text_atomic
from SAMIHSLib.models.sam import SegmentAnythingModel

from SAMIHSLib.interaction.predictor import BINARY_MASK_LOGIT

from .batches import (BatchMaker, EmbeddingBank, TrainingPrompt, TrainingSlice, build_trainable_model, frozen_stages,
                      load_training_cases, seed_everything, training_slices)
from .distributed import SINGLE_PROCESS, ProcessGroup
from .losses import samihs_loss
from .prompts import corrective_click
from .subtype_sampling import WeightedEpochSampler, sampling_weights
from .training_config import TrainingConfig


class PromptedLoss(torch.nn.Module):
    """One training forward pass as a module (encode if needed, decode every prompted item with its
    corrective rounds, the loss), so that DistributedDataParallel can wrap it and average its gradients."""

    def __init__(self, model: SegmentAnythingModel, config: TrainingConfig, cached_stages: int = -1) -> None:
        super().__init__()
        self.model, self.config, self.cached_stages = model, config, cached_stages

    def forward(self, inputs: torch.Tensor, prompts: Sequence[TrainingPrompt], encode: bool) -> torch.Tensor:
        if encode:
            with torch.set_grad_enabled(self.model.config.adapters.enabled):  # no encoder backward otherwise
                inputs = self.model.encode(inputs)
        elif self.cached_stages >= 0:  # staged: the adapted last stages run on the cached front
            inputs = self.model.encode_back(inputs, self.cached_stages)
        loss = torch.zeros((), device=inputs.device)
        for index, prompt in enumerate(prompts):
            loss = loss + self._item_loss(inputs[index:index + 1], prompt)
        return loss / len(prompts)

    def _item_loss(self, embedding: torch.Tensor, prompt: TrainingPrompt) -> torch.Tensor:
        """The mean loss over the first answer and each corrective round: a click at the largest
        error of the previous answer, with every click so far and that answer as the mask prompt
        (binary, as the app feeds a correction back)."""
        points, boxes, mask_input = prompt.points, prompt.boxes, None
        total = torch.zeros((), device=embedding.device)
        if prompt.corrective_rounds:  # what the corrective clicks are drawn against
            target, other_bleed = (mask[0, 0].cpu().numpy() > 0.5 for mask in (prompt.target, prompt.all_bleed))
        for round_index in range(prompt.corrective_rounds + 1):
            logits, _ = self.model.decode(embedding, points, boxes, mask_input)
            total = total + samihs_loss(logits.float(), prompt.target, self.config.boundary_loss, self.config.bce_weight,
                                        boundary_weight_floor=self.config.boundary_weight_floor)
            if round_index == prompt.corrective_rounds:
                break
            answer = logits.detach()[0, 0] > 0
            correction = corrective_click(answer.cpu().numpy(), target, also_true=other_bleed)
            if correction is None:
                break
            scale = self.model.config.image_size / answer.shape[-1]
            (x, y), positive = correction
            click = torch.tensor([[[(x + 0.5) * scale - 0.5, (y + 0.5) * scale - 0.5]]], device=embedding.device)
            points = (torch.cat([points[0], click], dim=1),
                      torch.cat([points[1], torch.tensor([[int(positive)]], device=embedding.device)], dim=1))
            boxes = None  # a correction is clicks and the current mask, as in the app
            mask_input = torch.where(answer, BINARY_MASK_LOGIT, -BINARY_MASK_LOGIT)[None, None].float()
        return total / (round_index + 1)


def cpu_autocast_enabled(setting: str) -> bool:
    """Whether CPU training runs its matrix products in bf16 for a recipe's ``cpu_autocast``
    setting (``auto``: where the CPU has native bf16; ``bf16``; ``fp32``)."""
    if setting == "auto":
        from SAMIHSLib.cpu_info import cpu_info

        return bool({"avx512_bf16", "amx_bf16"} & set(cpu_info()["flags"]))  # type: ignore[arg-type]
    return setting == "bf16"


def _batch_indices(sampler, step: int, steps_per_epoch: int, batch_size: int) -> List[int]:
    """The slices of ``step``: the sampler's order for its epoch (reshuffled per epoch, this
    process's share under torchrun), ``batch_size`` at a time, wrapping round a short epoch."""
    sampler.set_epoch(step // steps_per_epoch)
    order = list(sampler)
    start = (step % steps_per_epoch) * batch_size
    return [order[(start + i) % len(order)] for i in range(batch_size)]


def train(config: TrainingConfig, slices: Optional[List[TrainingSlice]] = None, resume: bool = True,
          progress: bool = True, on_step: Optional[Callable[[int, float], None]] = None,
          bank: Optional["EmbeddingBank"] = None,
          group: ProcessGroup = SINGLE_PROCESS) -> Tuple[SegmentAnythingModel, List[float]]:
    """Train per ``config`` (on ``slices`` if given, else on the config's datasets; on ``bank``'s
    cached embeddings if given, made by the same frozen encoder, e.g. shared by the folds).

    Returns the trained model and the loss of every step (averaged over processes). Rank 0 writes
    ``train_log.csv``, ``config.json`` and ``last.pt`` (resumable state) to ``output_dir``. Under
    torchrun (``group``) each process takes its share of every epoch (DistributedSampler) and
    DistributedDataParallel averages the gradients: the same seeds and outputs as one process.
    """
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data.distributed import DistributedSampler

    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed + group.rank)  # augmentations and prompts differ per process
    device = group.device(config.device)
    out = Path(config.output_dir)
    if group.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    slices = bank.slices if bank is not None else slices if slices is not None else \
        training_slices(load_training_cases(config))
    if not slices:
        raise ValueError("No training slice contains hemorrhage.")
    model = build_trainable_model(config, device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=config.learning_rate)
    if config.subtype_balance > 0:
        sampler = WeightedEpochSampler(sampling_weights([item.flags for item in slices], config.subtype_balance),
                                       num_replicas=group.world_size, rank=group.rank, seed=config.seed)
    else:
        sampler = DistributedSampler(range(len(slices)), num_replicas=group.world_size, rank=group.rank,
                                     shuffle=True, seed=config.seed)
    steps_per_epoch = max(1, len(sampler) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step_epochs * steps_per_epoch,
                                                gamma=config.lr_gamma)
    total = config.epochs * steps_per_epoch if config.max_steps is None else config.max_steps
    step, losses = 0, []
    state_path = out / "last.pt"
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, losses = int(state["step"]), [float(v) for v in state["losses"]]
    maker = BatchMaker(model, config, rng)
    cached_stages = frozen_stages(model, config) if config.cache_embeddings else -1
    if bank is None and config.cache_embeddings:
        bank = EmbeddingBank(model, maker, slices, config.augmented_copies, device, progress=group.is_main,
                             stages=cached_stages)
    if bank is not None and bank.stages != cached_stages:
        raise ValueError(f"The embedding bank caches {bank.stages} stages; this config trains after {cached_stages}.")
    model.prompt_encoder.train()
    model.mask_decoder.train()
    forward = PromptedLoss(model, config, cached_stages)
    if group.distributed:  # some prompt embeddings (box, mask) are unused in a step: find_unused_parameters
        forward = DistributedDataParallel(forward, device_ids=[device.index] if device.type == "cuda" else None,
                                          find_unused_parameters=True)
    writer = _tensorboard(out) if group.is_main else None
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else \
        torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_autocast_enabled(config.cpu_autocast))
    from tqdm import tqdm

    bar = tqdm(total=total, initial=step, desc=config.name, disable=not (progress and group.is_main), unit="step")
    log_exists = (out / "train_log.csv").is_file() and step > 0
    log_file = open(out / "train_log.csv", "a" if log_exists else "w", newline="") if group.is_main else None
    log = csv.writer(log_file) if log_file is not None else None
    if log is not None and not log_exists:
        log.writerow(["step", "epoch", "loss", "learning_rate", "seconds"])
    started = time.perf_counter()
    try:
        while step < total:
            if config.max_minutes is not None and _elapsed_minutes(started, group) > config.max_minutes:
                bar.write(f"{config.name}: stopped at step {step} of {total} after {config.max_minutes} min")
                break
            chosen = _batch_indices(sampler, step, steps_per_epoch, config.batch_size)
            with autocast:
                if bank is not None:
                    inputs, prepared = bank.sample(chosen, rng)
                else:
                    prepared = [maker.image_and_target(slices[int(i)]) for i in chosen]
                    inputs = torch.cat([p.model_image for p in prepared])
                prompts = [maker.prompt(item, device) for item in prepared]
                loss = forward(inputs.to(device), prompts, encode=bank is None)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            mean_loss = group.mean(loss.detach())
            losses.append(mean_loss)
            if log is not None:
                log.writerow([step, step // steps_per_epoch, f"{mean_loss:.5f}", f"{scheduler.get_last_lr()[0]:.2e}",
                              f"{time.perf_counter() - started:.1f}"])
            if writer is not None:
                writer.add_scalar("loss", mean_loss, step)
            bar.update(1)
            bar.set_postfix(loss=f"{mean_loss:.4f}")
            if on_step is not None:
                on_step(step, mean_loss)
            if group.is_main and step % max(1, steps_per_epoch * 5) == 0 and step < total:
                _save_state(state_path, model, optimizer, scheduler, step, losses)
    finally:
        if log_file is not None:
            log_file.close()
    if group.is_main:
        _save_state(state_path, model, optimizer, scheduler, step, losses)
    bar.close()
    if group.distributed:  # DDP's reducer sits in reference cycles: free it while the process group lives
        del forward
        gc.collect()
    model.eval()
    return model, losses


def _elapsed_minutes(started: float, group: ProcessGroup) -> float:
    """Minutes since ``started``, the longest of all processes (so that all stop at the same step)."""
    elapsed = torch.tensor((time.perf_counter() - started) / 60.0)
    if group.distributed:
        import torch.distributed as dist

        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
    return float(elapsed)


def _save_state(path: Path, model: SegmentAnythingModel, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler, step: int, losses: List[float]) -> None:
    """Everything ``train`` needs to resume (atomically: a run killed mid-save resumes from the last state)."""
    with atomic_output(path) as temporary:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "step": step, "losses": losses}, temporary)


def fold_config(config: TrainingConfig, name: str) -> TrainingConfig:
    """``config`` for one run inside its experiment: outputs go to ``output_dir/name``."""
    return dataclasses.replace(config, name=name, output_dir=str(Path(config.output_dir) / name))


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(out / "tensorboard"))
