"""The MRML logic of SAMIHS: volume, markups and segmentation nodes in, segment voxels out.

Qt-free: it runs inside Slicer (as the base of ``SAMIHS.SAMIHSLogic``) and in plain Python with
PyPI ``slicer-core`` (no ``slicer.app``, no ``slicer.modules``). All segmentation work is done by
SAMIHSLib; node <-> array conversion is in :mod:`SAMIHSSlicer.mrml_nodes`. SAMIHSLib (which needs
PyTorch) is imported on first use, so the module loads before its dependencies are installed.
"""

import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from SAMIHSSlicer.mrml_nodes import (VoxelExtent, control_points_ras, ct_volume_from_node, ensure_segmentation_converters,
                                     ijk_to_ras, nodes_of_class, other_segments_mask, ras_to_click, read_segment_mask,
                                     write_segment_region)

HEMORRHAGE_SEGMENT_NAME = "Hemorrhage"
HEMORRHAGE_COLOR = (0.85, 0.15, 0.15)
ProgressCallback = Callable[[int, int, str], None]
# (model spec, device) -> a loaded SAMIHSLib model; the default loads it with SAMIHSLib.models.
ModelLoader = Callable[[str, str], object]


@dataclass
class SegmentUpdate:
    """What one operation did: the segment's volume, the (k, j, i) voxel extent written, the
    predicted IoU per slice and stop reasons (axial slice numbers), and what to tell the user."""

    volume_ml: float
    extent: Optional[VoxelExtent]
    slice_iou: Dict[int, float] = field(default_factory=dict)
    stop_reasons: Dict[str, str] = field(default_factory=dict)
    message: str = ""


@dataclass
class _VolumeState:
    fingerprint: Tuple[str, int]
    stack: object  # SAMIHSLib.io.volume_io.AxialStack: the volume as axial slices
    session: object  # SAMIHSLib.interaction.session.HemorrhageSession on the stack, with its own predictor


def _load_model(spec: str, device: str):
    from SAMIHSLib.models import load_model

    return load_model(spec, device=device)


class SAMIHSMRMLLogic:
    """Click-to-segment hemorrhage on MRML nodes. One SAMIHSLib session per volume node."""

    def __init__(self, model_spec: str = "", device: str = "auto", engine: str = "auto",
                 model_loader: ModelLoader = _load_model,
                 call_on_main_thread: Optional[Callable[[Callable[[], object]], object]] = None) -> None:
        """``engine``: ``auto`` or a name of ``SAMIHSLib.engines.ENGINES``; ``model_loader`` makes
        the model from (spec, device) (tests and embedders may share one already loaded).
        ``call_on_main_thread(fn)`` runs ``fn`` on the thread that owns the scene and returns its
        result: an app that runs operations on a worker thread (the web app) passes it, so that
        every scene write (new segment, changed voxels) happens where the views render."""
        from SAMIHSLib.model_names import DEFAULT_MODEL

        self._on_main = call_on_main_thread or (lambda function: function())
        self.model_spec = model_spec or DEFAULT_MODEL
        self.device = device
        self.engine_name = engine
        self.model_loader = model_loader
        self._model = None
        self._engine = None
        self._cache = None
        self._states: Dict[str, _VolumeState] = {}
        self._lock = threading.RLock()
        ensure_segmentation_converters()

    # -- model --------------------------------------------------------------------------------
    def set_model(self, model_spec: str, device: str = "auto", engine: Optional[str] = None) -> None:
        """Use another model (a name of ``SAMIHSLib.model_names.MODEL_SPECS`` or a checkpoint path),
        device or engine; sessions restart."""
        engine = engine or self.engine_name
        if (model_spec, device, engine) != (self.model_spec, self.device, self.engine_name):
            self.model_spec, self.device, self.engine_name = model_spec, device, engine
            self._model = None
            self._engine = None
            self._states.clear()

    @property
    def model(self):
        if self._model is None:
            from SAMIHSLib.engines import make_engine
            from SAMIHSLib.interaction.predictor import SliceEmbeddingCache

            self._model = self.model_loader(self.model_spec, self.device)
            self._engine = make_engine(self._model, self.engine_name)
            self._cache = SliceEmbeddingCache()
        return self._model

    def new_predictor(self):
        """A predictor on the shared model, engine and embedding cache (keyed by volume content)."""
        from SAMIHSLib.interaction.predictor import SAMIHSPredictor

        model = self.model
        return SAMIHSPredictor(model, self._cache, engine=self._engine)

    @property
    def model_loaded(self) -> bool:
        return self._model is not None

    def device_name(self) -> str:
        return str(self.model.device)

    def start_background_encoding(self, volume_node, slice_index: int, on_encoded=None):
        """Encode the volume's slices outward from ``slice_index`` on one worker thread.

        Returns the :class:`SAMIHSLib.interaction.background_encoder.BackgroundEncoder`; call ``stop()`` on
        it when the volume changes or the module closes."""
        from SAMIHSLib.interaction.background_encoder import BackgroundEncoder

        encoder = BackgroundEncoder(self.session_for(volume_node).predictor, on_encoded)
        encoder.focus(slice_index)
        return encoder

    def slice_index_at(self, volume_node, ras_world: Sequence[float]) -> int:
        """The axial slice under a world RAS position, e.g. a slice view's centre."""
        return self.click_at(volume_node, ras_world)[0]

    def click_at(self, volume_node, ras_world: Sequence[float]) -> Tuple[int, float, float]:
        """World RAS mm -> (axial slice, column, row) of the volume's axial stack: the same path
        the command line takes (volume -> CTVolume -> AxialStack -> clicks)."""
        return self._state_for(volume_node).stack.click_to_stack(*ras_to_click(volume_node, ras_world))

    # -- sessions -----------------------------------------------------------------------------
    def _state_for(self, volume_node) -> _VolumeState:
        from SAMIHSLib.interaction.session import HemorrhageSession
        from SAMIHSLib.io.volume_io import AxialStack

        image = volume_node.GetImageData()
        fingerprint = (volume_node.GetID(), image.GetMTime() if image is not None else -1)
        state = self._states.get(volume_node.GetID())
        if state is None or state.fingerprint != fingerprint:
            stack = AxialStack.of(ct_volume_from_node(volume_node))
            predictor = self.new_predictor()
            predictor.set_volume(stack.array_hu, stack.spacing_zyx)
            state = _VolumeState(fingerprint, stack, HemorrhageSession(predictor))
            self._states[volume_node.GetID()] = state
        return state

    def session_for(self, volume_node):
        """The session of ``volume_node`` (on its axial stack), restarted if the voxels changed."""
        return self._state_for(volume_node).session

    def existing_session(self, volume_node):
        """The volume's session if one was started (never loads the model), else None."""
        state = self._states.get(volume_node.GetID())
        return state.session if state is not None else None

    def ensure_hemorrhage_segment(self, segmentation_node, volume_node, segment_id: str = "") -> str:
        """The id of the segment to fill: ``segment_id`` if given, else a new red "Hemorrhage"."""
        segmentation = segmentation_node.GetSegmentation()
        if segment_id and segmentation.GetSegment(segment_id) is not None:
            return segment_id
        if segmentation.GetNumberOfSegments() == 0:
            segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        new_id = segmentation.AddEmptySegment(segment_id or "", HEMORRHAGE_SEGMENT_NAME, HEMORRHAGE_COLOR)
        return new_id

    def _prepare(self, state: _VolumeState, segmentation_node, segment_id: str, volume_node,
                 overwrite_other_segments: bool) -> None:
        """Sync the session with the segment before an edit: slices edited outside SAMIHS
        (Segment Editor) become locked, and other segments' voxels are protected unless the
        user chose to overwrite them."""
        session, stack = state.session, state.stack
        others = None if overwrite_other_segments else other_segments_mask(segmentation_node, segment_id, volume_node)
        session.protected = None if others is None else stack.mask_to_stack(others)
        current = stack.mask_to_stack(read_segment_mask(segmentation_node, segment_id, volume_node))
        edited = np.nonzero((current != session.mask).any(axis=(1, 2)))[0]
        for k in edited:
            session.set_slice_mask(int(k), current[k], lock=True)

    def _write(self, state: _VolumeState, before: np.ndarray, segmentation_node, segment_id: str, volume_node,
               overwrite_other_segments: bool) -> Optional[VoxelExtent]:
        """Write what changed since ``before`` (stack order) into the segment; the volume extent."""
        from SAMIHSLib.interaction.session import changed_extent

        changed = changed_extent(before, state.session.mask)
        if changed is None:
            return None
        extent = state.stack.extent_to_volume(changed)
        mask = state.stack.mask_to_volume(state.session.mask)
        self._on_main(lambda: write_segment_region(segmentation_node, segment_id, volume_node, mask, extent,
                                                   overwrite_other_segments))
        return extent

    # -- operations ---------------------------------------------------------------------------
    def segment_from_points(self, volume_node, segmentation_node, positive_node, negative_node=None,
                            segment_id: str = "", roi_node=None, propagate: bool = True,
                            overwrite_other_segments: bool = False, progress: Optional[ProgressCallback] = None,
                            cancel: Optional[threading.Event] = None) -> Tuple[str, SegmentUpdate]:
        """Segment from the markups on the slice of the newest positive point (plus an optional
        ROI box), optionally propagate, and write the changed region into the segment.

        Returns (segment id, update). Raises ValueError/InputError with a clear message on bad input.
        """
        with self._lock:
            state = self._state_for(volume_node)
            session = state.session
            positives = [self.click_at(volume_node, p) for p in control_points_ras(positive_node)]
            negatives = [self.click_at(volume_node, p) for p in control_points_ras(negative_node)]
            box = self._roi_box(volume_node, roi_node)
            if not positives and not negatives and box is None:
                raise ValueError("Place a positive point (or a box) on the hemorrhage first.")
            k = (positives or negatives)[-1][0] if positives or negatives else self._roi_slice(volume_node, roi_node)
            if not 0 <= k < session.mask.shape[0]:
                raise ValueError(f"The point is outside the volume (axial slice {k}).")
            segment_id = self._on_main(lambda: self.ensure_hemorrhage_segment(segmentation_node, volume_node,
                                                                              segment_id))
            self._prepare(state, segmentation_node, segment_id, volume_node, overwrite_other_segments)
            before = session.mask.copy()
            # Points already in the slice's click history (placed earlier, still shown) are not new clicks.
            old_positive, old_negative = session.slice_clicks.get(k, ((), ()))
            new_positive, new_negative = _new_points(positives, k, old_positive), _new_points(negatives, k, old_negative)
            if not new_positive and not new_negative and box is None:
                raise ValueError(f"Every point on axial slice {k} is already applied; place a new point or a box.")
            outcome = session.click(k, new_positive, new_negative, box, propagate=propagate, progress=progress,
                                    cancel=cancel)
            written = self._write(state, before, segmentation_node, segment_id, volume_node,
                                  overwrite_other_segments)
            return segment_id, SegmentUpdate(self.hemorrhage_volume_ml(session), written, outcome.slice_iou,
                                             outcome.stop_reasons, outcome.message)

    def _roi_box(self, volume_node, roi_node) -> Optional[Tuple[float, float, float, float]]:
        """The ROI's pixel box (x0, y0, x1, y1) on the axial stack, or None without an ROI."""
        if roi_node is None or roi_node.GetNumberOfControlPoints() == 0:
            return None
        bounds = [0.0] * 6
        roi_node.GetRASBounds(bounds)
        from SAMIHSLib.interaction.regions import box_of_points

        corners = [self.click_at(volume_node, (x, y, z)) for x in bounds[0:2] for y in bounds[2:4] for z in bounds[4:6]]
        return box_of_points([(column, row) for _, column, row in corners])

    def clicks_ras(self, volume_node) -> Tuple[List[Tuple[float, float, float]], List[Tuple[float, float, float]]]:
        """(positive, negative) clicks of the session's history in RAS mm: what the markups should
        show after an undo or redo (which restore the history with the mask)."""
        state = self._state_for(volume_node)
        matrix = ijk_to_ras(volume_node)
        shown: Tuple[list, list] = ([], [])
        for k, history in sorted(state.session.slice_clicks.items()):
            for points, out in zip(history, shown):
                for x, y in points:
                    volume_k, i, j = state.stack.click_to_volume(k, x, y)
                    out.append(tuple(float(v) for v in (matrix @ np.array([i, j, volume_k, 1.0]))[:3]))
        return shown

    def _roi_slice(self, volume_node, roi_node) -> int:
        """The axial slice through the ROI's centre (a box drawn alone says where to segment)."""
        center = [0.0, 0.0, 0.0]
        roi_node.GetCenterWorld(center)
        return self.click_at(volume_node, center)[0]

    def propagate(self, volume_node, segmentation_node, segment_id: str, slice_index: Optional[int] = None,
                  overwrite_other_segments: bool = False, progress: Optional[ProgressCallback] = None,
                  cancel: Optional[threading.Event] = None) -> SegmentUpdate:
        """Re-propagate the segment from ``slice_index`` (default: its largest slice)."""
        from SAMIHSLib.interaction.regions import slice_with_most

        with self._lock:
            state = self._state_for(volume_node)
            session = state.session
            self._prepare(state, segmentation_node, segment_id, volume_node, overwrite_other_segments)
            if not session.mask.any():
                raise ValueError("The segment is empty: place a point on the hemorrhage first.")
            k = slice_with_most(session.mask) if slice_index is None else int(slice_index)
            before = session.mask.copy()
            outcome = session.repropagate(k, progress=progress, cancel=cancel)
            written = self._write(state, before, segmentation_node, segment_id, volume_node,
                                  overwrite_other_segments)
            return SegmentUpdate(self.hemorrhage_volume_ml(session), written, outcome.slice_iou, outcome.stop_reasons,
                                 outcome.message)

    def undo(self, volume_node, segmentation_node, segment_id: str, redo: bool = False) -> SegmentUpdate:
        """Undo (or redo) the last SAMIHS edit of this volume, restoring the segment exactly."""
        with self._lock:
            state = self._state_for(volume_node)
            session = state.session
            if not (session.can_redo if redo else session.can_undo):
                raise ValueError(f"Nothing to {'redo' if redo else 'undo'}.")
            before = session.mask.copy()
            session.redo() if redo else session.undo()
            written = self._write(state, before, segmentation_node, segment_id, volume_node, False)
            return SegmentUpdate(self.hemorrhage_volume_ml(session), written)

    def hemorrhage_volume_ml(self, session) -> float:
        from SAMIHSLib.metrics import volume_ml

        return volume_ml(session.mask, session.predictor.spacing_zyx)

    def segment_all_loaded_volumes(self, scene, progress: Optional[ProgressCallback] = None,
                                   cancel: Optional[threading.Event] = None) -> List[Dict[str, object]]:
        """Auto-seeded segmentation of every scalar volume in ``scene``: one new segmentation
        node per volume. A volume that fails is reported and the others go on."""
        from SAMIHSLib.batch import VolumePrompts, auto_seed_clicks, segment_volume
        from SAMIHSLib.metrics import volume_ml
        from SAMIHSLib.interaction.session import changed_extent
        from SAMIHSLib.io.volume_io import AxialStack

        volumes = [node for node in nodes_of_class(scene, "vtkMRMLScalarVolumeNode")
                   if not node.IsA("vtkMRMLLabelMapVolumeNode")]
        results = []
        for done, volume_node in enumerate(volumes):
            if cancel is not None and cancel.is_set():
                break
            if progress is not None:
                progress(done, len(volumes), volume_node.GetName())
            try:
                stack = AxialStack.of(ct_volume_from_node(volume_node))
                spacing = stack.spacing_zyx
                mask = stack.mask_to_volume(segment_volume(self.new_predictor(), stack,
                                                           VolumePrompts(auto_seed_clicks(stack)), cancel))
                segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                                            f"{volume_node.GetName()} hemorrhage")
                segmentation_node.CreateDefaultDisplayNodes()
                segment_id = self.ensure_hemorrhage_segment(segmentation_node, volume_node)
                extent = changed_extent(np.zeros_like(mask), mask)
                if extent is not None:
                    write_segment_region(segmentation_node, segment_id, volume_node, mask, extent)
                results.append({"volume": volume_node.GetName(), "segmentation": segmentation_node,
                                "volume_ml": volume_ml(mask, spacing), "error": ""})
            except Exception as error:  # report and go on with the next volume
                results.append({"volume": volume_node.GetName(), "segmentation": None, "volume_ml": 0.0,
                                "error": str(error)})
        if progress is not None:
            progress(len(volumes), len(volumes), "done")
        return results


def _new_points(clicks: Sequence[Tuple[int, float, float]], k: int, history: Sequence[Tuple[float, float]],
                tolerance_px: float = 0.01) -> List[Tuple[float, float]]:
    """The (column, row) of ``clicks`` on slice ``k`` that are not already in ``history``."""
    return [(x, y) for kk, x, y in clicks
            if kk == k and not any(abs(x - hx) < tolerance_px and abs(y - hy) < tolerance_px for hx, hy in history)]
