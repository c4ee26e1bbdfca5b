"""The ONNX Runtime engine: exact fp32 on CPU, graphs exported once per checkpoint and cached
on disk (keyed by the weights' hash), checked against PyTorch when first built."""

import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from ..models.sam import SegmentAnythingModel
from .export import export_onnx, model_fingerprint

DEFAULT_CACHE = Path(os.environ.get("SAMIHS_ENGINE_CACHE", Path.home() / ".cache" / "samihs" / "engines"))
MAX_EMBEDDING_DIFFERENCE = 1e-3
MIN_MASK_AGREEMENT = 0.99


class EngineVerificationError(RuntimeError):
    """An exported graph does not reproduce PyTorch; it is deleted and not used."""


class OnnxRuntimeEngine:
    name = "onnxruntime"

    def __init__(self, encoder_path: Path, decoder_path: Path, threads: Optional[int] = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()  # physical cores by default
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(encoder_path), options, providers=providers)
        self.decoder = ort.InferenceSession(str(decoder_path), options, providers=providers)
        self.device = torch.device("cpu")

    @classmethod
    def from_model(cls, model: SegmentAnythingModel, cache_dir: Optional[Path] = None,
                   threads: Optional[int] = None) -> "OnnxRuntimeEngine":
        """Load cached graphs for ``model`` or export, verify and cache them."""
        directory = Path(cache_dir or DEFAULT_CACHE) / model_fingerprint(model)
        encoder, decoder = directory / "encoder.onnx", directory / "decoder.onnx"
        if encoder.is_file() and decoder.is_file():
            return cls(encoder, decoder, threads)
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="export-", dir=directory.parent))
        try:
            export_onnx(model, staging)
            engine = cls(staging / "encoder.onnx", staging / "decoder.onnx", threads)
            verify_against_torch(engine, model)
            staging.rename(directory) if not directory.exists() else shutil.rmtree(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return cls(encoder, decoder, threads)

    def encode(self, image01: torch.Tensor) -> torch.Tensor:
        (embedding,) = self.encoder.run(None, {"image": image01.detach().cpu().numpy().astype(np.float32)})
        return torch.from_numpy(embedding)

    def decode(self, embedding: torch.Tensor, points: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
               boxes: Optional[torch.Tensor] = None, mask_input: Optional[torch.Tensor] = None,
               multimask_output: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        if multimask_output:
            raise NotImplementedError("The ONNX decoder graph returns the single-mask output only.")
        coords, labels = prompt_arrays(points, boxes)
        side = self.decoder.get_inputs()[3].shape[-1]
        mask = np.zeros((1, 1, side, side), np.float32) if mask_input is None else \
            mask_input.detach().cpu().numpy().astype(np.float32)
        lowres, iou = self.decoder.run(None, {
            "embedding": embedding.detach().cpu().numpy().astype(np.float32), "point_coords": coords,
            "point_labels": labels, "mask_input": mask,
            "has_mask_input": np.array([0.0 if mask_input is None else 1.0], np.float32)})
        return torch.from_numpy(lowres), torch.from_numpy(iou)


def prompt_arrays(points, boxes) -> Tuple[np.ndarray, np.ndarray]:
    """Points (+ box corners labelled 2/3, or a padding point labelled -1 when there is no box),
    in the order segment-anything's prompt encoder uses."""
    coords, labels = [], []
    if points is not None:
        coords.append(points[0].detach().cpu().numpy().reshape(-1, 2))
        labels.append(points[1].detach().cpu().numpy().reshape(-1).astype(np.float32))
    if boxes is not None:
        coords.append(boxes.detach().cpu().numpy().reshape(2, 2))
        labels.append(np.array([2.0, 3.0], np.float32))
    else:
        coords.append(np.zeros((1, 2), np.float32))
        labels.append(np.array([-1.0], np.float32))
    return (np.concatenate(coords)[None].astype(np.float32), np.concatenate(labels)[None].astype(np.float32))


def verify_against_torch(engine: OnnxRuntimeEngine, model: SegmentAnythingModel, seed: int = 0) -> None:
    """Embedding and masks of the exported graphs must match PyTorch on a test image."""
    generator = torch.Generator().manual_seed(seed)
    size = model.config.image_size
    image = torch.rand(1, 3, size, size, generator=generator)
    with torch.inference_mode():
        reference = model.encode(image.to(model.device)).float().cpu()
        ours = engine.encode(image)
        difference = float((reference - ours).abs().max())
        if difference > MAX_EMBEDDING_DIFFERENCE:
            raise EngineVerificationError(f"ONNX encoder differs from PyTorch by {difference:.2e}.")
        prompts = [(None, torch.tensor([[size * 0.3, size * 0.3, size * 0.6, size * 0.7]])),
                   ((torch.tensor([[[size * 0.5, size * 0.5], [size * 0.2, size * 0.8]]]), torch.tensor([[1, 0]])), None)]
        for points, boxes in prompts:
            expected, _ = model.decode(reference.to(model.device), points, boxes)
            got, _ = engine.decode(reference, points, boxes)
            a, b = expected.cpu() > 0, got > 0
            agreement = 2 * float((a & b).sum()) / max(1.0, float(a.sum() + b.sum()))
            if a.sum() + b.sum() and agreement < MIN_MASK_AGREEMENT:
                raise EngineVerificationError(f"ONNX decoder masks agree with PyTorch at Dice {agreement:.3f}.")
