"""SAMIHS in a web browser: real Slicer views (trame-slicer) over a real MRML scene, driven by
the same Qt-free logic as the Slicer module (SAMIHS/SAMIHSSlicer/mrml_logic.py).

Open a CT (launch files, ``--data DIR``, or an upload), click the bleed in the axial view: SAMIHS
segments that slice, propagates through the volume, and the hemorrhage appears in the slice views
and as a surface in 3D, with its volume in mL and ABC/2. Correct it with negative clicks (a mode
toggle or shift-click), a box (dragged, or two corner clicks), undo/redo, and re-propagation from
the slice on screen (the gestures: view_gestures.js); download the result as .seg.nrrd, DICOM
SEG (for a DICOM series) and a JSON/CSV report.

    .venv/bin/python web/samihs_web_app.py [CT ...] [--data DIR] --port 8080 [--save result.seg.nrrd]

Without a CT it opens the module's sample head CT (a synthetic phantom with a bleed).
Needs the test extras (trame-slicer with slicer-core); rendering runs headless (EGL/OSMesa).

Only its user can drive it: each launch makes a random token, printed in the URL to open; a
WebSocket or download without it is refused (wslink's secret), and so is one from a page of
another origin or for another host name (DNS rebinding). It listens on 127.0.0.1 unless
``--host`` says otherwise (with a warning). ``--save`` never overwrites the input CT, nor an
existing file without ``--overwrite``, and writes atomically.
"""

import argparse
import asyncio
import secrets
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import slicer  # slicer-core: MRML without the desktop application
import vtk
from SAMIHSLib.imaging.display_windows import DISPLAY_WINDOWS
from SAMIHSLib.io.report import NO_BLEED_FOUND
from SAMIHSLib.io.segment_terms import SEGMENT_NAME
from SAMIHSSlicer.mrml_logic import SAMIHSMRMLLogic
from SAMIHSSlicer.mrml_nodes import ensure_segmentation_converters, volume_node_from_ct
from trame.app import TrameApp, asynchronous
from trame.app.file_upload import ClientFile
from trame.widgets import client, html
from trame.widgets import vuetify3 as v3
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_vuetify.ui.vuetify3 import SinglePageWithDrawerLayout

from ct_library import UPLOAD_SUFFIXES, CTLibrary
from result_files import write_dicom_segmentation, write_report, write_segmentation_nrrd
from web_security import (LOOPBACK_NAMES, WILDCARD_HOSTS, check_save_path, is_loopback, reachable_host_names,
                          same_origin_guard)

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CT = REPO / "SAMIHS" / "Resources" / "SampleData" / "SAMIHSPhantomHeadCT.nrrd"
# (width, level) in HU by key, the same windows as the Slicer panel's.
WINDOW_PRESETS = {window.key: (window.width, window.level) for window in DISPLAY_WINDOWS}
VIEW_LABELS = {"Red": "Axial: click here", "Yellow": "Sagittal", "Green": "Coronal"}
DOWNLOADS = {"seg": ("result.seg.nrrd", "Segmentation (.seg.nrrd)"), "dicom": ("result_seg.dcm", "DICOM SEG"),
             "json": ("report.json", "Report (JSON)"), "csv": ("report.csv", "Report (CSV)")}
MOUSE_HELP = ("Left click in the axial view: a point of the mode above; shift + click: a negative point; "
              "box mode: drag a box (or click two corners). Scroll: change slice. Right-drag: zoom. Middle-drag: pan.")
VIEW_GESTURES_JS = Path(__file__).with_name("view_gestures.js")


def _view_label(server, view_id: str, slicer_view) -> None:
    """A name on each view (trame-slicer draws none), without catching the mouse."""
    from trame_slicer.app.ui import create_vertical_slice_view_gutter_ui, create_vertical_view_gutter_ui

    (create_vertical_view_gutter_ui if view_id not in VIEW_LABELS else create_vertical_slice_view_gutter_ui)(
        server, view_id, slicer_view)
    html.Div(VIEW_LABELS.get(view_id, "3D: the bleed's surface"), classes="samihs-view-label",
             __properties=[("data_view", "data-view")], data_view=view_id,  # view_gestures.js finds views by it
             style="position:absolute; top:4px; right:8px; color:#fff; background:rgba(0,0,0,.55); "
                   "padding:1px 6px; border-radius:4px; font:13px sans-serif; pointer-events:none")


class SAMIHSWebApp(TrameApp):
    """Slicer's "Axial Primary" layout with SAMIHS's click, correction and download controls."""

    def __init__(self, ct_paths: List[Path], server=None, model: str = "lite-base", engine: str = "auto",
                 save_path: Optional[Path] = None, data_dir: Optional[Path] = None) -> None:
        super().__init__(server=server)
        self.work_dir = Path(tempfile.mkdtemp(prefix="samihs-web-"))
        self.library = CTLibrary(self.work_dir / "uploads")
        names = self.library.add_all(ct_paths, data_dir)
        if not names:
            raise ValueError("No CT to open: give CT files, or --data with volumes or DICOM series in it.")
        self.model_name, self.save_path = model, save_path
        self.slicer_app = SlicerApp()
        register_rca_factories(self.slicer_app.view_manager, self.server, slice_view_ui_f=_view_label,
                               three_d_view_ui_f=_view_label)
        self.layout_manager = LayoutManager(self.slicer_app.scene, self.slicer_app.view_manager, self.server)
        self.layout_manager.register_layout_dict(LayoutManager.default_grid_configuration())
        self.layout_manager.set_layout("Axial Primary")
        ensure_segmentation_converters()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self.logic = SAMIHSMRMLLogic(model, "auto", engine, call_on_main_thread=self._on_main_thread)
        self.engine_name = engine
        self.scene = self.slicer_app.scene
        self.points = {mode: self._markups(f"SAMIHS {mode}", color)
                       for mode, color in (("positive", (0.1, 0.9, 0.2)), ("negative", (0.95, 0.2, 0.9)),
                                           ("box", (1.0, 0.85, 0.1)))}
        self.volume_node = self.segmentation_node = self.ct_volume = None
        self.segment_id, self.cancel = "", threading.Event()
        self._progress = (0, 0, "")
        self._syncing_markers = False  # markers redrawn from the history are not clicks
        self._region_texts: dict = {}  # segment id -> the detector's summary of that region
        self.box_roi = None
        self._init_state(names)
        self._build_ui()
        self.open_ct(names[0])
        self.slicer_app.markups_logic.place_node(self.points["positive"], persistent=True)

    # -- setup ------------------------------------------------------------------------------------
    def _markups(self, name: str, color) -> object:
        node = self.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
        for set_color in (display.SetSelectedColor, display.SetColor, display.SetActiveColor):
            set_color(*color)  # placed, unplaced and under-the-mouse points alike: the mode's colour
        node.GetDisplayNode().SetPointLabelsVisibility(False)
        node.AddObserver(slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                         lambda *_, mode=name.split()[-1]: self._on_point_placed(mode))
        return node

    def _init_state(self, names: List[str]) -> None:
        state = self.state
        state.samihs_cts, state.samihs_ct = names, names[0]
        state.samihs_mode, state.samihs_window = "positive", "brain"
        state.samihs_status, state.samihs_slices = "Click the bleed in the axial view.", "No slice segmented yet."
        state.samihs_volume_ml = state.samihs_abc2_ml = None
        state.samihs_undo = state.samihs_redo = 0
        state.samihs_clicked = False  # the click segment has voxels: what "Re-propagate" starts from
        state.samihs_busy, state.samihs_progress, state.samihs_progress_text = False, 0, ""
        state.samihs_upload, state.samihs_download_query = None, ""
        state.samihs_dicom = False
        state.samihs_report_ready = False  # a segmentation, or the detector's "no bleed found", to report
        state.samihs_regions = []  # the detector's regions on this CT: [{"id": segment id, "text": ...}]
        state.change("samihs_ct")(lambda samihs_ct, **_: self._when_idle(lambda: self.open_ct(samihs_ct)))
        state.change("samihs_mode")(lambda samihs_mode, **_: self.set_mode(samihs_mode))
        state.change("samihs_window")(lambda samihs_window, **_: self.set_window(samihs_window))
        state.change("samihs_upload")(lambda samihs_upload, **_: self._on_upload(samihs_upload))
        controller = self.server.controller
        controller.trigger("samihs_locate")(self.locate)
        controller.trigger("samihs_view_click")(self.view_click)
        controller.trigger("samihs_view_box")(self.view_box)
        controller.trigger("samihs_undo")(lambda: self._start("Undo", lambda p, c: self._undo(False)))
        controller.trigger("samihs_redo")(lambda: self._start("Redo", lambda p, c: self._undo(True)))
        controller.trigger("samihs_repropagate")(lambda: self._start("Re-propagating", self._repropagate))
        controller.trigger("samihs_cancel")(self.cancel.set)
        controller.trigger("samihs_find_bleeds")(lambda: self._start("Finding bleeds", self._find_bleeds))
        controller.trigger("samihs_delete_region")(lambda segment_id: self._when_idle(
            lambda: self.delete_region(segment_id)))

    def _build_ui(self) -> None:
        with SinglePageWithDrawerLayout(self.server, full_height=True) as self.ui:
            client.Script(VIEW_GESTURES_JS.read_text())
            self.ui.title.set_text("SAMIHS: click to segment intracranial hemorrhage")
            with self.ui.toolbar:
                v3.VSpacer()
                html.Span("{{ samihs_volume_ml === null ? '' : samihs_volume_ml + ' mL (ABC/2 ' + samihs_abc2_ml + ' mL)' }}",
                          id="samihs-volume", classes="mr-4 text-h6")
            with self.ui.drawer as drawer:
                drawer.width = 330
                with html.Div(classes="pa-3 d-flex flex-column", style="gap: 10px"):
                    v3.VSelect(label="CT", items=("samihs_cts",), v_model=("samihs_ct",), id="samihs-ct",
                               density="compact", hide_details=True, disabled=("samihs_busy",))
                    v3.VFileInput(label="Upload a CT (NRRD, NIfTI, MHA, zipped DICOM)", v_model=("samihs_upload",),
                                  accept=",".join(UPLOAD_SUFFIXES), density="compact", hide_details=True,
                                  id="samihs-upload", disabled=("samihs_busy",))
                    html.Div("Window", classes="text-caption")
                    with v3.VBtnToggle(v_model=("samihs_window",), mandatory=True, density="compact", id="samihs-window"):
                        for preset in WINDOW_PRESETS:
                            v3.VBtn(preset, value=preset, id=f"samihs-window-{preset}")
                    html.Div("Click mode", classes="text-caption")
                    with v3.VBtnToggle(v_model=("samihs_mode",), mandatory=True, density="compact", id="samihs-mode"):
                        v3.VBtn("+ bleed", value="positive", id="samihs-mode-positive", color="green")
                        v3.VBtn("- not bleed", value="negative", id="samihs-mode-negative", color="purple")
                        v3.VBtn("box", value="box", id="samihs-mode-box", color="amber")
                    with html.Div(classes="d-flex", style="gap: 6px"):
                        v3.VBtn("Undo ({{ samihs_undo }})", id="samihs-undo", click="trigger('samihs_undo')",
                                disabled=("samihs_busy || samihs_undo === 0",), density="compact")
                        v3.VBtn("Redo ({{ samihs_redo }})", id="samihs-redo", click="trigger('samihs_redo')",
                                disabled=("samihs_busy || samihs_redo === 0",), density="compact")
                    v3.VBtn("Re-propagate from this slice", id="samihs-repropagate", density="compact",
                            click="trigger('samihs_repropagate')", disabled=("samihs_busy || !samihs_clicked",))
                    v3.VBtn("Find bleeds automatically", id="samihs-find-bleeds", density="compact",
                            click="trigger('samihs_find_bleeds')", disabled=("samihs_busy",),
                            title="The bleed detector proposes each bleed as its own segment, named with its "
                                  "score; delete any you reject")
                    with html.Div(v_for="region in samihs_regions", key=("region.id",), classes="d-flex align-center",
                                  style="gap: 6px"):
                        html.Span("{{ region.text }}", classes="samihs-region text-caption", style="flex: 1")
                        v3.VBtn("Delete", classes="samihs-region-delete", density="compact", size="small",
                                click="trigger('samihs_delete_region', [region.id])", disabled=("samihs_busy",))
                    html.Div("{{ samihs_status }}", id="samihs-status", classes="text-body-2",
                             style="white-space: normal; overflow-wrap: anywhere")
                    html.Div("{{ samihs_slices }}", id="samihs-slices", classes="text-caption",
                             style="white-space: normal")
                    html.Div("Download", classes="text-caption")
                    with html.Div(classes="d-flex flex-wrap", style="gap: 6px"):
                        for kind, (file_name, label) in DOWNLOADS.items():
                            # A plain link with ``download``: the browser saves the file and the page
                            # (and its WebSocket) stays; a button that navigates would reload it.
                            html.A(label, id=f"samihs-download-{kind}", download=file_name,
                                   href=(f"'samihs/download/{kind}?' + samihs_download_query",),
                                   classes="v-btn v-btn--density-compact v-btn--variant-tonal v-btn--size-small pa-2",
                                   style="text-decoration: none", v_show=(
                                       "samihs_report_ready" if kind in ("json", "csv") else
                                       "samihs_volume_ml !== null" + (" && samihs_dicom" if kind == "dicom" else ""),))
                    html.Div(MOUSE_HELP, id="samihs-help", classes="text-caption", style="white-space: normal")
            with self.ui.content:
                with html.Div(style="position: relative; width: 100%; height: 100%"):
                    self.layout_manager.initialize_layout_grid(self.ui)
                    # While SAMIHS works, the views are covered: no click can interleave with the
                    # scene being written, and the progress and a cancel are in sight.
                    with html.Div(v_if="samihs_busy", id="samihs-busy",
                                  style="position:absolute; inset:0; z-index:10; background:rgba(0,0,0,.35); "
                                        "display:flex; align-items:center; justify-content:center"):
                        with v3.VCard(width=420, classes="pa-4"):
                            html.Div("{{ samihs_progress_text }}", id="samihs-progress-text", classes="mb-2")
                            v3.VProgressLinear(model_value=("samihs_progress",), height=10, color="primary",
                                               indeterminate=("samihs_progress === 0",))
                            v3.VBtn("Cancel", id="samihs-cancel", click="trigger('samihs_cancel')", classes="mt-3")

    # -- CT and display ---------------------------------------------------------------------------
    def open_ct(self, name: str) -> None:
        """Show CT ``name`` with its own segmentation (a new one the first time)."""
        from SAMIHSLib.io.volume_io import read_ct

        path = self.library.sources[name]
        self.ct_volume = read_ct(path)  # the CLI's reader: the same checks, geometry and DICOM files
        existing = self.scene.GetFirstNodeByName(f"CT {name}")
        self.volume_node = existing or volume_node_from_ct(self.scene, self.ct_volume, f"CT {name}")
        segmentation = self.scene.GetFirstNodeByName(f"SAMIHS {name}")
        if segmentation is None:
            segmentation = self.logic.new_segmentation_node(self.volume_node, self.scene, f"SAMIHS {name}")
        for node in self._nodes("vtkMRMLSegmentationNode"):
            node.GetDisplayNode().SetVisibility(node is segmentation)
        self.segmentation_node = segmentation
        segment = segmentation.GetSegmentation().GetSegmentIdBySegmentName(SEGMENT_NAME)
        self.segment_id = segment or ""
        self.slicer_app.display_manager.show_volume_in_slice_background(self.volume_node)
        self.set_window(self.state.samihs_window)
        self.slicer_app.display_manager.reset_views()
        self.state.samihs_dicom = bool(self.ct_volume.dicom_files)
        self.state.samihs_status = f"{name}: click the bleed in the axial view."
        self._list_regions()
        self._refresh(None)  # (shows this CT's markers too)

    def _nodes(self, class_name: str) -> list:
        collection = self.scene.GetNodesByClass(class_name)
        return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]

    def set_window(self, preset: str) -> None:
        if self.volume_node is None or preset not in WINDOW_PRESETS:
            return
        display = self.volume_node.GetDisplayNode()
        display.SetAutoWindowLevel(False)
        display.SetWindowLevel(*WINDOW_PRESETS[preset])
        self._render()

    def set_mode(self, mode: str) -> None:
        """Which markups node a click in the views places a point in."""
        if mode in self.points:
            self.points["box"].RemoveAllControlPoints()
            self.slicer_app.markups_logic.place_node(self.points[mode], persistent=True)

    def _render(self) -> None:
        for view in self.slicer_app.view_manager.get_views():
            view.schedule_render()

    @property
    def axial_view(self):
        return self.slicer_app.view_manager.get_view("Red")

    @property
    def axial_slice_node(self):
        return self.scene.GetNodeByID("vtkMRMLSliceNodeRed")

    def locate(self, ras: list) -> dict:
        """Show the axial slice through ``ras`` (mm) and say where that point is drawn: pixels from
        the top-left of the axial view's render window, and the window's size. For scripted
        demos and the browser test, which then click there like a user."""
        slice_node = self.axial_slice_node
        slice_node.JumpSliceByOffsetting(*[float(v) for v in ras])
        ras_to_xy = vtk.vtkMatrix4x4()
        ras_to_xy.DeepCopy(slice_node.GetXYToRAS())
        ras_to_xy.Invert()
        x, y, _, _ = ras_to_xy.MultiplyPoint([float(v) for v in ras] + [1.0])
        width, height = slice_node.GetDimensions()[:2]
        self.axial_view.schedule_render()
        return {"x": x, "y": height - y, "width": width, "height": height}

    def _axial_ras_at(self, x: float, y: float, width: float, height: float) -> vtk.vtkVector3d:
        """The point on the axial slice drawn at pixel (x, y) from the top-left of a view image of
        ``width`` x ``height`` pixels on the page (the image may be scaled from the render window)."""
        slice_node = self.axial_slice_node
        columns, rows = slice_node.GetDimensions()[:2]
        xy = [float(x) * columns / float(width), rows - float(y) * rows / float(height), 0.0, 1.0]
        return vtk.vtkVector3d(*slice_node.GetXYToRAS().MultiplyPoint(xy)[:3])

    def view_click(self, kind: str, x: float, y: float, width: float, height: float) -> None:
        """A click in the axial view (view_gestures.js): a point of ``kind`` (positive, negative,
        or a box corner) in the markups node a click in another view places it in."""
        if self.state.samihs_busy or kind not in self.points or width <= 0 or height <= 0:
            return
        self.points[kind].AddControlPointWorld(self._axial_ras_at(x, y, width, height))

    def view_box(self, x0: float, y0: float, x1: float, y1: float, width: float, height: float) -> None:
        """A box dragged in the axial view: its two corners, as if clicked one after the other."""
        if self.state.samihs_busy or width <= 0 or height <= 0:
            return
        self.points["box"].RemoveAllControlPoints()
        for x, y in ((x0, y0), (x1, y1)):
            self.points["box"].AddControlPointWorld(self._axial_ras_at(x, y, width, height))

    def _axial_slice_on_screen(self) -> int:
        slice_to_ras = self.axial_slice_node.GetSliceToRAS()
        return self.logic.slice_index_at(self.volume_node, [slice_to_ras.GetElement(r, 3) for r in range(3)])

    # -- work in the background, with progress and cancel -----------------------------------------
    def _start(self, label: str, work: Callable) -> None:
        """Run ``work(progress, cancel)`` off the event loop; the page shows progress and a cancel."""
        if self.state.samihs_busy:
            return
        self.cancel.clear()
        self._progress = (0, 0, label)
        self.state.samihs_busy, self.state.samihs_progress, self.state.samihs_progress_text = True, 0, f"{label}..."
        self.state.flush()
        asynchronous.create_task(self._run(label, work))

    def _when_idle(self, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as error:  # shown to the user; nothing else changes
            traceback.print_exc()
            self.state.samihs_status = f"SAMIHS could not do that: {error}"

    def _on_main_thread(self, function: Callable[[], object]) -> object:
        """Run ``function`` on the event loop's thread (where the scene renders) and wait for it."""
        if self._loop is None or threading.current_thread() is threading.main_thread():
            return function()

        async def call():
            return function()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result()

    async def _run(self, label: str, work: Callable) -> None:
        def progress(done: int, total: int, message: str) -> None:
            self._progress = (done, total, message)

        loop = self._loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, work, progress, self.cancel)
        while not future.done():
            await asyncio.sleep(0.25)
            done, total, message = self._progress
            with self.state:
                self.state.samihs_progress = 100.0 * done / total if total else 0
                self.state.samihs_progress_text = f"{label}: {message}" if message and message != label else f"{label}..."
        update, error = None, None
        try:
            update = future.result()
        except Exception as failure:  # shown to the user; the scene is left as it was
            traceback.print_exc()
            error = failure
        if self.box_roi is not None:
            self.scene.RemoveNode(self.box_roi)
            self.box_roi = None
            self.points["box"].RemoveAllControlPoints()
        with self.state:
            self.state.samihs_busy = False
            findings = update if isinstance(update, dict) else None  # the detector's, not a click's update
            if findings is not None:
                self._show_findings(findings)
                update = None
            self._refresh(update)
            if error is not None:
                self.state.samihs_status = f"SAMIHS could not segment: {error}"
            elif findings is not None:
                if self.cancel.is_set() and not findings["segment_ids"]:
                    self.state.samihs_status = "Finding bleeds was cancelled: no region was added."
            elif self.cancel.is_set():
                self.state.samihs_status += " (cancelled: the slices done so far are kept; undo removes them)"

    # -- operations (run in the background) -------------------------------------------------------
    def _on_point_placed(self, mode: str) -> None:
        if self._syncing_markers:
            return
        if mode == "box":
            if self.points["box"].GetNumberOfControlPoints() < 2:
                self.state.samihs_status = "Box: now click the opposite corner."
                self.state.flush()
                return
            self._make_box_roi()
            self._start("Segmenting the box", self._segment_box)
        else:
            self._start("Segmenting", self._segment_points)

    def _segment_points(self, progress, cancel):
        self.segment_id, update = self.logic.segment_from_points(
            self.volume_node, self.segmentation_node, self.points["positive"], self.points["negative"],
            segment_id=self.segment_id, progress=progress, cancel=cancel)
        return update

    def _segment_box(self, progress, cancel):
        self.segment_id, update = self.logic.segment_from_points(
            self.volume_node, self.segmentation_node, None, None, segment_id=self.segment_id, roi_node=self.box_roi,
            progress=progress, cancel=cancel)
        return update

    def _find_bleeds(self, progress, cancel) -> dict:
        """The bleed detector on the CT on screen: one segment per region in this CT's segmentation."""
        return self.logic.segment_automatically(self.volume_node, self.segmentation_node, progress, cancel)

    def _show_findings(self, found: dict) -> None:
        """Say what the detector found (or "no bleed found" with its highest score) and list the regions."""
        self._region_texts.update({
            segment_id: f"axial slices {region['slices'][0]}-{region['slices'][1]}, {region['volume_ml']:.1f} mL"
            for segment_id, region in zip(found["segment_ids"], found["regions"])})
        self.state.samihs_status = found["error"] or found["skipped"] or found["detection"]
        if found["segment_ids"] and self.save_path is not None:
            write_segmentation_nrrd(self.scene, self.segmentation_node, self.save_path)
        self._list_regions()

    def _list_regions(self) -> None:
        """The detector's segments of this CT (every segment but the click segment), for the page."""
        segmentation = self.segmentation_node.GetSegmentation()
        ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
        self.state.samihs_regions = [
            {"id": segment_id, "text": f"{segmentation.GetSegment(segment_id).GetName()}: "
                                       f"{self._region_texts.get(segment_id, '')}".rstrip(": ")}
            for segment_id in ids if segment_id != self.segment_id]

    def delete_region(self, segment_id: str) -> None:
        """Remove a detected region the reader rejects (never the click segment)."""
        if segment_id == self.segment_id or self.segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
            raise ValueError("No such detected region on this CT.")
        self.segmentation_node.GetSegmentation().RemoveSegment(segment_id)
        if self.save_path is not None:
            write_segmentation_nrrd(self.scene, self.segmentation_node, self.save_path)
        self._list_regions()
        self._refresh(None)  # the page's volume and slices without the region

    def _make_box_roi(self) -> None:
        """An ROI node spanning the two box corners (on this thread: it changes the scene)."""
        corners = [self.points["box"].GetNthControlPointPositionWorld(i) for i in range(2)]
        low, high = np.minimum(*corners), np.maximum(*corners)
        self.box_roi = self.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "SAMIHS box")
        self.box_roi.SetXYZ(*((low + high) / 2.0))
        self.box_roi.SetRadiusXYZ(*np.maximum((high - low) / 2.0, 0.5))
        self.box_roi.SetDisplayVisibility(False)

    def _undo(self, redo: bool):
        if not self.segment_id:
            raise ValueError("Nothing to undo yet.")
        return self.logic.undo(self.volume_node, self.segmentation_node, self.segment_id, redo=redo)

    def _repropagate(self, progress, cancel):
        return self.logic.propagate(self.volume_node, self.segmentation_node, self.segment_id,
                                    self._axial_slice_on_screen(), progress=progress, cancel=cancel)

    def _on_upload(self, upload) -> None:
        if not upload:
            return
        files = upload if isinstance(upload, list) else [upload]
        try:
            for item in files:
                uploaded = ClientFile(item)
                name = self.library.add_upload(uploaded.name, uploaded.content or b"")
            self.state.samihs_cts = list(self.library.sources)
            self.state.samihs_ct = name  # opens it (state change)
        except Exception as error:
            traceback.print_exc()
            self.state.samihs_status = f"Could not open the upload: {error}"
        self.state.samihs_upload = None

    # -- what the page shows after each operation ---------------------------------------------------
    def _show_markers(self) -> None:
        """The markups show the session's click history (undo/redo restore it with the mask)."""
        self._syncing_markers = True
        try:
            self.logic.show_clicks(self.volume_node, self.points["positive"], self.points["negative"])
        finally:
            self._syncing_markers = False

    def _refresh(self, update) -> None:
        """After an operation (``update``) or a change of CT: the logic's status and report on the page."""
        session = self.logic.existing_session(self.volume_node) if self.volume_node is not None else None
        if update is not None and self.save_path is not None:  # after every change, an emptied segmentation too
            write_segmentation_nrrd(self.scene, self.segmentation_node, self.save_path)
        if self.volume_node is not None:
            self._show_markers()  # the session's click history, after every operation (a failed one too)
        report = self.logic.report(self.volume_node) if self.volume_node is not None else None
        if update is not None:
            self.state.samihs_status = report.headline()
        self.state.samihs_slices = report.slices_text() if report is not None else "No slice segmented yet."
        self.state.samihs_report_ready = report is not None and (
            bool(report.filled_slices) or report.status == NO_BLEED_FOUND)
        if report is None or not report.filled_slices:
            self.state.samihs_volume_ml = self.state.samihs_abc2_ml = None
        else:
            self.state.samihs_volume_ml = round(report.measurements["volume_ml"], 2)
            self.state.samihs_abc2_ml = round(report.measurements["abc_over_2_ml"], 2)
            self.segmentation_node.CreateClosedSurfaceRepresentation()  # the bleed in the 3D view
        self.state.samihs_undo, self.state.samihs_redo = session.history_lengths if session is not None else (0, 0)
        self.state.samihs_clicked = session is not None and bool(session.mask.any())
        self._render()

    # -- downloads (HTTP, token-checked) ------------------------------------------------------------
    def download(self, kind: str) -> Path:
        """Write the requested result file for the CT on screen; its path."""
        if kind not in DOWNLOADS:
            raise KeyError(kind)
        out = self.work_dir / "downloads" / DOWNLOADS[kind][0]
        if kind == "seg":
            return write_segmentation_nrrd(self.scene, self.segmentation_node, out)
        if kind == "dicom":  # the click segment and the detected regions kept, as one segment
            mask = self.logic.hemorrhage_mask(self.volume_node)
            if not mask.any():
                raise ValueError("Nothing segmented yet.")
            return write_dicom_segmentation(mask, self.ct_volume.dicom_files, out)
        return write_report(self._report(), out)

    def _report(self):
        report = self.logic.report(self.volume_node)
        if not report.filled_slices and report.status != NO_BLEED_FOUND:  # a bleed-free head is a result
            raise ValueError("Nothing segmented yet.")
        report.volume, report.model = self.state.samihs_ct, self.model_name
        return report


def download_route(app: SAMIHSWebApp, token: str):
    """aiohttp handler for ``/samihs/download/{kind}?secret=TOKEN``: the file as an attachment."""
    from aiohttp import web

    async def handler(request):
        if not secrets.compare_digest(request.query.get("secret", ""), token):
            return web.Response(status=403, text="SAMIHS: this download needs the launch token.")
        kind = request.match_info["kind"]
        try:
            path = app.download(kind)
        except KeyError:
            return web.Response(status=404, text=f"SAMIHS: no download called {kind}.")
        except (ValueError, OSError) as error:
            return web.Response(status=409, text=f"SAMIHS: {error}")
        return web.FileResponse(path, headers={"Content-Disposition": f'attachment; filename="{path.name}"'})

    return handler


def main(argv: Optional[list] = None) -> None:
    from SAMIHSLib.cpu_tuning import tune_process_for_inference
    from SAMIHSLib.engines import AUTO_ENGINE, ENGINE_CHOICES

    tune_process_for_inference()  # the web app owns its process
    from SAMIHSLib.model_names import DEFAULT_MODEL

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ct", nargs="*", help="CT volumes (NRRD, NIfTI, MHA) or DICOM series folders")
    parser.add_argument("--data", help="a folder of CT volumes and DICOM series folders to choose from")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (0: any free port; the URL says which)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="a further host name clients may use to reach this server (e.g. behind a proxy)")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--engine", default=AUTO_ENGINE, choices=(AUTO_ENGINE,) + ENGINE_CHOICES)
    parser.add_argument("--save", help="write the segmentation here (.seg.nrrd) after every change")
    parser.add_argument("--overwrite", action="store_true", help="let --save replace an existing file")
    args = parser.parse_args(argv)
    cts = [Path(p) for p in args.ct] or ([] if args.data else [SAMPLE_CT])
    try:
        for ct in cts:
            if not ct.exists():
                raise ValueError(f"CT not found: {ct}")
        save_path = check_save_path(Path(args.save), cts[0] if cts else Path(args.data), args.overwrite) \
            if args.save else None
    except ValueError as error:
        parser.exit(2, f"samihs web: error: {error}\n")
    if not is_loopback(args.host):
        print(f"samihs web: warning: listening on {args.host}: other machines can reach this page; anyone with "
              "the URL below (it holds the token) can drive the session.", file=sys.stderr)
    token = secrets.token_urlsafe(24)
    app = SAMIHSWebApp(cts, model=args.model, engine=args.engine, save_path=save_path,
                       data_dir=Path(args.data) if args.data else None)
    app.state.samihs_download_query = f"secret={token}"
    app.server.cli.set_defaults(authKey=token)  # wslink refuses a client without this secret
    network_names = reachable_host_names(args.host) + [name.lower() for name in args.allow_host]
    allowed = set(LOOPBACK_NAMES) | set(network_names)

    def on_bind(wslink_server) -> None:
        wslink_server.app.middlewares.append(same_origin_guard(allowed))
        wslink_server.app.router.add_get("/samihs/download/{kind}", download_route(app, token))

    app.server.controller.on_server_bind.add(on_bind)
    if is_loopback(args.host):
        shown = [args.host]
    else:
        shown = (["127.0.0.1"] if args.host in WILDCARD_HOSTS else []) + network_names

    def announce(**_) -> None:  # once the server listens: the port it got, every name the guard lets through
        for host in shown:
            url_host = f"[{host}]" if ":" in host else host
            print(f"SAMIHS web app: open http://{url_host}:{app.server.port}/?secret={token}", flush=True)

    app.server.controller.on_server_ready.add(announce)
    app.server.start(port=args.port, host=args.host, open_browser=False, show_connection_info=False)


if __name__ == "__main__":
    main()
