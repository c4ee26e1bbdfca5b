"""The ONNX graphs both CPU engines run (ONNX Runtime and OpenVINO): exported once per checkpoint,
cached on disk keyed by the weights' hash with each graph's SHA-256, checked against PyTorch before
they are cached; and the conversion of prompts to the decoder graph's inputs."""

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Optional, Set, Tuple

import numpy as np

from SAMIHSLib.engines.errors import EngineError

if TYPE_CHECKING:  # exporting and checking need torch; running cached graphs does not
    from SAMIHSLib.models.sam import SegmentAnythingModel

# The exporter's version: graphs exported by an older one are exported again (export.py).
EXPORT_VERSION = 3  # 2: few-token cross-attentions in the decoder graph; 3: its one mask as a 1x1 convolution
DEFAULT_CACHE = Path(os.environ.get("SAMIHS_ENGINE_CACHE", Path.home() / ".cache" / "samihs" / "engines"))
MAX_EMBEDDING_DIFFERENCE = 1e-3
MIN_MASK_AGREEMENT = 0.99
# bf16 is judged by its accuracy on the cross-validation tables (training/results/precision/);
# on the one synthetic slice checked at build time it only has to be a working graph.
MIN_REDUCED_PRECISION_AGREEMENT = 0.95


class EngineVerificationError(EngineError):
    """An exported graph does not reproduce PyTorch; it is deleted and not used."""


def decoder_inputs(embedding: np.ndarray, points: Optional[Tuple[np.ndarray, np.ndarray]],
                   boxes: Optional[np.ndarray], mask_input: Optional[np.ndarray], multimask_output: bool,
                   mask_side: int) -> Dict[str, np.ndarray]:
    """The exported decoder graph's inputs for one prompt (its single-mask output only)."""
    if multimask_output:
        raise NotImplementedError("The exported decoder graph returns the single-mask output only.")
    coords, labels = prompt_arrays(points, boxes)
    mask = np.zeros((1, 1, mask_side, mask_side), np.float32) if mask_input is None else \
        float32_array(mask_input)
    return {"embedding": float32_array(embedding), "point_coords": coords,
            "point_labels": labels, "mask_input": mask,
            "has_mask_input": np.array([0.0 if mask_input is None else 1.0], np.float32)}


def float32_array(values: np.ndarray) -> np.ndarray:
    """A contiguous float32 view of ``values``; copied only when it must be (a click should not copy
    the 4 MB embedding)."""
    return np.ascontiguousarray(values, dtype=np.float32)


GRAPH_MANIFEST = "sha256.json"
# The engines (runtime, version, CPU) that passed verify_against_torch on these graphs: the check
# is deterministic for a given graph, runtime and CPU, so a later start skips it (about 1.5 s).
VERIFIED_RECORD = "verified.json"


def _graph_hashes(directory: Path) -> Dict[str, str]:
    from SAMIHSLib.models.files import sha256_file

    return {name: sha256_file(directory / name) for name in ("encoder.onnx", "decoder.onnx")}


def cache_is_intact(directory: Path) -> bool:
    """Whether both cached graphs exist and match the SHA-256 recorded when they were verified."""
    try:
        recorded = json.loads((directory / GRAPH_MANIFEST).read_text())
        return recorded == _graph_hashes(directory)
    except (OSError, ValueError):
        return False


def cached_onnx_graphs(model: "SegmentAnythingModel", cache_dir: Optional[Path],
                       verify: Callable[[Path, Path], None]) -> Tuple[Path, Path]:
    """(encoder.onnx, decoder.onnx) of ``model``, from the cache (keyed by the weights' hash) or
    freshly exported, checked by ``verify(encoder, decoder)`` before they are cached with their
    SHA-256; a cached graph that no longer matches its hash (edited, truncated) is exported again."""
    from SAMIHSLib.engines.export import export_onnx, model_fingerprint

    directory = Path(cache_dir or DEFAULT_CACHE) / model_fingerprint(model)
    encoder, decoder = directory / "encoder.onnx", directory / "decoder.onnx"
    if cache_is_intact(directory):
        return encoder, decoder
    if directory.exists():
        shutil.rmtree(directory, ignore_errors=True)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="export-", dir=directory.parent))
    try:
        export_onnx(model, staging)
        verify(staging / "encoder.onnx", staging / "decoder.onnx")
        (staging / GRAPH_MANIFEST).write_text(json.dumps(_graph_hashes(staging)))
        staging.rename(directory) if not directory.exists() else shutil.rmtree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return encoder, decoder


def engine_identity(engine_name: str, runtime_version: str) -> str:
    """What decides an engine's numbers on given graphs: engine, runtime version and CPU."""
    from SAMIHSLib.cpu_info import cpu_description

    return f"{engine_name} | {runtime_version} | {cpu_description()}"


def passed_checks(graph_dir: Path) -> Set[str]:
    """The engine identities (:func:`engine_identity`) recorded as having passed the check against
    PyTorch on the graphs in ``graph_dir`` (none when the record is missing or unreadable)."""
    try:
        return set(json.loads((graph_dir / VERIFIED_RECORD).read_text()))
    except (OSError, ValueError, TypeError):
        return set()


def verify_once(graph_dir: Path, identity: str, verify: Callable[[], None]) -> bool:
    """Run ``verify`` unless ``identity`` already passed it on the graphs in ``graph_dir``; record
    a pass (best effort: a read-only cache verifies every time). Returns whether it ran."""
    from SAMIHSLib.io.atomic_write import write_text_atomic

    passed = passed_checks(graph_dir)
    if identity in passed:
        return False
    verify()
    try:
        write_text_atomic(graph_dir / VERIFIED_RECORD, json.dumps(sorted(passed | {identity}), indent=1))
    except OSError:
        pass
    return True


def prompt_arrays(points, boxes) -> Tuple[np.ndarray, np.ndarray]:
    """Points (+ box corners labelled 2/3, or a padding point labelled -1 when there is no box),
    in the order segment-anything's prompt encoder uses."""
    coords, labels = [], []
    if points is not None:
        coords.append(np.asarray(points[0]).reshape(-1, 2))
        labels.append(np.asarray(points[1]).reshape(-1).astype(np.float32))
    if boxes is not None:
        coords.append(np.asarray(boxes).reshape(2, 2))
        labels.append(np.array([2.0, 3.0], np.float32))
    else:
        coords.append(np.zeros((1, 2), np.float32))
        labels.append(np.array([-1.0], np.float32))
    return (np.concatenate(coords)[None].astype(np.float32), np.concatenate(labels)[None].astype(np.float32))


def verification_case(model: "SegmentAnythingModel", seed: int = 0):
    """A synthetic head-CT slice with a bleed, as the model sees it, and prompts on the bleed
    (its box; a click inside plus a negative click outside), in model coordinates."""
    from SAMIHSLib.phantom import make_head_phantom
    from SAMIHSLib.imaging.preprocessing import normalize_slice
    from SAMIHSLib.imaging.transforms import SliceToModelTransform

    phantom = make_head_phantom(shape=(1, 512, 512), seed=seed)
    bleed = phantom.bleed_mask(0)[0]
    transform = SliceToModelTransform(bleed.shape, model.config.image_size)
    image = transform.image_to_model(normalize_slice(phantom.volume_hu[0], model.config.preprocessing))
    rows, cols = np.nonzero(bleed)
    box = transform.box_to_model(np.array([cols.min(), rows.min(), cols.max(), rows.max()], float))
    inside = (float(np.median(cols)), float(np.median(rows)))
    outside = (float(cols.min()) - 40.0, float(rows.min()) - 40.0)
    points = transform.points_to_model(np.array([inside, outside]))
    prompts = [(None, box[None].astype(np.float32)),
               ((points[None].astype(np.float32), np.array([[1, 0]], np.int64)), None)]
    return image, prompts


def verify_against_torch(engine, model: "SegmentAnythingModel", seed: int = 0,
                         max_embedding_difference: Optional[float] = MAX_EMBEDDING_DIFFERENCE,
                         min_mask_agreement: float = MIN_MASK_AGREEMENT) -> None:
    """``engine`` must reproduce PyTorch fp32 on a synthetic head-CT slice: the embedding within
    ``max_embedding_difference`` (None: not checked, for reduced precision) and the masks from its
    own embedding at Dice >= ``min_mask_agreement``."""
    from SAMIHSLib.engines.torch_engine import TorchEngine

    image, prompts = verification_case(model, seed)
    reference_engine = TorchEngine(model)
    reference = reference_engine.encode(image)
    ours = engine.encode(image)
    difference = float(np.abs(reference.cpu().numpy() - np.asarray(ours)).max())
    if max_embedding_difference is not None and difference > max_embedding_difference:
        raise EngineVerificationError(f"{engine.name} encoder differs from PyTorch by {difference:.2e}.")
    for points, boxes in prompts:
        expected, _ = reference_engine.decode(reference, points, boxes)
        got, _ = engine.decode(ours, points, boxes)
        a, b = expected > 0, got > 0
        agreement = 2 * float((a & b).sum()) / max(1.0, float(a.sum() + b.sum()))
        if a.sum() + b.sum() and agreement < min_mask_agreement:
            raise EngineVerificationError(f"{engine.name} masks agree with PyTorch at Dice {agreement:.3f}.")
