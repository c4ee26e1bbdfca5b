"""The ONNX Runtime engine: exact fp32 on CPU, on the shared ONNX graphs (``onnx_graphs``)."""

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Tuple

import numpy as np

from SAMIHSLib.cpu_info import physical_cores
from SAMIHSLib.engines.onnx_graphs import (cached_onnx_graphs, decoder_inputs, engine_identity, float32_array,
                                           verify_against_torch, verify_once)

if TYPE_CHECKING:
    from SAMIHSLib.models.sam import SegmentAnythingModel


class OnnxRuntimeEngine:
    name = "onnxruntime"
    precision = "fp32"

    def __init__(self, encoder_path: Path, decoder_path: Path, threads: Optional[int] = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or physical_cores()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(encoder_path), options, providers=providers)
        self.decoder = ort.InferenceSession(str(decoder_path), options, providers=providers)
        self.device_type = "cpu"
        self.graph_dir = Path(encoder_path).parent  # where its graphs and their records are

    @staticmethod
    def runtime() -> str:
        """The runtime and its version, as the record of passed checks names it."""
        import onnxruntime as ort

        return f"onnxruntime {ort.__version__}"

    @classmethod
    def from_model(cls, model: "SegmentAnythingModel", cache_dir: Optional[Path] = None,
                   threads: Optional[int] = None) -> "OnnxRuntimeEngine":
        """Load cached graphs for ``model`` or export, verify and cache them."""
        identity = engine_identity(cls.name, cls.runtime())
        # a fresh export's check is recorded with the graphs: the engine built next does not repeat it
        encoder, decoder = cached_onnx_graphs(model, cache_dir, lambda e, d: verify_once(
            e.parent, identity, lambda: verify_against_torch(cls(e, d, threads), model)))
        engine = cls(encoder, decoder, threads)
        verify_once(encoder.parent, identity, lambda: verify_against_torch(engine, model))
        return engine

    def encode(self, image01: np.ndarray) -> np.ndarray:
        (embedding,) = self.encoder.run(None, {"image": float32_array(image01)})
        return embedding

    def decode(self, embedding: np.ndarray, points: Optional[Tuple[np.ndarray, np.ndarray]] = None,
               boxes: Optional[np.ndarray] = None, mask_input: Optional[np.ndarray] = None,
               multimask_output: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        inputs = decoder_inputs(embedding, points, boxes, mask_input, multimask_output,
                                self.decoder.get_inputs()[3].shape[-1])
        lowres, iou = self.decoder.run(None, inputs)
        return lowres, iou
