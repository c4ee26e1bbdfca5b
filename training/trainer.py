"""Fine-tuning SAMIHS: frozen image encoder, trainable PR adapters + prompt encoder + mask decoder.

One JSON config per experiment (``TrainingConfig``). Adam (lr 5e-4), batch 2, 200 epochs and
StepLR by default, as the paper; seeds; resume from ``last.pt``; a tqdm progress bar; a CSV log
(and TensorBoard when installed); bf16 autocast on CUDA; runs on CPU.

``cache_embeddings`` (only without adapters): the frozen encoder's embeddings of
``augmented_copies`` augmented versions of every slice are computed once and training runs on
the decoder side alone, about 20x faster on CPU.
"""

import csv
import dataclasses
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy import ndimage as ndi

from SAMIHSLib.io.atomic_write import atomic_output, write_text_atomic
from SAMIHSLib.models import AdapterConfig, build_model, load_model, save_finetuned_checkpoint
from SAMIHSLib.models.adapters import adapter_parameter_names
from SAMIHSLib.models.sam import SegmentAnythingModel
from SAMIHSLib.imaging.preprocessing import denoise_slice, normalize_slice
from SAMIHSLib.interaction.regions import component_at
from SAMIHSLib.imaging.transforms import SliceToModelTransform

from .augment import AugmentConfig, augment_slice
from .bleed_paste import paste_bleed
from .distributed import SINGLE_PROCESS, ProcessGroup
from .datasets import SUBTYPES, UNLABELLED_SUBTYPE, Case, load_dataset, phantom_cases
from .losses import samihs_loss
from .prompts import corrective_click, jittered_box, random_foreground_click, region_box


@dataclass
class TrainingConfig:
    """Everything one experiment needs; saved beside its outputs and inside the checkpoint."""

    name: str = "samihs_lite"
    base_model: str = "lite-base"
    adapter_positions: Tuple[str, ...] = ("attn", "mlp")
    adapter_rank: int = 32
    boundary_loss: str = "paper"
    bce_weight: float = 0.5
    learning_rate: float = 5e-4
    batch_size: int = 2
    epochs: int = 200
    lr_step_epochs: int = 50
    lr_gamma: float = 0.5
    seed: int = 0
    datasets: List[Dict[str, str]] = field(default_factory=list)
    phantom_cases: int = 0
    augment: bool = True
    box_probability: float = 0.0
    # A box around the click's hyperdense region, as the app's intensity-guided click handling
    # gives a click-trained model at inference (with the click).
    region_box_probability: float = 0.0
    extra_click_probability: float = 0.3
    max_steps: Optional[int] = None
    # Stop (and save) once this much wall time has passed: for a rented machine's time limit.
    # The steps actually done are in train_log.csv and the checkpoint's config.
    max_minutes: Optional[float] = None
    device: str = "auto"
    output_dir: str = "runs/samihs_lite"
    cache_embeddings: bool = False
    augmented_copies: int = 4
    # Bleed pasting (training/bleed_paste.py): the chance that a training image gets 1..max_pasted_bleeds
    # real bleeds of other patients (donors of the same fold only in fold training) at plausible places.
    paste_probability: float = 0.0
    max_pasted_bleeds: int = 2
    # Target the connected bleed under the click (what a click asks for) instead of all bleed on the slice.
    clicked_bleed_target: bool = False

    @classmethod
    def from_json(cls, path: Path) -> "TrainingConfig":
        data = json.loads(Path(path).read_text())
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"Unknown training option(s) in {path}: {sorted(unknown)}")
        if "adapter_positions" in data:
            data["adapter_positions"] = tuple(data["adapter_positions"])
        return cls(**data)

    def to_dict(self) -> Dict[str, object]:
        return dataclasses.asdict(self)


@dataclass
class TrainingSlice:
    image_hu: np.ndarray
    mask: np.ndarray
    patient: str
    pixel_mm: float = 1.0
    subtypes: Optional[np.ndarray] = None  # SUBTYPES class per pixel, when the dataset has them


def training_slices(cases: Sequence[Case]) -> List[TrainingSlice]:
    """Slices with hemorrhage, as the paper trains on."""
    return [TrainingSlice(case.image_hu[k], case.mask[k], case.patient, min(case.spacing_zyx[1:]),
                          None if case.subtype_labels is None else case.subtype_labels[k])
            for case in cases for k in case.hemorrhage_slices()]


def subtype_of(sample: TrainingSlice, component: np.ndarray) -> str:
    """The most frequent subtype class under ``component`` (``unlabelled`` without classes)."""
    if sample.subtypes is None:
        return UNLABELLED_SUBTYPE
    classes = sample.subtypes[component]
    classes = classes[classes > 0]
    return SUBTYPES.get(int(np.bincount(classes).argmax()), UNLABELLED_SUBTYPE) if classes.size else UNLABELLED_SUBTYPE


def configured_phantoms(config: TrainingConfig) -> List[Case]:
    """The synthetic scans a config asks for (``phantom_cases``), seeded by the config."""
    return phantom_cases(config.phantom_cases, seed=config.seed) if config.phantom_cases else []


def load_training_cases(config: TrainingConfig) -> List[Case]:
    cases: List[Case] = []
    for entry in config.datasets:
        cases.extend(load_dataset(entry["kind"], entry["root"]))
    cases.extend(configured_phantoms(config))
    if not cases:
        raise ValueError("The training config names no data (datasets or phantom_cases).")
    return cases


def build_trainable_model(config: TrainingConfig, device: torch.device) -> SegmentAnythingModel:
    """The base model with (zero-initialised) adapters; only adapters, prompt encoder and mask
    decoder require gradients."""
    base = load_model(config.base_model, device="cpu")
    adapters = AdapterConfig(positions=tuple(config.adapter_positions), rank=config.adapter_rank)
    if config.cache_embeddings and adapters.enabled:
        raise ValueError("cache_embeddings needs a frozen encoder without adapters (adapter_positions: []).")
    model = build_model(base.config.backbone, adapters, base.config.preprocessing)
    model.load_state_dict(base.state_dict(), strict=False)
    model.config = dataclasses.replace(model.config, trained_with_clicks=True)
    trainable = set(adapter_parameter_names(model))
    for name, parameter in model.named_parameters():
        parameter.requires_grad = (name in trainable or name.startswith("prompt_encoder.")
                                   or name.startswith("mask_decoder."))
    return model.to(device).eval()  # frozen BatchNorm statistics; train() is set on the heads only


@dataclass
class PreparedSlice:
    """An (augmented) slice ready for the model, with what prompts and targets are made from."""

    model_image: torch.Tensor
    mask: np.ndarray
    transform: SliceToModelTransform
    image_hu: np.ndarray
    pixel_mm: float


DonorPool = Callable[[TrainingSlice], Sequence[TrainingSlice]]


class BatchMaker:
    """Turns slices into model-ready images, low-res targets and simulated prompts.

    ``donors`` gives, for a slice, the slices whose bleeds may be pasted onto it (fold training
    passes only slices of the same fold, so that nothing of a test fold reaches training)."""

    def __init__(self, model: SegmentAnythingModel, config: TrainingConfig, rng: np.random.Generator,
                 donors: Optional[DonorPool] = None) -> None:
        self.model, self.config, self.rng, self.donors = model, config, rng, donors
        self.augment = AugmentConfig()

    def image_and_target(self, sample: TrainingSlice) -> PreparedSlice:
        image, mask, level_jitter, width_jitter = sample.image_hu, sample.mask, 0.0, 0.0
        if self.config.augment:
            image, mask, level_jitter, width_jitter = augment_slice(sample.image_hu, sample.mask, self.rng,
                                                                    self.augment)
            if not mask.any():  # shifted out of view: use the slice as it is
                image, mask, level_jitter, width_jitter = sample.image_hu, sample.mask, 0.0, 0.0
        if self.donors is not None and self.rng.random() < self.config.paste_probability:
            image, mask = self._paste(sample, image, mask)
        base = self.model.config.preprocessing
        window = dataclasses.replace(base, window_level_hu=base.window_level_hu + level_jitter,
                                     window_width_hu=max(20.0, base.window_width_hu + width_jitter)) \
            if base.kind == "window" else base
        transform = SliceToModelTransform(mask.shape, self.model.config.image_size)
        return PreparedSlice(transform.image_to_model(normalize_slice(image, window)), mask, transform, image,
                             sample.pixel_mm)

    def _paste(self, sample: TrainingSlice, image: np.ndarray, mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``image``/``mask`` with 1..max_pasted_bleeds bleeds of other patients pasted in."""
        donors = [d for d in self.donors(sample) if d.patient != sample.patient]
        for _ in range(int(self.rng.integers(1, self.config.max_pasted_bleeds + 1)) if donors else 0):
            donor = donors[int(self.rng.integers(len(donors)))]
            labels, count = ndi.label(donor.mask)
            component = labels == int(self.rng.integers(1, count + 1))
            pasted = paste_bleed(image, mask, donor.image_hu, component, subtype_of(donor, component), self.rng,
                                 sample.pixel_mm, donor.pixel_mm)
            if pasted is not None:
                image, mask = pasted
        return image, mask

    def prompt(self, prepared: PreparedSlice, device: torch.device):
        """(points, boxes, target mask): points and boxes in model coordinates: one random positive
        click (paper), sometimes a corrective extra click, and sometimes a box: around the click's
        hyperdense region (as the app prompts) or the mask's, jittered. The target is the slice's
        bleed, or with ``clicked_bleed_target`` the connected bleed under the click."""
        mask, transform = prepared.mask, prepared.transform
        coords = [random_foreground_click(mask, self.rng)]
        labels = [1]
        if self.config.clicked_bleed_target:
            mask = component_at(mask, coords[0])
        if self.rng.random() < self.config.extra_click_probability:
            rough = np.zeros_like(mask)
            rows, cols = np.nonzero(mask)
            rough[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True  # a box-shaped first guess
            correction = corrective_click(rough, mask)
            if correction is not None:
                coords.append(correction[0])
                labels.append(1 if correction[1] else 0)
        points = (torch.from_numpy(transform.points_to_model(np.array(coords)))[None].to(device),
                  torch.tensor([labels], device=device))
        box = None
        draw = self.rng.random()
        if draw < self.config.region_box_probability:
            box = region_box(denoise_slice(prepared.image_hu), coords[0], prepared.pixel_mm, self.rng)
        elif draw < self.config.region_box_probability + self.config.box_probability:
            box = jittered_box(mask, self.rng)
        boxes = None if box is None else \
            torch.from_numpy(transform.box_to_model(np.array(box)))[None].to(device)
        return points, boxes, mask

    def target(self, mask: np.ndarray, transform: SliceToModelTransform, device: torch.device) -> torch.Tensor:
        return (transform.mask_to_model_lowres(mask.astype(np.float32), self.model.lowres_mask_size) > 0.5).float().to(device)


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


class PromptedLoss(torch.nn.Module):
    """One training forward pass as a module (encode if needed, decode every prompted item, the
    loss), so that DistributedDataParallel can wrap it and average its gradients."""

    def __init__(self, model: SegmentAnythingModel, config: TrainingConfig) -> None:
        super().__init__()
        self.model, self.config = model, config

    def forward(self, inputs: torch.Tensor, prompts: Sequence[Tuple], encode: bool) -> torch.Tensor:
        if encode:
            with torch.set_grad_enabled(self.model.config.adapters.enabled):  # no encoder backward otherwise
                inputs = self.model.encode(inputs)
        loss = torch.zeros((), device=inputs.device)
        for index, (points, boxes, target) in enumerate(prompts):
            logits, _ = self.model.decode(inputs[index:index + 1], points, boxes)
            loss = loss + samihs_loss(logits.float(), target, self.config.boundary_loss, self.config.bce_weight)
        return loss / len(prompts)


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
    if bank is None and config.cache_embeddings:
        bank = EmbeddingBank(model, maker, slices, config.augmented_copies, device, progress=group.is_main)
    model.prompt_encoder.train()
    model.mask_decoder.train()
    forward = PromptedLoss(model, config)
    if group.distributed:  # some prompt embeddings (box, mask) are unused in a step: find_unused_parameters
        forward = DistributedDataParallel(forward, device_ids=[device.index] if device.type == "cuda" else None,
                                          find_unused_parameters=True)
    writer = _tensorboard(out) if group.is_main else None
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else \
        torch.autocast("cpu", enabled=False)
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
                prompts = []
                for item in prepared:
                    points, boxes, target_mask = maker.prompt(item, device)
                    prompts.append((points, boxes, maker.target(target_mask, item.transform, device)))
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


class FoldTrainer:
    """Trains one cross-validation fold: a picklable callable (module level, not ``__main__``) so
    that folds can run in processes, each with ``threads`` CPU threads (0: leave as is)."""

    def __init__(self, config: TrainingConfig, threads: int = 0) -> None:
        self.config, self.threads = config, threads

    def __call__(self, fold_cases: List[Case], name: str):
        if self.threads:
            torch.set_num_threads(self.threads)
        model, _ = train(fold_config(self.config, name), training_slices(fold_cases), resume=False,
                         progress=self.threads == 0)
        return model


class EmbeddingBank:
    """Frozen-encoder embeddings of augmented copies of every slice, computed once."""

    def __init__(self, model: SegmentAnythingModel, maker: BatchMaker, slices: List[TrainingSlice], copies: int,
                 device: torch.device, progress: bool = True) -> None:
        self.slices = list(slices)
        self.items: List[List[Tuple[torch.Tensor, PreparedSlice]]] = []
        from tqdm import tqdm

        with torch.no_grad():
            for sample in tqdm(slices, desc="encoding augmented slices", leave=False, disable=not progress):
                versions = []
                for _ in range(max(1, copies)):
                    prepared = maker.image_and_target(sample)
                    versions.append((model.encode(prepared.model_image.to(device)).detach().cpu(), prepared))
                self.items.append(versions)

    def subset(self, indices: Sequence[int]) -> "EmbeddingBank":
        """The same embeddings for some of the slices (e.g. one fold's training scans)."""
        part = object.__new__(EmbeddingBank)
        part.slices = [self.slices[i] for i in indices]
        part.items = [self.items[i] for i in indices]
        return part

    def sample(self, chosen: Sequence[int], rng: np.random.Generator):
        picked = [self.items[int(i)][int(rng.integers(len(self.items[int(i)])))] for i in chosen]
        return torch.cat([p[0] for p in picked]), [p[1] for p in picked]


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(out / "tensorboard"))


def export_checkpoint(model: SegmentAnythingModel, config: TrainingConfig, path: Path,
                      metrics: Optional[Dict[str, object]] = None, data_description: str = "") -> Path:
    """Save the trained adapters + prompt encoder + decoder as our checkpoint, with provenance."""
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, check=False).stdout.strip()
    except OSError:
        commit = ""
    provenance = {"training_config": config.to_dict(), "commit": commit, "data": data_description,
                  "metrics": metrics or {}, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return save_finetuned_checkpoint(model, Path(path), provenance)
