"""Prompt -> mask on the slices of one CT volume, with a per-slice embedding cache.

``SAMIHSPredictor.set_volume`` only records the volume; a slice is encoded the first time it is
prompted (``encode_slice``, the expensive half) and every later prompt on it runs only the
prompt encoder and mask decoder (``predict``, the cheap half).
"""

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Hashable, List, Optional, Sequence, Tuple, Union

import numpy as np

from SAMIHSLib.imaging.preprocessing import denoise_slice, denoised_value_at, encoder_input
from SAMIHSLib.interaction.regions import head_area_px
from SAMIHSLib.interaction.prompts import SlicePrompt
from SAMIHSLib.imaging.transforms import SliceToModelTransform
from SAMIHSLib.io.validation import InputError, validate_ct_volume, validate_point_in_slice, validate_slice_index
from SAMIHSLib.models.summary import ModelSummary

if TYPE_CHECKING:  # a model run from cached graphs is never built with torch
    from SAMIHSLib.models.sam import SegmentAnythingModel

# A binary mask used as a dense prompt becomes logits of this magnitude (SAM was trained on its
# own low-res logits, which sit around +-10 inside/outside a confident mask).
BINARY_MASK_LOGIT = 8.0
# Answers remembered per predictor: the click handling and propagation ask the same prompt of a
# slice more than once (candidate regions with one box, a re-click, undo and click again); the
# engine is deterministic, so a remembered answer is the answer. ~0.5 MB each at 512x512.
REMEMBERED_ANSWERS = 64


@dataclass
class SlicePrediction:
    """One slice's answer: ``mask`` (rows, columns) bool at native resolution, the decoder's
    predicted IoU, and its low-res logits (reusable as the next dense prompt)."""

    mask: np.ndarray
    predicted_iou: float
    lowres_logits: np.ndarray


class SliceEmbeddingCache:
    """LRU cache of slice embeddings (each engine's own arrays or tensors: anything with ``nbytes``)
    bounded in bytes; thread-safe."""

    def __init__(self, max_bytes: int = 512 * 1024 * 1024) -> None:
        self.max_bytes = int(max_bytes)
        self._items: "OrderedDict[Hashable, Any]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Optional[Any]:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, embedding: Any) -> None:
        size = int(embedding.nbytes)
        with self._lock:
            if key in self._items:
                return
            self._items[key] = embedding
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= int(old.nbytes)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


def engine_prompts(prompt: SlicePrompt, transform: SliceToModelTransform
                   ) -> Tuple[Optional[Tuple[np.ndarray, np.ndarray]], Optional[np.ndarray]]:
    """``prompt``'s clicks ((1, N, 2) coordinates, (1, N) labels) and box ((1, 4)) in the model's
    frame, as every engine's ``decode`` takes them (None where the prompt has none)."""
    points = boxes = None
    if prompt.has_points:
        coords, labels = prompt.points_and_labels()
        points = (transform.points_to_model(coords)[None], np.asarray(labels)[None])
    if prompt.box is not None:
        boxes = transform.box_to_model(np.asarray(prompt.box))[None]
    return points, boxes


def volume_fingerprint(volume: np.ndarray) -> str:
    """Content identity of a volume: equal arrays share cached embeddings, edited ones do not."""
    digest = hashlib.sha1(f"{volume.shape}|{volume.dtype}".encode())
    digest.update(np.ascontiguousarray(volume).data)
    return digest.hexdigest()


class SAMIHSPredictor:
    """Prompts -> masks on the slices of one CT volume (slices, rows, columns) in HU, with the
    slice embeddings cached (a :class:`SAMIHSLib.interaction.session.HemorrhageSession` holds the edits)."""

    def __init__(self, model: Union["SegmentAnythingModel", ModelSummary], cache: Optional[SliceEmbeddingCache] = None,
                 engine=None) -> None:
        """``engine``: an :mod:`SAMIHSLib.engines` backend running ``model`` (default PyTorch, which
        needs the loaded model; a CPU engine on cached graphs needs only its summary)."""
        if engine is None:
            from SAMIHSLib.engines import TorchEngine

            engine = TorchEngine(model)  # puts the model in eval mode
        self.model = model
        self.engine = engine
        self.cache = cache if cache is not None else SliceEmbeddingCache()
        self.volume_hu: Optional[np.ndarray] = None
        self.spacing_zyx: Tuple[float, float, float] = (1.0, 1.0, 1.0)
        self._fingerprint = ""
        self._model_lock = threading.RLock()  # one model, many callers (UI + background encoder)
        self._denoised: "OrderedDict[int, np.ndarray]" = OrderedDict()
        self._head_area: dict = {}
        self._answers: "OrderedDict[Hashable, SlicePrediction]" = OrderedDict()
        self.remembered_answers = REMEMBERED_ANSWERS  # 0: ask the engine every time
        self.encoder_calls = 0
        self.decoder_calls = 0
        self._second_opinion: Optional["SAMIHSPredictor"] = None
        self._second_opinion_loader: Optional[Callable[[], "SAMIHSPredictor"]] = None

    # -- the volume ---------------------------------------------------------------------------
    def set_volume(self, volume_hu: np.ndarray, spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0)) -> None:
        """Use ``volume_hu`` ((slices, rows, columns) or one (rows, columns) slice, in HU).

        ``spacing_zyx`` is the voxel size in mm (slice, row, column). Nothing is encoded yet.
        """
        volume = validate_ct_volume(volume_hu)
        if len(spacing_zyx) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing_zyx):
            raise InputError(f"Voxel spacing must be three positive numbers in mm, got {tuple(spacing_zyx)}.")
        self.volume_hu = volume
        self.spacing_zyx = tuple(float(s) for s in spacing_zyx)  # type: ignore[assignment]
        self._fingerprint = volume_fingerprint(volume)
        self._denoised = OrderedDict()
        self._head_area = {}
        if self._second_opinion is not None:
            self._second_opinion._share_volume_of(self)

    def _share_volume_of(self, other: "SAMIHSPredictor") -> None:
        """Use ``other``'s checked volume, its fingerprint and its filtered slices and head areas
        (a second opinion works on its model's volume: nothing to check, hash or filter twice)."""
        self.volume_hu, self.spacing_zyx, self._fingerprint = other.volume_hu, other.spacing_zyx, other._fingerprint
        self._denoised, self._head_area = other._denoised, other._head_area

    # -- the second opinion ---------------------------------------------------------------------
    @property
    def second_opinion(self) -> Optional["SAMIHSPredictor"]:
        """The model a click-trained one was fine-tuned from, asked when this one's answer misses a
        click (:meth:`SAMIHSLib.interaction.click_segmentation.ClickSegmenter.segment`); None: no
        one. One given as a loader (:func:`add_second_opinion`, ``when_needed``) loads here."""
        if self._second_opinion is None and self._second_opinion_loader is not None:
            loader, self._second_opinion_loader = self._second_opinion_loader, None
            self.second_opinion = loader()
        return self._second_opinion

    @second_opinion.setter
    def second_opinion(self, predictor: Optional["SAMIHSPredictor"]) -> None:
        self._second_opinion = predictor
        if predictor is not None and self.volume_hu is not None:
            predictor._share_volume_of(self)

    @property
    def second_opinion_loaded(self) -> bool:
        """Whether a second opinion is in memory (a loader given but not yet used: False)."""
        return self._second_opinion is not None

    def asked(self) -> List["SAMIHSPredictor"]:
        """This predictor and its second opinion where one is loaded: every model a click may have
        run, for counting calls or forgetting answers (never loads one)."""
        return [self] + ([self._second_opinion] if self._second_opinion is not None else [])

    def denoised_slice(self, slice_index: int) -> np.ndarray:
        """Slice ``slice_index`` in HU after a 3x3 median (cached for the last 64 slices used)."""
        index = validate_slice_index(slice_index, self.num_slices)
        if index not in self._denoised:
            self._denoised[index] = denoise_slice(self.volume_hu[index])  # type: ignore[index]
            while len(self._denoised) > 64:
                self._denoised.popitem(last=False)
        return self._denoised[index]

    def denoised_hu_at(self, slice_index: int, column: int, row: int) -> float:
        """``denoised_slice(slice_index)[row, column]``, without filtering the whole slice when it is
        not cached (a click needs its own pixel's HU: 14 ms of a 40 ms click otherwise)."""
        index = validate_slice_index(slice_index, self.num_slices)
        if index in self._denoised:
            return float(self._denoised[index][row, column])
        return denoised_value_at(self.volume_hu[index], row, column)  # type: ignore[index]

    def head_area_px(self, slice_index: int) -> int:
        """Pixels of the head's cross-section on slice ``slice_index`` (computed once per slice)."""
        index = validate_slice_index(slice_index, self.num_slices)
        if index not in self._head_area:
            self._head_area[index] = head_area_px(self.denoised_slice(index))
        return self._head_area[index]

    @property
    def num_slices(self) -> int:
        self._require_volume()
        return self.volume_hu.shape[0]  # type: ignore[union-attr]

    @property
    def slice_shape(self) -> Tuple[int, int]:
        self._require_volume()
        return tuple(self.volume_hu.shape[1:])  # type: ignore[union-attr,return-value]

    def _require_volume(self) -> None:
        if self.volume_hu is None:
            raise RuntimeError("Call set_volume() before prompting.")

    @property
    def transform(self) -> SliceToModelTransform:
        return SliceToModelTransform(self.slice_shape, self.model.config.image_size)

    # -- the expensive half ---------------------------------------------------------------------
    def cache_key(self, slice_index: int) -> Hashable:
        return (self._fingerprint, int(slice_index), self.model.config.preprocessing.cache_key(), id(self.model),
                self.engine.name)

    def is_encoded(self, slice_index: int) -> bool:
        return self.cache_key(slice_index) in self.cache

    def encode_slice(self, slice_index: int) -> Any:
        """The (1, 256, 64, 64) embedding of a slice (in the engine's form), computed once and then cached."""
        index = validate_slice_index(slice_index, self.num_slices)
        key = self.cache_key(index)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        with self._model_lock:
            cached = self.cache.get(key)  # another thread may have encoded it while we waited
            if cached is not None:
                return cached
            image01 = encoder_input(self.volume_hu, index, self.model.config.preprocessing)  # type: ignore[arg-type]
            embedding = self.engine.encode(self.transform.image_to_model(image01))
            self.encoder_calls += 1
            self.cache.put(key, embedding)
        return embedding

    @property
    def precision(self) -> str:
        """The arithmetic the model runs in: "fp32", "bf16" or "fp16" (what reports say)."""
        return getattr(self.engine, "precision", "fp32")

    @property
    def engine_name(self) -> str:
        """The engine's registry name (``SAMIHSLib.engines.ENGINES``), e.g. "openvino"."""
        return getattr(self.engine, "name", "torch")

    @property
    def device_type(self) -> str:
        """Where the model runs: "cpu", "cuda" or "mps"."""
        return self.engine.device_type

    @property
    def engine_description(self) -> str:
        """Engine, precision and device in words, e.g. "openvino-bf16 (bf16 on cpu)"."""
        return f"{self.engine_name} ({self.precision} on {self.device_type})"

    # -- the cheap half -------------------------------------------------------------------------
    def predict(self, slice_index: int, prompt: SlicePrompt) -> SlicePrediction:
        """Segment one slice from ``prompt`` (pixel coordinates of that slice)."""
        if prompt.is_empty():
            raise InputError("A prompt needs at least one click, a box or a mask.")
        embedding = self.encode_slice(slice_index)
        for x, y in prompt.all_points():
            validate_point_in_slice(x, y, self.slice_shape)
        if prompt.box is not None:
            self._validate_box(prompt.box)
        key = (self.cache_key(slice_index), prompt.signature())
        remembered = self._answers.get(key)
        if remembered is None:
            remembered = self._decode(embedding, prompt)
            self._answers[key] = remembered
            while len(self._answers) > self.remembered_answers:
                self._answers.popitem(last=False)
        else:
            self._answers.move_to_end(key)
        # copies: callers may edit the arrays they get
        return SlicePrediction(remembered.mask.copy(), remembered.predicted_iou, remembered.lowres_logits.copy())

    def _decode(self, embedding: Any, prompt: SlicePrompt) -> SlicePrediction:
        transform = self.transform
        points, boxes = engine_prompts(prompt, transform)
        mask_input = None if prompt.mask_input is None else self._dense_prompt(prompt.mask_input)
        with self._model_lock:
            lowres, iou = self.engine.decode(embedding, points, boxes, mask_input)
            self.decoder_calls += 1
        logits = transform.lowres_logits_to_original(lowres)[0, 0]
        return SlicePrediction(mask=logits > 0, predicted_iou=float(iou[0, 0]),
                               lowres_logits=np.array(lowres[0, 0], dtype=np.float32))

    def _dense_prompt(self, mask: np.ndarray) -> np.ndarray:
        mask = np.asarray(mask)
        lowres_size = self.model.lowres_mask_size
        if mask.shape == (lowres_size, lowres_size) and mask.dtype != bool:
            return mask.astype(np.float32)[None, None]  # already decoder logits
        if mask.shape != self.slice_shape:
            raise InputError(f"The mask prompt has shape {mask.shape}; the slice is {self.slice_shape}.")
        logits = np.where(mask > 0, BINARY_MASK_LOGIT, -BINARY_MASK_LOGIT).astype(np.float32)
        return self.transform.mask_to_model_lowres(logits, lowres_size)

    def _validate_box(self, box: Sequence[float]) -> None:
        x0, y0, x1, y1 = (float(v) for v in box)
        validate_point_in_slice(x0, y0, self.slice_shape, "box corner")
        validate_point_in_slice(x1, y1, self.slice_shape, "box corner")
        if x1 < x0 or y1 < y0:
            raise InputError(f"The box ({x0}, {y0}, {x1}, {y1}) must be given as x0 <= x1, y0 <= y1.")


def check_threads(threads: int, name: str = "threads") -> None:
    """Refuse a negative thread count (0 means all physical cores); ``name`` is how the caller calls it."""
    if threads < 0:
        raise ValueError(f"{name} must be 0 (all physical cores) or a positive number, not {threads}.")


def load_predictor(model_spec: str, device: str = "auto", engine: str = "auto", threads: int = 0,
                   announce: Optional[Callable[[str], None]] = None) -> SAMIHSPredictor:
    """A predictor for ``model_spec`` (a model name or checkpoint path) on ``device`` with
    ``engine`` (``auto``: :func:`SAMIHSLib.engines.resolve_engine_name`) and ``threads`` CPU threads (0: all
    physical cores). ``announce`` hears about a one-time ONNX export. A click-trained LiteMedSAM gets
    lite-base as its second opinion. The CLI, the batch and its Ray workers all make their predictor here."""
    check_threads(threads)
    model, made = model_and_engine(model_spec, device, engine, threads or None, announce)
    predictor = SAMIHSPredictor(model, engine=made)
    if fine_tuned_from_lite_base(model):  # lite-base answers the clicks it misses: loaded at the first one
        add_second_opinion(predictor, when_needed=True, threads=threads or None)
    if made.name.endswith("bf16") and announce is not None:
        announce("bf16 arithmetic: about 2x faster on this CPU; its masks differ slightly from exact fp32 "
                 "(--engine openvino runs fp32)")
    return predictor


def model_and_engine(model_spec: str, device: str = "auto", engine: str = "auto", threads: Optional[int] = None,
                     announce: Optional[Callable[[str], None]] = None):
    """(the model, or on a CPU engine its summary; the engine that runs it). A CPU engine starts from the
    graphs an earlier start of the same model files recorded, without torch
    (:mod:`SAMIHSLib.engines.warm_start`); otherwise the model is loaded, and a CPU engine's graphs are
    exported and checked once, then recorded for the next start."""
    from SAMIHSLib.device import only_cpu_here
    from SAMIHSLib.engines.warm_start import remember_graphs, warm_engine

    def tell(name: str) -> None:
        if name != "torch" and announce is not None:
            announce(f"engine {name} (the model is exported to ONNX once and cached; the first run takes longer)")

    warm = warm_engine(str(model_spec), engine, threads) if only_cpu_here(device) else None
    if warm is not None:
        tell(warm[1].name)
        return warm
    from SAMIHSLib.engines import make_engine, resolve_engine_name
    from SAMIHSLib.models import load_model

    if threads:
        import torch

        torch.set_num_threads(threads)
    model = load_model(model_spec, device=device)
    name = resolve_engine_name(engine, model.device.type, model)
    tell(name)
    made = make_engine(model, name, threads=threads)
    if name != "torch":
        remember_graphs(str(model_spec), model, made.graph_dir)
    return model, made


def fine_tuned_from_lite_base(model: Union["SegmentAnythingModel", ModelSummary]) -> bool:
    """Whether ``model`` is a click-trained LiteMedSAM (TinyViT): lite-base, the model it was
    fine-tuned from, can then answer the clicks it misses (:func:`add_second_opinion`)."""
    return model.config.trained_with_clicks and model.config.backbone == "tiny_vit"


def add_second_opinion(predictor: SAMIHSPredictor, base_model: Optional["SegmentAnythingModel"] = None,
                       base_engine=None, when_needed: bool = False, threads: Optional[int] = None) -> SAMIHSPredictor:
    """Let ``predictor``'s click handling ask lite-base, the model it was fine-tuned from, when its
    own answer misses a click. ``base_model`` / ``base_engine``: loaded ones to share (default:
    loaded now, or with ``when_needed`` at the first missed click, on the same kind of engine with
    ``threads``); the embedding cache is shared. Returns ``predictor``."""
    def load() -> SAMIHSPredictor:
        if base_model is None and base_engine is None:
            model, engine = model_and_engine("lite-base", predictor.device_type, predictor.engine_name, threads)
        else:
            from SAMIHSLib.engines import make_engine
            from SAMIHSLib.models import load_model

            model = base_model if base_model is not None else load_model("lite-base", device=predictor.device_type)
            engine = base_engine if base_engine is not None else make_engine(model, predictor.engine_name, threads=threads)
        return SAMIHSPredictor(model, cache=predictor.cache, engine=engine)

    if when_needed:
        predictor._second_opinion_loader = load
    else:
        predictor.second_opinion = load()
    return predictor
