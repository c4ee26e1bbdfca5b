"""The MRML logic of SAMIHS: volume, markups and segmentation nodes in, segment voxels out.

Qt-free: it runs inside Slicer (as the base of ``SAMIHS.SAMIHSLogic``) and in plain Python with
PyPI ``slicer-core`` (no ``slicer.app``, no ``slicer.modules``). All segmentation work is done by
SAMIHSLib; node <-> array conversion is in :mod:`SAMIHSSlicer.mrml_nodes`. SAMIHSLib (which needs
PyTorch) is imported on first use, so the module loads before its dependencies are installed.
"""

import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from SAMIHSLib.io.segment_terms import SEGMENT_COLOR, SEGMENT_NAME
from SAMIHSLib.progress import ProgressCallback
from SAMIHSSlicer.mrml_nodes import (TakenVoxels, VoxelExtent, control_points_ras, ct_volume_from_node, ensure_segmentation_converters,
                                     give_back_to_other_segments, ijk_to_ras, nodes_of_class, other_segments_mask,
                                     ras_to_click, read_segment_mask, take_from_other_segments, write_segment_region)

# (model spec, device) -> a loaded SAMIHSLib model (tests and embedders share one already loaded).
ModelLoader = Callable[[str, str], object]


@dataclass
class SegmentUpdate:
    """What one operation did: the segment's volume, the (k, j, i) voxel extent written, the
    predicted IoU, stop reasons and fallback methods per slice (axial slice numbers), what to
    tell the user, and what the bleed detector added."""

    volume_ml: float
    extent: Optional[VoxelExtent]
    slice_iou: Dict[int, float] = field(default_factory=dict)
    stop_reasons: Dict[str, str] = field(default_factory=dict)
    message: str = ""
    slice_methods: Dict[int, str] = field(default_factory=dict)
    detector_added: str = ""  # what the bleed detector's regions added to the answer, in words


@dataclass
class _VolumeState:
    fingerprint: Tuple[str, int]
    stack: object  # SAMIHSLib.io.volume_io.AxialStack: the volume as axial slices
    session: object  # SAMIHSLib.interaction.session.HemorrhageSession on the stack, with its own predictor
    # Boxes already applied, (ROI node id, pixel box, slices): a box is one prompt, not one per click.
    applied_boxes: set = field(default_factory=set)
    # id(session edit) -> (that edit, what it took from other segments), for undo and redo.
    taken: Dict[int, Tuple[object, TakenVoxels]] = field(default_factory=dict)
    last_update: Optional[SegmentUpdate] = None  # what the last operation said: the report's reason


@dataclass
class _Findings:
    """What the bleed detector found in a volume: the node its segments went to, each segment's
    region (its number in the segment name, and where it is and how sure the detector was), and the
    detector's highest score and words for a head where nothing was kept."""

    fingerprint: Tuple[str, int]  # of the volume it was found in (as _VolumeState's)
    segmentation_id: str
    regions: Dict[str, Tuple[int, str]]  # segment id -> (region number, DetectedRegion.describe())
    top_score: float
    nothing_found: str  # AutomaticResult.describe() when no region was kept, else ""
    # The voxels of every region written so far (deleted ones too): a later search adds only new ones.
    region_digests: Set[str] = field(default_factory=set)


@dataclass(frozen=True)
class BoxPrompt:
    """An ROI as a prompt: its (x0, y0, x1, y1) pixel box on the axial stack and the axial slices it covers."""

    box: Tuple[float, float, float, float]
    slices: Tuple[int, ...]


class SAMIHSMRMLLogic:
    """Click-to-segment hemorrhage on MRML nodes. One SAMIHSLib session per volume node."""

    def __init__(self, model_spec: str = "", device: str = "auto", engine: str = "auto",
                 model_loader: Optional[ModelLoader] = None,
                 call_on_main_thread: Optional[Callable[[Callable[[], object]], object]] = None) -> None:
        """``engine``: ``auto`` or a name of ``SAMIHSLib.engines.ENGINES``; ``model_loader`` makes
        the model from (spec, device) (tests and embedders may share one already loaded); without
        one, a CPU engine starts from the graphs an earlier start recorded, without torch
        (``SAMIHSLib.interaction.predictor.model_and_engine``).
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
        self._second_opinion = None  # (lite-base, its engine) for a click-trained LiteMedSAM
        self._cache = None
        self._states: Dict[str, _VolumeState] = {}
        self._findings: Dict[str, _Findings] = {}  # volume node id -> the detector's last findings
        self._lock = threading.RLock()
        ensure_segmentation_converters()

    # -- model --------------------------------------------------------------------------------
    def choose_model(self, checkpoint_path: str = "", device: str = "auto", engine: str = "auto") -> None:
        """The panel's model choice: a checkpoint file, or the default model when the path is
        empty; loads nothing (see :meth:`set_model`)."""
        from SAMIHSLib.model_names import DEFAULT_MODEL

        self.set_model(checkpoint_path or DEFAULT_MODEL, device, engine)

    def set_model(self, model_spec: str, device: str = "auto", engine: Optional[str] = None) -> None:
        """Use another model (a name of ``SAMIHSLib.model_names.MODEL_SPECS`` or a checkpoint path),
        device or engine; sessions restart. Nothing is loaded until it is used."""
        engine = engine or self.engine_name
        if (model_spec, device, engine) != (self.model_spec, self.device, self.engine_name):
            self.model_spec, self.device, self.engine_name = model_spec, device, engine
            self._model = None
            self._engine = None
            self._states.clear()

    @property
    def model(self):
        """The model (loads it), or where a CPU engine runs its recorded graphs, the model's summary."""
        if self._model is None:
            from SAMIHSLib.interaction.predictor import SliceEmbeddingCache, fine_tuned_from_lite_base

            model, self._engine = self._model_and_engine(self.model_spec)
            # lite-base answers the clicks a click-trained model misses: loaded now, off the GUI thread
            self._second_opinion = self._model_and_engine("lite-base") if fine_tuned_from_lite_base(model) else None
            self._cache = SliceEmbeddingCache()
            self._model = model
        return self._model

    def _model_and_engine(self, spec: str):
        from SAMIHSLib.engines import make_engine
        from SAMIHSLib.interaction.predictor import model_and_engine

        if self.model_loader is None:
            return model_and_engine(spec, self.device, self.engine_name)
        model = self.model_loader(spec, self.device)
        return model, make_engine(model, self.engine_name)

    def new_predictor(self):
        """A predictor on the shared model, engine and embedding cache (keyed by volume content)."""
        from SAMIHSLib.interaction.predictor import SAMIHSPredictor, add_second_opinion

        predictor = SAMIHSPredictor(self.model, self._cache, engine=self._engine)
        if self._second_opinion is not None:
            add_second_opinion(predictor, *self._second_opinion)
        return predictor

    @property
    def model_loaded(self) -> bool:
        return self._model is not None

    def device_name(self) -> str:
        """Where the model runs: "cpu", "cuda" or "mps" (loads it)."""
        return self.new_predictor().device_type

    def engine_description(self) -> str:
        """The engine that runs the model, with its precision and device (loads the model)."""
        return self.new_predictor().engine_description

    def start_background_encoding(self, volume_node, slice_index: int, on_encoded=None):
        """Encode the volume's slices outward from ``slice_index`` on one worker thread.

        Returns the :class:`SAMIHSLib.interaction.background_encoder.BackgroundEncoder`; call ``stop()`` on
        it when the volume changes or the module closes."""
        from SAMIHSLib.interaction.background_encoder import BackgroundEncoder

        encoder = BackgroundEncoder(self.session_for(volume_node).predictor, on_encoded)
        encoder.focus(slice_index)
        return encoder

    def prepare_volume(self, volume_node) -> None:
        """Load the model (exporting its engine on first use) and make the volume's session: the
        slow first steps, which an app runs off its GUI thread."""
        self._state_for(volume_node)

    def existing_slice_index_at(self, volume_node, ras_world: Optional[Sequence[float]]) -> int:
        """The axial slice of a prepared volume under a world RAS position, clamped into the
        volume; its middle slice when ``ras_world`` is None."""
        session = self.existing_session(volume_node)
        if session is None:
            raise ValueError("The volume has no session yet.")
        num_slices = session.mask.shape[0]
        k = num_slices // 2 if ras_world is None else self.slice_index_at(volume_node, ras_world)
        return min(max(k, 0), num_slices - 1)

    def box_is_drawn(self, volume_node, roi_node) -> bool:
        """Whether the ROI has an in-plane area yet (False while only its first corner is placed)."""
        return self.roi_box(volume_node, roi_node) is not None

    def slice_index_at(self, volume_node, ras_world: Sequence[float]) -> int:
        """The axial slice under a world RAS position, e.g. a slice view's centre."""
        return self.click_at(volume_node, ras_world)[0]

    def click_at(self, volume_node, ras_world: Sequence[float]) -> Tuple[int, float, float]:
        """World RAS mm -> (axial slice, column, row) of the volume's axial stack: the same path
        the command line takes (volume -> CTVolume -> AxialStack -> clicks)."""
        return self._state_for(volume_node).stack.click_to_stack(*ras_to_click(volume_node, ras_world))

    # -- sessions -----------------------------------------------------------------------------
    def _state_for(self, volume_node) -> _VolumeState:
        from SAMIHSLib.io.volume_io import AxialStack
        from SAMIHSLib.volume.click_session import click_session

        fingerprint = _fingerprint(volume_node)
        state = self._states.get(volume_node.GetID())
        if state is None or state.fingerprint != fingerprint:
            stack = AxialStack.of(ct_volume_from_node(volume_node))
            predictor = self.new_predictor()
            predictor.set_volume(stack.array_hu, stack.spacing_zyx)
            state = _VolumeState(fingerprint, stack, click_session(predictor))
            self._states[volume_node.GetID()] = state
        return state

    def session_for(self, volume_node):
        """The session of ``volume_node`` (on its axial stack), restarted if the voxels changed."""
        return self._state_for(volume_node).session

    def existing_session(self, volume_node):
        """The volume's session if one was started (never loads the model), else None."""
        state, _ = self._current(volume_node)
        return state.session if state is not None else None

    def new_segmentation_node(self, volume_node, scene=None, name: str = ""):
        """A new segmentation node on the volume's geometry, with display nodes (named
        "<volume> hemorrhage" unless ``name`` is given)."""
        scene = scene or volume_node.GetScene()
        segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or f"{volume_node.GetName()} hemorrhage")
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        return segmentation

    def ensure_hemorrhage_segment(self, segmentation_node, volume_node, segment_id: str = "") -> str:
        """The id of the segment to fill: ``segment_id`` if given, else a new red "Hemorrhage"."""
        segmentation = segmentation_node.GetSegmentation()
        if segment_id and segmentation.GetSegment(segment_id) is not None:
            return segment_id
        if segmentation.GetNumberOfSegments() == 0:
            segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        new_id = segmentation.AddEmptySegment(segment_id or "", SEGMENT_NAME, SEGMENT_COLOR)
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
               overwrite_other_segments: bool, edits_before: int = -1) -> Optional[VoxelExtent]:
        """Write what changed since ``before`` (stack order) into the segment; the volume extent.

        With ``overwrite_other_segments`` the voxels the segment gained are removed from every other
        segment, and recorded on the newest edit (when it is newer than ``edits_before``) so that
        undo gives them back."""
        from SAMIHSLib.interaction.session import changed_extent

        changed = changed_extent(before, state.session.mask)
        if changed is None:
            return None
        extent = state.stack.extent_to_volume(changed)
        mask = state.stack.mask_to_volume(state.session.mask)

        def write() -> None:
            write_segment_region(segmentation_node, segment_id, volume_node, mask, extent)
            if overwrite_other_segments:
                gained = mask & ~state.stack.mask_to_volume(before)
                taken = take_from_other_segments(segmentation_node, segment_id, volume_node, gained, extent)
                edit = state.session.last_edit
                if taken and edit is not None and state.session.history_lengths[0] > edits_before:
                    state.taken[id(edit)] = (edit, taken)

        self._on_main(write)
        return extent

    # -- operations ---------------------------------------------------------------------------
    def segment_from_points(self, volume_node, segmentation_node, positive_node, negative_node=None,
                            segment_id: str = "", roi_node=None, propagate: bool = True,
                            overwrite_other_segments: bool = False, progress: Optional[ProgressCallback] = None,
                            cancel: Optional[threading.Event] = None) -> Tuple[str, SegmentUpdate]:
        """Apply every point not applied yet, on the axial slice it lies on (a negative point on a
        propagated slice corrects that slice), and an ROI box on the slices it covers; optionally
        propagate, then write the changed region into the segment.

        A point is new when it is not in its slice's click history (undo and redo restore that
        history: :meth:`show_clicks` makes the markups match it). A box is applied once; a box with
        no area yet (the first corner of a placement) is ignored. Propagation follows each click,
        and a box that covers a single slice; a box over several slices answers those slices only.

        Returns (segment id, update). Raises ValueError/InputError with a clear message on bad
        input, before anything changes.
        """
        with self._lock:
            state = self._state_for(volume_node)
            session = state.session
            num_slices = session.mask.shape[0]
            clicks = [(True, self.click_at(volume_node, p)) for p in control_points_ras(positive_node)]
            clicks += [(False, self.click_at(volume_node, p)) for p in control_points_ras(negative_node)]
            for _, (k, _, _) in clicks:
                if not 0 <= k < num_slices:
                    raise ValueError(f"The point is outside the volume (axial slice {k}).")
            new_clicks = _new_clicks_by_slice(clicks, session.slice_clicks)
            drawn_box = self.roi_box(volume_node, roi_node)
            if not clicks and drawn_box is None:
                raise ValueError("Place a positive point (or a box) on the hemorrhage first.")
            box_key = (roi_node.GetID(), drawn_box.box, drawn_box.slices) if drawn_box is not None else None
            box = drawn_box if box_key not in state.applied_boxes else None
            if not new_clicks and box is None:
                raise ValueError("Every point and box is already applied; place a new point or a box.")
            segment_id = self._on_main(lambda: self.ensure_hemorrhage_segment(segmentation_node, volume_node,
                                                                              segment_id))
            self._prepare(state, segmentation_node, segment_id, volume_node, overwrite_other_segments)
            before = session.mask.copy()
            edits_before = session.history_lengths[0]
            outcomes = [session.click(k, positive, negative, propagate=propagate, progress=progress, cancel=cancel)
                        for k, (positive, negative) in new_clicks.items()]
            if box is not None:
                for k in box.slices:
                    outcomes.append(session.click(k, [], [], box.box, propagate=propagate and len(box.slices) == 1,
                                                  progress=progress, cancel=cancel))
                state.applied_boxes.add(box_key)
            written = self._write(state, before, segmentation_node, segment_id, volume_node,
                                  overwrite_other_segments, edits_before)
            return segment_id, self._update(state, written, outcomes)

    def _update(self, state: _VolumeState, written: Optional[VoxelExtent], outcomes: Sequence[object]) -> SegmentUpdate:
        """One SegmentUpdate from the outcomes of the session calls of one operation (kept for the
        volume's report)."""
        update = SegmentUpdate(self.hemorrhage_volume_ml(state.session), written)
        for outcome in outcomes:
            update.slice_iou.update(outcome.slice_iou)
            update.stop_reasons.update(outcome.stop_reasons)
            update.slice_methods.update(outcome.slice_methods)
        update.message = "; ".join(outcome.message for outcome in outcomes if outcome.message)
        update.detector_added = "; ".join(outcome.detector_added for outcome in outcomes if outcome.detector_added)
        state.last_update = update
        return update

    def report(self, volume_node):
        """The volume's segmentation in the one report schema (:class:`SAMIHSLib.io.report.SegmentationReport`):
        the session's mask and, after the bleed detector ran, the detected regions' segments the
        reader kept; their measurements and filled slices, the engine that ran, the last operation's
        predicted IoU and stop reasons, and the detector's regions (as the automatic batch reports
        them), those deleted counted. Before anything ran: an empty report."""
        from SAMIHSLib.io.report import NO_BLEED_FOUND, SegmentationReport
        from SAMIHSLib.volume.reports import mask_report

        state, findings = self._current(volume_node)
        if state is None and findings is None:
            return SegmentationReport(volume_node.GetName(), model=self.model_spec)
        stack, mask, kept = self._hemorrhage_in_stack(volume_node)
        predictor, outcome = (state.session.predictor, state.last_update) if state is not None else (None, None)
        report = mask_report(volume_node.GetName(), mask, stack.spacing_zyx, predictor, outcome, model=self.model_spec)
        if findings is None:
            return report
        deleted = len(findings.regions) - len(kept)
        said = [report.reason] if report.reason else []
        said += [f"region {number}: {where}" for number, where in kept] or [findings.nothing_found]
        said += [f"{deleted} detected region{'s' if deleted > 1 else ''} deleted by the reader"] if deleted else []
        report.reason = "; ".join(text for text in said if text)
        report.detection_score, report.detected_regions = findings.top_score, len(kept)
        if not report.filled_slices and not findings.regions:
            report.status = NO_BLEED_FOUND
        return report

    def _current(self, volume_node) -> Tuple[Optional[_VolumeState], Optional[_Findings]]:
        """The volume's session state and detector findings, each only if made on its present voxels
        (node ids repeat across scenes, and a volume's voxels may be replaced)."""
        fingerprint = _fingerprint(volume_node)
        state = self._states.get(volume_node.GetID())
        findings = self._findings.get(volume_node.GetID())
        return (state if state is not None and state.fingerprint == fingerprint else None,
                findings if findings is not None and findings.fingerprint == fingerprint else None)

    def hemorrhage_mask(self, volume_node) -> np.ndarray:
        """The volume's hemorrhage as one (k, j, i) mask: the session's mask joined with the detected
        regions the reader kept (what the report measures)."""
        stack, mask, _ = self._hemorrhage_in_stack(volume_node)
        return stack.mask_to_volume(mask)

    def _hemorrhage_in_stack(self, volume_node) -> Tuple[object, np.ndarray, List[Tuple[int, str]]]:
        """(the axial stack, the session's mask joined with the kept detected segments in stack
        order, the kept regions' (number, description) in number order)."""
        from SAMIHSLib.io.volume_io import AxialStack

        state, findings = self._current(volume_node)
        stack = state.stack if state is not None else AxialStack.of(ct_volume_from_node(volume_node))
        mask = state.session.mask.copy() if state is not None else np.zeros(stack.array_hu.shape, bool)
        node = volume_node.GetScene().GetNodeByID(findings.segmentation_id) if findings and findings.segmentation_id else None
        kept = []
        for segment_id, region in (findings.regions.items() if node is not None else ()):
            if node.GetSegmentation().GetSegment(segment_id) is not None:
                mask |= stack.mask_to_stack(read_segment_mask(node, segment_id, volume_node))
                kept.append(region)
        return stack, mask, sorted(kept)

    def status(self, volume_node) -> List[str]:
        """What the panel and the web page show for the volume, line by line."""
        return self.report(volume_node).status_lines()

    def roi_box(self, volume_node, roi_node) -> Optional[BoxPrompt]:
        """The ROI as a box prompt on the axial stack, or None without an ROI or while it has no
        in-plane area (its first corner placed, the second not yet)."""
        if roi_node is None or roi_node.GetNumberOfControlPoints() == 0:
            return None
        from SAMIHSLib.interaction.regions import box_of_points

        bounds = [0.0] * 6
        roi_node.GetRASBounds(bounds)
        corners = [self.click_at(volume_node, (x, y, z)) for x in bounds[0:2] for y in bounds[2:4] for z in bounds[4:6]]
        x0, y0, x1, y1 = box_of_points([(column, row) for _, column, row in corners])
        if x1 - x0 < 1.0 or y1 - y0 < 1.0:
            return None
        num_slices = self._state_for(volume_node).session.mask.shape[0]
        ks = [k for k, _, _ in corners]
        slices = tuple(k for k in range(max(0, min(ks)), min(num_slices - 1, max(ks)) + 1))
        if not slices:
            raise ValueError(f"The box is outside the volume (axial slices {min(ks)}-{max(ks)}).")
        return BoxPrompt((x0, y0, x1, y1), slices)

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

    def show_clicks(self, volume_node, positive_node, negative_node) -> None:
        """Make the point lists show the session's click history (after undo or redo), so that the
        next click does not apply an undone point again."""
        import vtk

        for node, points in zip((positive_node, negative_node), self.clicks_ras(volume_node)):
            if node is None:
                continue
            was_modifying = node.StartModify()
            try:
                node.RemoveAllControlPoints()
                for point in points:
                    node.AddControlPointWorld(vtk.vtkVector3d(*point))
            finally:
                node.EndModify(was_modifying)

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
            edits_before = session.history_lengths[0]
            outcome = session.repropagate(k, progress=progress, cancel=cancel)
            written = self._write(state, before, segmentation_node, segment_id, volume_node,
                                  overwrite_other_segments, edits_before)
            return self._update(state, written, [outcome])

    def undo(self, volume_node, segmentation_node, segment_id: str, redo: bool = False,
             positive_node=None, negative_node=None) -> SegmentUpdate:
        """Undo (or redo) the last SAMIHS edit of this volume, restoring the segment exactly, the
        voxels that edit took from other segments, and (when given) the point lists."""
        with self._lock:
            state = self._state_for(volume_node)
            session = state.session
            if not (session.can_redo if redo else session.can_undo):
                raise ValueError(f"Nothing to {'redo' if redo else 'undo'}.")
            edit = session.next_redo if redo else session.last_edit
            before = session.mask.copy()
            session.redo() if redo else session.undo()
            written = self._write(state, before, segmentation_node, segment_id, volume_node, False)
            _, taken = state.taken.get(id(edit), (None, {}))
            if taken:
                self._on_main(lambda: give_back_to_other_segments(segmentation_node, volume_node, taken, take=redo))
            if positive_node is not None or negative_node is not None:
                self._on_main(lambda: self.show_clicks(volume_node, positive_node, negative_node))
            return self._update(state, written, [])

    def hemorrhage_volume_ml(self, session) -> float:
        from SAMIHSLib.metrics import volume_ml

        return volume_ml(session.mask, session.predictor.spacing_zyx)

    def release_volumes(self) -> None:
        """Forget every volume's session and cached slices (the scene closed)."""
        with self._lock:
            self._states.clear()
            self._findings.clear()

    def segment_all_loaded_volumes(self, scene, progress: Optional[ProgressCallback] = None,
                                   cancel: Optional[threading.Event] = None) -> List[Dict[str, object]]:
        """Automatic segmentation (the bleed detector, as ``samihs batch --prompts auto``) of every
        CT volume in ``scene`` (:meth:`segment_automatically` on each, into a new segmentation node
        where bleeds are found). A volume that is not CT in HU is skipped with its reason; one that
        fails is reported; the others go on. ``progress`` is called per batch of slices, so a caller
        can keep its window responsive and its Cancel button clickable within a volume."""
        volumes = [node for node in nodes_of_class(scene, "vtkMRMLScalarVolumeNode")
                   if not node.IsA("vtkMRMLLabelMapVolumeNode")]
        results = []
        for done, volume_node in enumerate(volumes):
            if cancel is not None and cancel.is_set():
                break
            name = volume_node.GetName()
            if progress is not None:
                progress(done, len(volumes), name)

            def within_volume(step: int, steps: int, message: str, done=done, name=name) -> None:
                if progress is not None:
                    progress(done, len(volumes), f"{name}: {message} ({step}/{steps})")

            results.append(self.segment_automatically(volume_node, None, within_volume, cancel))
        if progress is not None:
            progress(len(volumes), len(volumes), "done")
        return results

    def segment_automatically(self, volume_node, segmentation_node=None, progress: Optional[ProgressCallback] = None,
                              cancel: Optional[threading.Event] = None) -> Dict[str, object]:
        """The bleed detector on one volume: each detected region becomes its own segment, named with
        its score ("Hemorrhage 1 (score 0.998)"), so the reader can delete one they reject; in
        ``segmentation_node``, else in the node an earlier search of the same voxels wrote to, else
        in a new node only when something is found. A region an earlier search already wrote there
        (kept or deleted by the reader) is not added again. Returns ``volume``, ``segmentation`` (the
        node, or None), ``segment_ids`` and ``regions`` (one summary each) of the segments added,
        ``volume_ml`` of those, ``detection`` (what was found, or "no bleed found" with the highest
        score: a result), ``skipped`` (why a volume that is not CT was left alone) and ``error``."""
        from SAMIHSLib.volume.automatic import AUTOMATIC_MODE, load_detector, segment_automatically
        from SAMIHSLib.metrics import volume_ml
        from SAMIHSLib.interaction.regions import occupied_extent
        from SAMIHSLib.io.validation import validate_ct_volume
        from SAMIHSLib.io.volume_io import AxialStack

        name = volume_node.GetName()
        entry: Dict[str, object] = {"volume": name, "segmentation": None, "segment_ids": [], "volume_ml": 0.0,
                                    "error": "", "skipped": "", "detection": "", "regions": []}
        try:
            ct = ct_volume_from_node(volume_node)
            try:
                validate_ct_volume(ct.array_hu, f"volume '{name}'")
            except ValueError as not_ct:
                return {**entry, "skipped": str(not_ct)}
            stack = AxialStack.of(ct)
            predictor = self.new_predictor() if AUTOMATIC_MODE == "seeded" else None
            found = segment_automatically(stack, load_detector(), predictor, AUTOMATIC_MODE, cancel, progress=progress)
            earlier, node = self._earlier_search(volume_node, segmentation_node)
            if not found.bleed_found:
                self._found(volume_node, earlier, node, [], found)
                return {**entry, "detection": found.describe()}
            known = earlier.region_digests if earlier is not None else set()
            fresh = [index for index, mask in enumerate(found.region_masks) if _mask_digest(mask) not in known]
            first = len(earlier.regions) + 1 if earlier is not None else 1  # numbers go on after an earlier run's
            said = [f"region {number}: {found.regions[index].describe()}" for number, index in enumerate(fresh, first)]
            repeated = len(found.regions) - len(fresh)
            said += [f"{repeated} region{'s' if repeated > 1 else ''} found by this CT's earlier search, "
                     f"not added again"] if repeated else []
            entry.update(detection="; ".join(said), segmentation=node)
            if not fresh:
                return entry

            def write_segments():
                target = node or self.new_segmentation_node(volume_node, volume_node.GetScene())
                segmentation, ids = target.GetSegmentation(), []
                for number, index in enumerate(fresh, first):
                    ids.append(segmentation.AddEmptySegment(
                        "", f"{SEGMENT_NAME} {number} (score {found.regions[index].score:.3f})", SEGMENT_COLOR))
                    mask = stack.mask_to_volume(found.region_masks[index])
                    write_segment_region(target, ids[-1], volume_node, mask, occupied_extent(mask))
                return target, ids

            node, ids = self._on_main(write_segments)
            self._found(volume_node, earlier, node, ids, found, fresh)
            added = np.logical_or.reduce([found.region_masks[index] for index in fresh])
            entry.update(segmentation=node, segment_ids=ids, volume_ml=volume_ml(added, stack.spacing_zyx),
                         regions=[found.regions[index].summary() for index in fresh])
        except Exception as error:  # reported with the volume: the caller goes on
            entry["error"] = str(error)
        return entry

    def _earlier_search(self, volume_node, segmentation_node) -> Tuple[Optional[_Findings], object]:
        """(the findings of an earlier search of this volume's voxels that wrote into
        ``segmentation_node``, or into any node still in the scene when none is given; the node a new
        search writes to: ``segmentation_node``, else that earlier node, else None)."""
        _, earlier = self._current(volume_node)
        earlier_node = volume_node.GetScene().GetNodeByID(earlier.segmentation_id) \
            if earlier is not None and earlier.segmentation_id else None
        if earlier_node is None or (segmentation_node is not None and segmentation_node.GetID() != earlier_node.GetID()):
            return None, segmentation_node
        return earlier, earlier_node

    def _found(self, volume_node, earlier: Optional[_Findings], node, segment_ids: Sequence[str], found,
               written: Sequence[int] = ()) -> None:
        """Remember what the detector found for the report: ``found`` (an AutomaticResult) whose
        regions at indices ``written`` went to ``segment_ids`` in ``node``, in order; the regions of
        ``earlier`` (the search that wrote into that node before, :meth:`_earlier_search`) stay, with
        their numbers."""
        regions = dict(earlier.regions) if earlier is not None else {}
        digests = set(earlier.region_digests) if earlier is not None else set()
        top = max(found.top_score, earlier.top_score) if earlier is not None else found.top_score
        regions.update({segment_id: (number, found.regions[index].describe()) for number, (segment_id, index)
                        in enumerate(zip(segment_ids, written), len(regions) + 1)})
        digests.update(_mask_digest(found.region_masks[index]) for index in written)
        self._findings[volume_node.GetID()] = _Findings(
            _fingerprint(volume_node), node.GetID() if node is not None else "", regions, top,
            "" if found.bleed_found else found.describe(), digests)


def _mask_digest(mask: np.ndarray) -> str:
    """The identity of a region's voxels (and of the stack they are in)."""
    import hashlib

    digest = hashlib.sha256(repr(mask.shape).encode())
    digest.update(np.packbits(mask).tobytes())
    return digest.hexdigest()


def _fingerprint(volume_node) -> Tuple[str, int]:
    """What a session or finding was made on: the node and the time its voxels last changed."""
    image = volume_node.GetImageData()
    return volume_node.GetID(), image.GetMTime() if image is not None else -1


def _new_clicks_by_slice(clicks: Sequence[Tuple[bool, Tuple[int, float, float]]], history: Dict[int, tuple],
                         tolerance_px: float = 0.01) -> Dict[int, Tuple[List[Tuple[float, float]], List[Tuple[float, float]]]]:
    """axial slice -> (new positive, new negative) (column, row) points: those of ``clicks``
    ((is positive, (slice, column, row))) not yet in that slice's click ``history``."""
    new: Dict[int, Tuple[list, list]] = {}
    for positive, (k, x, y) in clicks:
        applied = history.get(k, ((), ()))[0 if positive else 1]
        if any(abs(x - hx) < tolerance_px and abs(y - hy) < tolerance_px for hx, hy in applied):
            continue
        new.setdefault(k, ([], []))[0 if positive else 1].append((x, y))
    return new
