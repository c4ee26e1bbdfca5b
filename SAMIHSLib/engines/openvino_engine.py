"""The OpenVINO engine: the cached ONNX graphs compiled for the CPU, in exact fp32 or, where the
CPU has native bf16 (AVX-512 BF16 / AMX), in bf16.

Precision policy: fp32 unless asked (``auto``'s choice: :mod:`SAMIHSLib.engines.precision`);
bf16 only on CPUs that report it, checked once per runtime and CPU against PyTorch fp32 masks on a
synthetic head-CT slice (a graph that does not work is refused). Its agreement on real CT is
asserted by a test on the shared ct-ich slices, and its accuracy judged on the tables.
"""

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional, Tuple

import numpy as np

from SAMIHSLib.cpu_info import physical_cores
from SAMIHSLib.engines.errors import EngineError
from SAMIHSLib.engines.precision import cpu_has_native_bf16
from SAMIHSLib.engines.onnx_graphs import (MIN_REDUCED_PRECISION_AGREEMENT, EngineVerificationError, cached_onnx_graphs,
                                           decoder_inputs, engine_identity, float32_array, verify_against_torch,
                                           verify_once)

PRECISIONS = ("f32", "bf16")
COMPILED_CACHE = "openvino-compiled"

if TYPE_CHECKING:
    from SAMIHSLib.models.sam import SegmentAnythingModel


def openvino_version() -> str:
    """The installed OpenVINO runtime's version."""
    import openvino as ov

    return ov.get_version()


class PrecisionNotSupportedError(EngineError):
    """The CPU cannot run the requested precision natively."""


def compile_or_import(core, graph: Path, settings: Dict[str, object]):
    """``graph`` compiled for this CPU with ``settings``; the compiled form is kept beside the
    graph (written atomically, keyed by settings, OpenVINO version and CPU), so a later start
    imports it instead of compiling again (about 3x faster). A blob that does not import (another
    OpenVINO, a damaged file) is compiled again and replaced."""
    from SAMIHSLib.cpu_info import cpu_description
    from SAMIHSLib.io.atomic_write import write_bytes_atomic

    key = hashlib.sha256(f"{sorted(settings.items())}|{openvino_version()}|{cpu_description()}".encode())
    blob = graph.parent / COMPILED_CACHE / f"{graph.stem}-{key.hexdigest()[:16]}.blob"
    if blob.is_file():
        try:
            return core.import_model(blob.read_bytes(), "CPU", settings)
        except Exception:  # noqa: BLE001 - any failure to import means: compile afresh
            pass
    compiled = core.compile_model(str(graph), "CPU", settings)
    try:
        write_bytes_atomic(blob, compiled.export_model().getvalue())
    except OSError:  # a read-only cache: compile every time
        pass
    return compiled


class OpenVinoEngine:
    """Encoder and decoder graphs compiled by OpenVINO for the CPU at ``precision``."""

    def __init__(self, encoder_path: Path, decoder_path: Path, threads: Optional[int] = None,
                 precision: str = "f32") -> None:
        import openvino as ov

        if precision not in PRECISIONS:
            raise ValueError(f"Unknown precision {precision!r}; use one of {PRECISIONS}.")
        if precision == "bf16" and not cpu_has_native_bf16():
            raise PrecisionNotSupportedError("This CPU has no native bf16 (AVX-512 BF16 or AMX); use the "
                                             "'openvino' (fp32) or 'onnxruntime' engine.")
        self.name = "openvino" if precision == "f32" else f"openvino-{precision}"
        self.precision = "fp32" if precision == "f32" else precision  # as reports name it
        core = ov.Core()
        settings = {"INFERENCE_NUM_THREADS": int(threads or physical_cores()),
                    "INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        self._encoder = compile_or_import(core, Path(encoder_path), settings)
        self._decoder = compile_or_import(core, Path(decoder_path), settings)
        # One request each: encoding runs on the background thread, decoding on the caller's.
        self._encode_request = self._encoder.create_infer_request()
        self._decode_request = self._decoder.create_infer_request()
        self._mask_side = int(self._decoder.input("mask_input").get_partial_shape()[-1].get_length())
        self.device_type = "cpu"
        self.graph_dir = Path(encoder_path).parent  # where its graphs and their records are

    @staticmethod
    def runtime() -> str:
        """The runtime and its version, as the record of passed checks names it."""
        return f"openvino {openvino_version()}"

    @classmethod
    def from_model(cls, model: "SegmentAnythingModel", cache_dir: Optional[Path] = None,
                   threads: Optional[int] = None, precision: str = "f32") -> "OpenVinoEngine":
        """Compile the model's cached (or freshly exported) graphs and check them against PyTorch."""
        if precision not in PRECISIONS:  # before any export is written
            raise ValueError(f"Unknown precision {precision!r}; use one of {PRECISIONS}.")
        runtime = cls.runtime()
        # fresh exports are checked in exact fp32 before they are cached for every CPU backend; the pass is
        # recorded with them, so the fp32 engine built next does not check the same graphs again
        encoder, decoder = cached_onnx_graphs(model, cache_dir, lambda e, d: verify_once(
            e.parent, engine_identity("openvino", runtime), lambda: verify_against_torch(cls(e, d, threads, "f32"), model)))
        engine = cls(encoder, decoder, threads, precision)
        try:
            if precision == "f32":
                check = lambda: verify_against_torch(engine, model)  # noqa: E731
            else:
                check = lambda: verify_against_torch(  # noqa: E731
                    engine, model, max_embedding_difference=None, min_mask_agreement=MIN_REDUCED_PRECISION_AGREEMENT)
            verify_once(encoder.parent, engine_identity(engine.name, runtime), check)
        except EngineVerificationError as error:
            if precision == "f32":
                raise
            raise EngineVerificationError(f"{error} {precision} is not accurate enough for this model; use the "
                                          "'openvino' (fp32) engine.") from error
        return engine

    def encode(self, image01: np.ndarray) -> np.ndarray:
        result = self._encode_request.infer({"image": float32_array(image01)})
        return np.array(result[self._encoder.output(0)], dtype=np.float32)

    def decode(self, embedding: np.ndarray, points: Optional[Tuple[np.ndarray, np.ndarray]] = None,
               boxes: Optional[np.ndarray] = None, mask_input: Optional[np.ndarray] = None,
               multimask_output: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        result = self._decode_request.infer(decoder_inputs(embedding, points, boxes, mask_input, multimask_output,
                                                           self._mask_side))
        return np.array(result[self._decoder.output(0)]), np.array(result[self._decoder.output(1)])
