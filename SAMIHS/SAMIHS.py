"""SAMIHS: click-to-segment intracranial hemorrhage on head CT (3D Slicer scripted module).

Module (metadata, sample data), ParameterNode (GUI state), Widget (Qt wiring only), Logic (MRML
work on the Qt-free ``SAMIHSSlicer.mrml_logic``, which uses SAMIHSLib; the installer) and Test
(real assertions, run in Slicer). Helpers live in the package ``SAMIHSSlicer/`` beside this file:
Slicer's module factory loads every ``.py`` in this folder as a module.
"""

import logging
import threading
import time
from pathlib import Path
from typing import Annotated, Callable, Dict, Optional

import qt
import vtk

import slicer
from slicer import (vtkMRMLMarkupsFiducialNode, vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode,
                    vtkMRMLSegmentationNode)
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from SAMIHSSlicer.mrml_logic import SAMIHSMRMLLogic
from SAMIHSLib.device import DEVICE_CHOICES
from SAMIHSLib.engines import AUTO_ENGINE, ENGINE_CHOICES, ENGINES  # torch-free: the one engine registry
from SAMIHSLib.imaging.display_windows import DISPLAY_WINDOWS

SAMPLE_NAME = "SAMIHSPhantomHeadCT"
SAMPLE_FILE = "SAMIHSPhantomHeadCT.nrrd"
SAMPLE_SHA256 = "53a0c8a17a97dade619639dbf54f4d604c672e4571560d0a8675b15aeb59b0e8"
POSITIVE_COLOR = (0.1, 0.85, 0.2)
NEGATIVE_COLOR = (0.95, 0.15, 0.15)
# Display window presets by their menu label: (width, level) in HU.
WINDOW_PRESETS: Dict[str, tuple] = {window.label: (window.width, window.level) for window in DISPLAY_WINDOWS}
ENGINE_MENU = (AUTO_ENGINE,) + ENGINE_CHOICES
# While the background encoder runs, a main-thread timer sleeps this long every tick: PythonQt
# holds the GIL while Slicer's event loop is idle, so a Python worker thread runs only then.
GIL_YIELD_INTERVAL_MS = 20
GIL_YIELD_S = 0.005


class SAMIHS(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SAMIHS Hemorrhage")
        self.parent.categories = [_("Segmentation")]
        self.parent.dependencies = ["Markups", "Segmentations"]
        self.parent.contributors = ["SAMIHS developers"]
        self.parent.helpText = _(
            "Click on an intracranial hemorrhage in a non-contrast head CT: SAMIHS (Segment Anything with "
            "parameter-refactoring adapters) segments it on that slice, propagates it through the slices and "
            "shows its volume in mL. Add negative points or a box to correct; hand edits in the Segment Editor "
            "are kept. See https://github.com/samihs/SlicerSAMIHS."
        )
        self.parent.acknowledgementText = _(
            "Based on SAMIHS (Wang et al., arXiv 2311.08190), Segment Anything (Meta AI) and LiteMedSAM "
            "(bowang-lab). Real-data evaluation uses PhysioNet ct-ich (Hssayeni et al., 2020)."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Register the synthetic head-CT phantom shipped with the module (works offline)."""
    import SampleData

    path = Path(__file__).parent / "Resources" / "SampleData" / SAMPLE_FILE
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="SAMIHS", sampleName=SAMPLE_NAME,
        thumbnailFileName=str(Path(__file__).parent / "Resources" / "Icons" / "SAMIHS.png"),
        uris=path.as_uri(), fileNames=SAMPLE_FILE, nodeNames="SAMIHS phantom head CT",
        checksums=f"SHA256:{SAMPLE_SHA256}",
    )


@parameterNodeWrapper
class SAMIHSParameterNode:
    """GUI state: the single source of truth for the widget. A combo box binds only to a
    ``Choice``-annotated field (Slicer's connector refuses a plain ``str``)."""

    inputVolume: vtkMRMLScalarVolumeNode
    segmentationNode: vtkMRMLSegmentationNode
    segmentID: str = ""
    positivePoints: vtkMRMLMarkupsFiducialNode
    negativePoints: vtkMRMLMarkupsFiducialNode
    boxROI: vtkMRMLMarkupsROINode
    # Synced by hand with its ctkPathLineEdit: Slicer's connector there needs a pathlib.Path, and
    # Path("") is Path("."), which is not empty.
    checkpointPath: str = ""
    device: Annotated[str, Choice(list(DEVICE_CHOICES))] = "auto"
    engine: Annotated[str, Choice(list(ENGINE_MENU))] = AUTO_ENGINE
    windowPreset: Annotated[str, Choice(list(WINDOW_PRESETS))] = DISPLAY_WINDOWS[0].label
    propagateOnClick: bool = True
    overwriteOtherSegments: bool = False


def boundWidgets(ui) -> Dict[str, object]:
    """Parameter name -> widget, for every widget of ``ui`` with a SlicerParameterName property."""
    bound = {}
    for widget in vars(ui).values():
        name = widget.property("SlicerParameterName") if hasattr(widget, "property") else None
        if name:
            bound[name] = widget
    return bound


class SAMIHSWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Qt wiring only: every action is one call into SAMIHSLogic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: Optional[SAMIHSLogic] = None
        self._parameterNode: Optional[SAMIHSParameterNode] = None
        self._parameterNodeGuiTag = None
        self._observedMarkups = []
        self._shownWindowPreset: Optional[str] = None
        self._modelChoice = None
        self._cancel = threading.Event()
        self._encoder = None
        self._busy = False

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SAMIHS.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SAMIHSLogic()

        # Placement mode is set each time the user starts placing from these widgets, never on the
        # application's interaction node for every module.
        for placeWidget in (self.ui.positivePlaceWidget, self.ui.negativePlaceWidget):
            placeWidget.placeMultipleMarkups = slicer.qSlicerMarkupsPlaceWidget.ForcePlaceMultipleMarkups
            placeWidget.buttonsVisible = True
            placeWidget.deleteAllControlPointsOptionVisible = True
        self.ui.boxPlaceWidget.placeMultipleMarkups = slicer.qSlicerMarkupsPlaceWidget.ForcePlaceSingleMarkup
        self.ui.boxPlaceWidget.connect("activeMarkupsPlaceModeChanged(bool)", self.onBoxPlaceModeChanged)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.segmentSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onSegmentationChanged)
        self.ui.segmentSelector.connect("currentSegmentChanged(QString)", self.onSegmentChanged)
        self.ui.propagateButton.connect("clicked(bool)", self.onPropagate)
        self.ui.segmentAllButton.connect("clicked(bool)", self.onSegmentAll)
        self.ui.undoButton.connect("clicked(bool)", lambda: self.onUndo(redo=False))
        self.ui.redoButton.connect("clicked(bool)", lambda: self.onUndo(redo=True))
        self.ui.cancelButton.connect("clicked(bool)", self._cancel.set)
        self.ui.checkpointPathLineEdit.connect("currentPathChanged(QString)", self.onCheckpointPathChanged)
        self._gilYieldTimer = qt.QTimer()
        self._gilYieldTimer.setInterval(GIL_YIELD_INTERVAL_MS)
        self._gilYieldTimer.connect("timeout()", lambda: time.sleep(GIL_YIELD_S))
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.stopBackgroundEncoding()
        self.setParameterNode(None)
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.stopBackgroundEncoding()
        self.setParameterNode(None)
        self.logic.release_volumes()

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    # -- parameter node -------------------------------------------------------------------------
    def initializeParameterNode(self) -> None:
        node = self.logic.getParameterNode()
        if not node.inputVolume:
            node.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if not node.positivePoints:
            node.positivePoints = self._newPointList(_("SAMIHS bleed (+)"), POSITIVE_COLOR)
        if not node.negativePoints:
            node.negativePoints = self._newPointList(_("SAMIHS not bleed (-)"), NEGATIVE_COLOR)
        if not node.boxROI:
            node.boxROI = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", _("SAMIHS box"))
        self.setParameterNode(node)

    @staticmethod
    def _newPointList(name: str, color) -> vtkMRMLMarkupsFiducialNode:
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
        node.CreateDefaultDisplayNodes()
        node.GetDisplayNode().SetSelectedColor(color)
        node.GetDisplayNode().SetColor(color)
        return node

    def setParameterNode(self, inputParameterNode: Optional[SAMIHSParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
            self._unobserveMarkups()
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # connectGui returns no tag on Slicer 5.8 (nothing could be disconnected); this call
            # returns one on 5.8 and 5.10 alike.
            self._parameterNodeGuiTag = self._parameterNode.connectParametersToGui(boundWidgets(self.ui))
            self._describeMenuItems()  # a Choice connector refills its combo box on every connect
            self._observeMarkups()
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
            self.onParameterNodeModified()

    def _describeMenuItems(self) -> None:
        for index, name in enumerate(ENGINE_MENU):
            label = ENGINES[name].label if name in ENGINES else _("the fastest exact engine installed, or bf16 where it "
                                                                   "was shown to match fp32 for the model")
            self.ui.engineComboBox.setItemData(index, label, qt.Qt.ToolTipRole)
        for index, (name, (width, level)) in enumerate(WINDOW_PRESETS.items()):
            tip = _("Display window {width:g} HU wide, centred at {level:g} HU").format(width=width, level=level)
            self.ui.windowPresetComboBox.setItemData(index, tip, qt.Qt.ToolTipRole)

    def _observeMarkups(self) -> None:
        node = self._parameterNode
        self.ui.positivePlaceWidget.setCurrentNode(node.positivePoints)
        self.ui.negativePlaceWidget.setCurrentNode(node.negativePoints)
        self.ui.boxPlaceWidget.setCurrentNode(node.boxROI)
        for markups in (node.positivePoints, node.negativePoints, node.boxROI):
            # Segment when a point is placed or released: no Apply button, no polling.
            for event in (slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                          slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent):
                self.addObserver(markups, event, self.onPromptChanged)
            self._observedMarkups.append(markups)

    def _unobserveMarkups(self) -> None:
        for markups in self._observedMarkups:
            for event in (slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                          slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent):
                self.removeObserver(markups, event, self.onPromptChanged)
        self._observedMarkups = []

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        node = self._parameterNode
        if node is None:
            return
        ready = bool(node.inputVolume)
        self.ui.propagateButton.enabled = ready and not self._busy
        self.ui.segmentAllButton.enabled = not self._busy
        self._updateUndoButtons()
        if node.segmentationNode is not self.ui.segmentSelector.currentNode():
            self.ui.segmentSelector.setCurrentNode(node.segmentationNode)
        if self.ui.checkpointPathLineEdit.currentPath != node.checkpointPath:
            self.ui.checkpointPathLineEdit.currentPath = node.checkpointPath
        # The CT window changes when the user picks a preset, not when the panel (re)connects.
        if self._shownWindowPreset is not None and node.windowPreset != self._shownWindowPreset:
            self.applyWindowPreset()
        self._shownWindowPreset = node.windowPreset
        choice = (node.checkpointPath, node.device, node.engine)
        if choice != self._modelChoice:
            if self._modelChoice is not None:
                self.stopBackgroundEncoding()
            self._modelChoice = choice
            self.logic.choose_model(*choice)

    def onSegmentationChanged(self, node) -> None:
        if self._parameterNode:
            self._parameterNode.segmentationNode = node

    def onSegmentChanged(self, segmentID: str) -> None:
        if self._parameterNode:
            self._parameterNode.segmentID = segmentID or ""

    def onCheckpointPathChanged(self, path: str) -> None:
        if self._parameterNode and self._parameterNode.checkpointPath != path:
            self._parameterNode.checkpointPath = path

    def applyWindowPreset(self) -> None:
        node = self._parameterNode
        display = node.inputVolume.GetDisplayNode() if node and node.inputVolume else None
        if display is not None and node.windowPreset in WINDOW_PRESETS:
            width, level = WINDOW_PRESETS[node.windowPreset]
            display.AutoWindowLevelOff()
            display.SetWindowLevel(width, level)

    def onBoxPlaceModeChanged(self, active: bool) -> None:
        """A new box replaces the old one in the same ROI node (the one the logic reads)."""
        if active and self._parameterNode and self._parameterNode.boxROI:
            self._parameterNode.boxROI.RemoveAllControlPoints()

    # -- background encoding ------------------------------------------------------------------
    def startBackgroundEncoding(self) -> None:
        """Encode the volume's slices outward from the axial slice on screen, once the model is
        loaded and the volume has a session (never loads either on the GUI thread)."""
        node = self._parameterNode
        if node is None or not node.inputVolume or self._encoder is not None:
            return
        if not self.logic.model_loaded or self.logic.existing_session(node.inputVolume) is None:
            return
        sliceIndex = self.logic.existing_slice_index_at(node.inputVolume, self._axialSliceCenterRAS())
        self._encoder = self.logic.start_background_encoding(node.inputVolume, sliceIndex)
        self._gilYieldTimer.start()

    def _axialSliceCenterRAS(self):
        """The centre of the first axial slice view of the layout (None: no axial view shown)."""
        layoutManager = slicer.app.layoutManager()
        for name in layoutManager.sliceViewNames():
            sliceNode = layoutManager.sliceWidget(name).mrmlSliceNode()
            if sliceNode.GetOrientation() == "Axial":
                return [sliceNode.GetSliceToRAS().GetElement(row, 3) for row in range(3)]
        return None

    def stopBackgroundEncoding(self) -> None:
        if self._encoder is not None:
            self._encoder.stop()
            self._encoder = None
        self._gilYieldTimer.stop()

    # -- actions --------------------------------------------------------------------------------
    def _ensureSegmentation(self) -> vtkMRMLSegmentationNode:
        node = self._parameterNode
        if not node.segmentationNode:
            node.segmentationNode = self.logic.new_segmentation_node(node.inputVolume)
        return node.segmentationNode

    def _run(self, work: Callable, message: str) -> None:
        """Run ``work(progress, cancel)`` with the progress bar, cancel button and error display.

        Busy from the first step: dependencies are installed (after one confirmation) and the
        model is loaded under a progress dialog, so a second click meanwhile does nothing."""
        if self._busy or self._parameterNode is None:
            return
        self._busy = True
        self.stopBackgroundEncoding()
        self._cancel.clear()
        self.onParameterNodeModified()
        try:
            if not self._ensureDependencies() or not self._ensureModelReady():
                return
            self.ui.progressBar.visible = True
            self.ui.cancelButton.enabled = True
            self.ui.statusLabel.text = message
            with slicer.util.tryWithErrorDisplay(_("SAMIHS could not segment."), waitCursor=True):
                work(self.onProgress, self._cancel)
        finally:
            self._busy = False
            self.ui.progressBar.visible = False
            self.ui.cancelButton.enabled = False
            self.ui.cpuWarningLabel.visible = self.logic.model_loaded and self.logic.device_name() == "cpu"
            self.onParameterNodeModified()
            self.startBackgroundEncoding()

    def _ensureDependencies(self) -> bool:
        """Install what the chosen engine needs after one confirmation; False if declined or failed
        (the error dialog then holds pip's output and offers a restart when one may help)."""
        engine = self._parameterNode.engine
        missing = self.logic.missing_packages(engine)
        if not missing:
            return True
        if not slicer.util.confirmOkCancelDisplay(
                _("SAMIHS needs these Python packages: {packages}. Install them now? (PyTorch may take several "
                  "minutes.)").format(packages=", ".join(missing)), _("SAMIHS dependencies")):
            return False
        from SAMIHSSlicer.dependencies import DependencyInstallError

        try:
            with slicer.util.WaitCursor():
                self.logic.install_dependencies(engine, lambda text: slicer.util.showStatusMessage(text, 3000))
        except DependencyInstallError as error:
            slicer.util.errorDisplay(_("SAMIHS could not install its Python packages: {error}").format(error=error),
                                     detailedText=error.details or str(error))
            if error.restart_needed and slicer.util.confirmYesNoDisplay(
                    _("Restarting Slicer may finish the installation. Restart now?")):
                slicer.util.restart()
            return False
        return True

    def _ensureModelReady(self) -> bool:
        """Load the model (and export its engine on first use) and copy the volume off the GUI
        thread, under a progress dialog. False (after an error dialog) if that failed."""
        node = self._parameterNode
        if node.inputVolume is None:
            return True
        if self.logic.model_loaded and self.logic.existing_session(node.inputVolume) is not None:
            return True
        ready = runWithProgressDialog(lambda: self.logic.prepare_volume(node.inputVolume),
                                      _("Loading the SAMIHS model and the volume (the first use exports the "
                                        "model for this CPU: about a minute)..."))
        if ready:
            self.ui.statusLabel.text = _("Model ready: {engine}").format(engine=self.logic.engine_description())
        return ready

    def onProgress(self, done: int, total: int, message: str) -> None:
        self.ui.progressBar.maximum = max(total, 1)
        self.ui.progressBar.value = done
        self.ui.statusLabel.text = message
        slicer.app.processEvents()  # keeps Cancel clickable

    def _updateUndoButtons(self) -> None:
        """Undo/Redo are enabled only when the volume's session has a step to undo/redo."""
        node = self._parameterNode
        session = self.logic.existing_session(node.inputVolume) if node and node.inputVolume else None
        self.ui.undoButton.enabled = bool(session and session.can_undo) and not self._busy
        self.ui.redoButton.enabled = bool(session and session.can_redo) and not self._busy

    def _showReport(self) -> None:
        """The volume's hemorrhage after an operation: the logic's report (the click segment and any
        detected regions kept) gives both the mL and the status lines."""
        report = self.logic.report(self._parameterNode.inputVolume)
        self.ui.hemorrhageVolumeLabel.text = _("Hemorrhage volume: {ml:.2f} mL").format(
            ml=report.measurements.get("volume_ml", 0.0))
        self.ui.statusLabel.text = "\n".join(report.status_lines())
        self._updateUndoButtons()

    def onPromptChanged(self, caller, event) -> None:
        node = self._parameterNode
        if node is None or not node.inputVolume or self._busy:
            return
        if caller is node.boxROI and not self.logic.box_is_drawn(node.inputVolume, node.boxROI):
            self.ui.statusLabel.text = _("Box: drag to, or click, the opposite corner.")
            return

        def work(progress, cancel):
            segmentID, _update = self.logic.segment_from_points(
                node.inputVolume, self._ensureSegmentation(), node.positivePoints, node.negativePoints,
                node.segmentID, node.boxROI, propagate=node.propagateOnClick,
                overwrite_other_segments=node.overwriteOtherSegments, progress=progress, cancel=cancel)
            node.segmentID = segmentID
            self.ui.segmentSelector.setCurrentSegmentID(segmentID)
            self._showReport()

        self._run(work, _("Segmenting..."))

    def onPropagate(self) -> None:
        node = self._parameterNode

        def work(progress, cancel):
            self.logic.propagate(node.inputVolume, self._ensureSegmentation(), node.segmentID,
                                 overwrite_other_segments=node.overwriteOtherSegments, progress=progress, cancel=cancel)
            self._showReport()

        self._run(work, _("Propagating..."))

    def onUndo(self, redo: bool) -> None:
        node = self._parameterNode

        def work(progress, cancel):
            self.logic.undo(node.inputVolume, self._ensureSegmentation(), node.segmentID, redo=redo,
                            positive_node=node.positivePoints, negative_node=node.negativePoints)
            self._showReport()

        self._run(work, _("Redo") if redo else _("Undo"))

    def onSegmentAll(self) -> None:
        def work(progress, cancel):
            results = self.logic.segment_all_loaded_volumes(slicer.mrmlScene, progress, cancel)
            lines = []
            for result in results:
                if result["error"]:
                    lines.append(_("{volume}: failed: {error}").format(**result))
                elif result["skipped"]:
                    lines.append(_("{volume}: skipped: {skipped}").format(**result))
                elif not result["segment_ids"]:  # no bleed found, or only what an earlier search found
                    lines.append(_("{volume}: {detection}").format(**result))
                else:
                    lines.append(_("{volume}: {ml:.2f} mL ({detection}); delete a segment to reject its region").format(
                        volume=result["volume"], ml=result["volume_ml"], detection=result["detection"]))
            self.ui.statusLabel.text = "\n".join(lines)

        self._run(work, _("Segmenting all loaded volumes..."))


def runWithProgressDialog(function: Callable[[], object], text: str) -> bool:
    """Run ``function`` on a worker thread while the GUI thread shows a busy progress dialog and
    keeps processing events; True when it finished, False (after an error dialog) when it raised."""
    outcome: Dict[str, BaseException] = {}

    def target() -> None:
        try:
            function()
        except BaseException as error:  # shown to the user below, on the GUI thread
            outcome["error"] = error

    dialog = slicer.util.createProgressDialog(labelText=text, maximum=0, windowTitle=_("SAMIHS"))
    worker = threading.Thread(target=target, name="SAMIHS model loading", daemon=True)
    try:
        worker.start()
        while worker.is_alive():
            slicer.app.processEvents()
            worker.join(0.05)  # releases the GIL, so the worker runs
    finally:
        dialog.close()
    if "error" in outcome:
        logging.error("SAMIHS: %s", outcome["error"])
        slicer.util.errorDisplay(_("SAMIHS could not load the model or the volume: {error}").format(
            error=outcome["error"]))
        return False
    return True


class SAMIHSLogic(ScriptedLoadableModuleLogic, SAMIHSMRMLLogic):
    """The module's logic: SAMIHSMRMLLogic (MRML nodes in, segment voxels out), the parameter
    node and the installer. Usable from the Python console and in batch scripts without the GUI."""

    def __init__(self) -> None:
        # ScriptedLoadableModuleLogic.__init__ calls super().__init__(): SAMIHSMRMLLogic's, once.
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self) -> SAMIHSParameterNode:
        return SAMIHSParameterNode(super().getParameterNode())

    @staticmethod
    def missing_packages(engine: str = "auto") -> list:
        """Import names of the Python packages ``engine`` still needs (empty when ready)."""
        from SAMIHSSlicer import dependencies

        return dependencies.missing_packages(engine)

    @staticmethod
    def install_dependencies(engine: str = "auto", progress: Optional[Callable[[str], None]] = None) -> None:
        """Install what ``engine`` needs (PyTorch through the PyTorch extension when present);
        raises ``SAMIHSSlicer.dependencies.DependencyInstallError`` with pip's output."""
        from SAMIHSSlicer import dependencies

        dependencies.install_missing(slicer.util.pip_install, progress, engine)


def sampleBleedClick(volume) -> tuple:
    """(world RAS mm, volume slice k) of a click on the largest suspected bleed of a volume node:
    the first automatic seed, as ``samihs batch --prompts auto`` finds it (the self-test's click)."""
    import numpy as np

    from SAMIHSLib.interaction.auto_seeds import find_seed_clicks
    from SAMIHSLib.io.volume_io import AxialStack
    from SAMIHSSlicer import mrml_nodes

    stack = AxialStack.of(mrml_nodes.ct_volume_from_node(volume))
    seeds = find_seed_clicks(stack.array_hu, stack.spacing_zyx)
    if not seeds:
        raise ValueError(f"No suspected bleed in '{volume.GetName()}' to click on.")
    k, i, j = stack.click_to_volume(*seeds[0])
    return tuple(float(v) for v in (mrml_nodes.ijk_to_ras(volume) @ np.array([i, j, k, 1.0]))[:3]), int(round(k))


class SAMIHSTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload and Test): the panel on the registered sample, a click, undo."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_PanelClickUndo()

    def test_PanelClickUndo(self):
        missing = SAMIHSLogic.missing_packages()
        if missing:  # a test never installs: the panel asks the user first
            self.skipTest(f"install SAMIHS's packages from the module panel first (missing: {', '.join(missing)})")
        import SampleData

        from SAMIHSSlicer import mrml_nodes

        registerSampleData()
        volume = SampleData.downloadSample(SAMPLE_NAME)
        slicer.util.selectModule("SAMIHS")
        widget = slicer.modules.SAMIHSWidget
        node = widget._parameterNode
        self.assertIs(node.inputVolume, volume)
        self.assertEqual(node.engine, AUTO_ENGINE)

        ras, k = sampleBleedClick(volume)
        node.positivePoints.AddControlPoint(*ras)  # fires PointPositionDefinedEvent: the panel segments
        self.assertTrue(node.segmentID, "the click made no segment")
        mask = mrml_nodes.read_segment_mask(node.segmentationNode, node.segmentID, volume)
        self.assertTrue(mask[k].any(), "no bleed on the clicked slice")
        self.assertGreater(int(mask.any(axis=(1, 2)).sum()), 1, "the bleed did not propagate")
        self.assertGreater(float(widget.ui.hemorrhageVolumeLabel.text.split()[2]), 0.0)

        widget.onUndo(redo=False)
        self.assertFalse(mrml_nodes.read_segment_mask(node.segmentationNode, node.segmentID, volume).any())
        self.assertEqual(node.positivePoints.GetNumberOfControlPoints(), 0, "undo left the undone point")
        self.delayDisplay("SAMIHS panel: click -> 3D -> undo passed")
