"""Training slices and the batches made of them: augmentation, bleed pasting, the clicks and boxes a
user gives (iterative corrective clicks with the previous mask fed back), targets, and the bank of
cached encoder embeddings for decoder-only training."""

import dataclasses
import random
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy import ndimage as ndi

from SAMIHSLib.models import AdapterConfig, build_model, load_model
from SAMIHSLib.models.adapters import PRAdapter, adapter_parameter_names
from SAMIHSLib.models.sam import SegmentAnythingModel
from SAMIHSLib.imaging.preprocessing import denoise_slice, neighbour_indices, normalize_slice
from SAMIHSLib.interaction.regions import component_at, deepest_point
from SAMIHSLib.imaging.transforms import SliceToModelTransform

from .augment import AugmentConfig, augment_slice, zoom_in
from .bleed_age import age_bleeds
from .bleed_paste import paste_bleed
from .datasets import SUBTYPES, UNLABELLED_SUBTYPE, Case, load_dataset, phantom_cases
from .prompts import corrective_click, jittered_box, random_foreground_click, region_box
from .training_config import TrainingConfig


@dataclass
class TrainingSlice:
    image_hu: np.ndarray
    mask: np.ndarray
    patient: str
    pixel_mm: float = 1.0
    subtypes: Optional[np.ndarray] = None  # SUBTYPES class per pixel, when the dataset has them
    flags: Tuple[str, ...] = ()  # the subtypes on the slice (from its pixel classes or per-slice flags)
    # Slices k-1 and k+1 of its scan (preprocessing.neighbour_indices); None for a slice given without its scan.
    neighbours_hu: Optional[Tuple[np.ndarray, np.ndarray]] = None

    def stack_hu(self) -> np.ndarray:
        """Slices k-1, k, k+1 (3, rows, columns); slice k three times for a lone slice."""
        below, above = self.neighbours_hu if self.neighbours_hu is not None else (self.image_hu, self.image_hu)
        return np.stack([below, self.image_hu, above]).astype(np.float32)


def slice_flags(case: Case, k: int) -> Tuple[str, ...]:
    """The subtype names of slice ``k``: its bleed pixels' classes, else the dataset's per-slice flags."""
    if case.subtype_labels is not None:
        classes = np.unique(case.subtype_labels[k][case.mask[k]])
        return tuple(SUBTYPES[int(c)] for c in classes if int(c) in SUBTYPES)
    return tuple(case.slice_subtypes.get(k, ())) if case.slice_subtypes else ()


def _neighbours(case: Case, k: int) -> Tuple[np.ndarray, np.ndarray]:
    below, _, above = neighbour_indices(k, case.image_hu.shape[0])
    return case.image_hu[below], case.image_hu[above]


def training_slices(cases: Sequence[Case]) -> List[TrainingSlice]:
    """Slices with hemorrhage, as the paper trains on (with views of their neighbouring slices)."""
    return [TrainingSlice(case.image_hu[k], case.mask[k], case.patient, min(case.spacing_zyx[1:]),
                          None if case.subtype_labels is None else case.subtype_labels[k], slice_flags(case, k),
                          _neighbours(case, k))
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


def frozen_stages(model: SegmentAnythingModel, config: TrainingConfig) -> int:
    """How many image-encoder stages the embedding bank caches (staged training), or -1 when it
    caches the whole encoder's output."""
    if config.trained_encoder_stages <= 0:
        return -1
    layers = getattr(model.image_encoder, "layers", None)
    if layers is None or not hasattr(model.image_encoder, "forward_front"):
        raise ValueError("trained_encoder_stages needs a TinyViT image encoder (base_model lite-base or lite).")
    if config.trained_encoder_stages >= len(layers):
        raise ValueError(f"trained_encoder_stages must leave at least one frozen stage: the encoder has {len(layers)}.")
    return len(layers) - config.trained_encoder_stages


def _trained_adapter_names(model: SegmentAnythingModel, first_trained_stage: int) -> List[str]:
    """The PR-adapter parameters of the stages from ``first_trained_stage`` on. A shared basis trains
    only if no frozen stage uses it: otherwise the cached front would no longer be the model's."""
    if first_trained_stage <= 0:
        return adapter_parameter_names(model)
    trained, trained_bases, frozen_bases = set(), set(), set()
    for index, layer in enumerate(model.image_encoder.layers):
        for adapter in (m for m in layer.modules() if isinstance(m, PRAdapter)):
            if index >= first_trained_stage:
                trained.update(id(p) for p in adapter.parameters())
                trained_bases.add(adapter.basis)
            else:
                frozen_bases.add(adapter.basis)
    for basis in trained_bases - frozen_bases:
        trained.update(id(p) for p in basis.parameters())
    return [name for name, parameter in model.named_parameters() if id(parameter) in trained]


def build_trainable_model(config: TrainingConfig, device: torch.device) -> SegmentAnythingModel:
    """The base model with (zero-initialised) adapters; only adapters (of the trained stages, in
    staged training), prompt encoder and mask decoder require gradients."""
    base = load_model(config.base_model, device="cpu")
    adapters = AdapterConfig(positions=tuple(config.adapter_positions), rank=config.adapter_rank)
    if config.cache_embeddings and adapters.enabled and config.trained_encoder_stages <= 0:
        raise ValueError("cache_embeddings with adapters needs trained_encoder_stages > 0 (staged training); "
                         "with the whole encoder frozen use adapter_positions: [].")
    preprocessing = dataclasses.replace(base.config.preprocessing, neighbour_channels=config.neighbour_channels)
    model = build_model(base.config.backbone, adapters, preprocessing)
    model.load_state_dict(base.state_dict(), strict=False)
    model.config = dataclasses.replace(model.config, trained_with_clicks=True)
    cut = frozen_stages(model, config) if config.cache_embeddings else 0
    trainable = set(_trained_adapter_names(model, max(cut, 0)))
    for name, parameter in model.named_parameters():
        parameter.requires_grad = (name in trainable or name.startswith("prompt_encoder.")
                                   or name.startswith("mask_decoder."))
    return model.to(device).eval()  # frozen BatchNorm statistics; train() is set on the heads only


@dataclass
class TrainingPrompt:
    """One training item's first prompt, its targets (low-res, 0/1) and how many corrective rounds follow."""

    points: Tuple[torch.Tensor, torch.Tensor]
    boxes: Optional[torch.Tensor]
    target: torch.Tensor
    all_bleed: torch.Tensor  # bleed the clicked one is not: never answered by a negative click
    corrective_rounds: int = 0


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
        neighbour_channels = self.model.config.preprocessing.neighbour_channels
        source = sample.stack_hu() if neighbour_channels else sample.image_hu
        stack, mask, level_jitter, width_jitter = source, sample.mask, 0.0, 0.0
        if self.config.augment:
            stack, mask, level_jitter, width_jitter = augment_slice(source, sample.mask, self.rng, self.augment)
            if not mask.any():  # shifted out of view: use the slice as it is
                stack, mask, level_jitter, width_jitter = source, sample.mask, 0.0, 0.0
        image = stack[1] if neighbour_channels else stack
        before = image
        if self.donors is not None and self.rng.random() < self.config.paste_probability:
            image, mask = self._paste(sample, image, mask)
        image, _ = age_bleeds(image, mask, self.rng, self.config.aged_bleed_probability)
        if neighbour_channels:
            # A pasted or aged bleed spans the neighbouring slices too, as a real bleed 5 mm thick would.
            stack = stack + (image - before)[None]
            stack[1] = image
        pixel_mm = sample.pixel_mm
        # drawn only when asked for, so recipes without zoom keep their random streams
        if self.config.zoom_probability > 0 and self.rng.random() < self.config.zoom_probability:
            image, mask, zoom = zoom_in(image, mask, self.rng, self.config.max_zoom)
            pixel_mm = pixel_mm / zoom
        base = self.model.config.preprocessing
        window = dataclasses.replace(base, window_level_hu=base.window_level_hu + level_jitter,
                                     window_width_hu=max(20.0, base.window_width_hu + width_jitter)) \
            if base.kind == "window" else base
        transform = SliceToModelTransform(mask.shape, self.model.config.image_size)
        channels = np.stack([normalize_slice(s, window) for s in stack]) if neighbour_channels \
            else normalize_slice(image, window)
        return PreparedSlice(torch.from_numpy(transform.image_to_model(channels)), mask, transform, image, pixel_mm)

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

    def prompt(self, prepared: PreparedSlice, device: torch.device) -> "TrainingPrompt":
        """The first prompt of one training item, in model coordinates: one random positive click
        (paper; with ``deepest_click_probability`` the deepest point of the clicked bleed),
        sometimes a corrective extra click, and sometimes a box: around the click's hyperdense
        region (as the app prompts) or the mask's, jittered. The target is the slice's bleed, or
        with ``clicked_bleed_target`` the connected bleed under the click; ``corrective_clicks``
        more rounds (0..N, drawn) follow in the loss, from the model's own answers."""
        mask, transform = prepared.mask, prepared.transform
        coords = [random_foreground_click(mask, self.rng)]
        labels = [1]
        if self.config.clicked_bleed_target:
            mask = component_at(mask, coords[0])
        if self.rng.random() < self.config.deepest_click_probability:
            coords[0] = deepest_point(component_at(mask, coords[0]))
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
        rounds = int(self.rng.integers(0, self.config.corrective_clicks + 1)) if self.config.corrective_clicks else 0
        return TrainingPrompt(points, boxes, self.target(mask, transform, device),
                              self.target(prepared.mask, transform, device), rounds)

    def target(self, mask: np.ndarray, transform: SliceToModelTransform, device: torch.device) -> torch.Tensor:
        return lowres_target(mask, transform, self.model.lowres_mask_size).to(device)


def lowres_target(mask: np.ndarray, transform: SliceToModelTransform, lowres_size: int) -> torch.Tensor:
    """A slice's binary mask as the loss sees it: (1, 1, L, L) on the decoder's low-res grid, a pixel
    set where more than half of it is bleed (a bleed of a few pixels can vanish)."""
    return torch.from_numpy(transform.mask_to_model_lowres(mask.astype(np.float32), lowres_size) > 0.5).float()


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


class EmbeddingBank:
    """Frozen-encoder outputs of augmented copies of every slice, computed once: the whole
    encoder's embeddings, or in staged training (``stages`` >= 0) the output of its first ``stages``
    stages, kept in fp16 (half the memory; ``encode_back`` runs in fp32 from it)."""

    def __init__(self, model: SegmentAnythingModel, maker: BatchMaker, slices: List[TrainingSlice], copies: int,
                 device: torch.device, progress: bool = True, stages: int = -1) -> None:
        self.slices = list(slices)
        self.stages = stages
        self.items: List[List[Tuple[torch.Tensor, PreparedSlice]]] = []
        from tqdm import tqdm

        with torch.no_grad():
            for sample in tqdm(slices, desc="encoding augmented slices", leave=False, disable=not progress):
                versions = []
                for _ in range(max(1, copies)):
                    prepared = maker.image_and_target(sample)
                    versions.append((self.encode(model, prepared.model_image.to(device)), prepared))
                self.items.append(versions)

    def encode(self, model: SegmentAnythingModel, image01: torch.Tensor) -> torch.Tensor:
        """What the bank stores for one model-ready image."""
        if self.stages < 0:
            return model.encode(image01).detach().cpu()
        return model.encode_front(image01, self.stages).detach().to(torch.float16).cpu()

    @classmethod
    def of_items(cls, slices: Sequence[TrainingSlice], items: List[List[Tuple[torch.Tensor, PreparedSlice]]],
                 stages: int) -> "EmbeddingBank":
        """A bank of embeddings encoded before (part of another bank, or one read from disk)."""
        bank = object.__new__(cls)
        bank.slices, bank.items, bank.stages = list(slices), list(items), stages
        return bank

    def subset(self, indices: Sequence[int]) -> "EmbeddingBank":
        """The same embeddings for some of the slices (e.g. one fold's training scans)."""
        return EmbeddingBank.of_items([self.slices[i] for i in indices], [self.items[i] for i in indices], self.stages)

    def sample(self, chosen: Sequence[int], rng: np.random.Generator):
        picked = [self.items[int(i)][int(rng.integers(len(self.items[int(i)])))] for i in chosen]
        return torch.cat([p[0].float() for p in picked]), [p[1] for p in picked]
