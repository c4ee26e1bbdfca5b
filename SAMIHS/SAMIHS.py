"""SAMIHS: click-to-segment intracranial hemorrhage on head CT (3D Slicer scripted module).

Module (metadata, sample data), Widget (Qt wiring only), Logic (MRML work, built on the Qt-free
``SAMIHSSlicer.mrml_logic``, which in turn uses SAMIHSLib) and Test (real assertions, run in Slicer).
"""

import logging
import threading
from pathlib import Path
from typing import Optional

import qt
import vtk

import slicer
from slicer import (vtkMRMLMarkupsFiducialNode, vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode,
                    vtkMRMLSegmentationNode)
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.util import VTKObservationMixin

from SAMIHSSlicer.mrml_logic import SAMIHSMRMLLogic

SAMPLE_FILE = "SAMIHSPhantomHeadCT.nrrd"
SAMPLE_SHA256 = "53a0c8a17a97dade619639dbf54f4d604c672e4571560d0a8675b15aeb59b0e8"
POSITIVE_COLOR = (0.1, 0.85, 0.2)
NEGATIVE_COLOR = (0.95, 0.15, 0.15)
# Display window presets: (width, level) in HU.
WINDOW_PRESETS = {
    "Brain (W80 L40)": (80.0, 40.0),
    "Subdural (W200 L75)": (200.0, 75.0),
    "Stroke (W40 L40)": (40.0, 40.0),
    "Bone (W2800 L600)": (2800.0, 600.0),
}


class SAMIHS(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SAMIHS Hemorrhage"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Markups", "Segmentations"]
        self.parent.contributors = ["SAMIHS developers"]
        self.parent.helpText = (
            "Click on an intracranial hemorrhage in a non-contrast head CT: SAMIHS (Segment Anything with "
            "parameter-refactoring adapters) segments it on that slice, propagates it through the slices and "
            "shows its volume in mL. Add negative points or a box to correct; hand edits in the Segment Editor "
            "are kept. See https://github.com/samihs/SlicerSAMIHS."
        )
        self.parent.acknowledgementText = (
            "Based on SAMIHS (Wang et al., arXiv 2311.08190), Segment Anything (Meta AI) and LiteMedSAM "
            "(bowang-lab). Real-data evaluation uses PhysioNet ct-ich (Hssayeni et al., 2020)."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Register the synthetic head-CT phantom shipped with the module (works offline)."""
    import SampleData

    path = Path(__file__).parent / "Resources" / "SampleData" / SAMPLE_FILE
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="SAMIHS", sampleName="SAMIHSPhantomHeadCT",
        thumbnailFileName=str(Path(__file__).parent / "Resources" / "Icons" / "SAMIHS.png"),
        uris=path.as_uri(), fileNames=SAMPLE_FILE, nodeNames="SAMIHS phantom head CT",
        checksums=f"SHA256:{SAMPLE_SHA256}",
    )


@parameterNodeWrapper
class SAMIHSParameterNode:
    """GUI state: the single source of truth for the widget."""

    inputVolume: vtkMRMLScalarVolumeNode
    segmentationNode: vtkMRMLSegmentationNode
    segmentID: str = ""
    positivePoints: vtkMRMLMarkupsFiducialNode
    negativePoints: vtkMRMLMarkupsFiducialNode
    boxROI: vtkMRMLMarkupsROINode
    checkpointPath: str = ""
    device: str = "auto"
    engine: str = "auto"
    windowPreset: str = "Brain (W80 L40)"
    propagateOnClick: bool = True
    overwriteOtherSegments: bool = False


class SAMIHSWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Qt wiring only: every action is one call into SAMIHSLogic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: Optional[SAMIHSLogic] = None
        self._parameterNode: Optional[SAMIHSParameterNode] = None
        self._parameterNodeGuiTag = None
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
        # The engine menu comes from the one registry the command line and the web app read too.
        from SAMIHSLib.engines import AUTO_ENGINE, ENGINES

        self.ui.engineComboBox.clear()
        self.ui.engineComboBox.addItem(AUTO_ENGINE)
        for name, spec in ENGINES.items():
            self.ui.engineComboBox.addItem(name)
            self.ui.engineComboBox.setItemData(self.ui.engineComboBox.count - 1, spec.label, qt.Qt.ToolTipRole)

        for placeWidget in (self.ui.positivePlaceWidget, self.ui.negativePlaceWidget):
            placeWidget.setPlaceModePersistency(True)
            placeWidget.buttonsVisible = True
            placeWidget.deleteAllControlPointsOptionVisible = True
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.segmentSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onSegmentationChanged)
        self.ui.segmentSelector.connect("currentSegmentChanged(QString)", self.onSegmentChanged)
        self.ui.propagateButton.connect("clicked(bool)", self.onPropagate)
        self.ui.segmentAllButton.connect("clicked(bool)", self.onSegmentAll)
        self.ui.undoButton.connect("clicked(bool)", lambda: self.onUndo(redo=False))
        self.ui.redoButton.connect("clicked(bool)", lambda: self.onUndo(redo=True))
        self.ui.cancelButton.connect("clicked(bool)", self._cancel.set)
        self.ui.windowPresetComboBox.connect("currentTextChanged(QString)", self.onWindowPreset)
        self.ui.deviceComboBox.connect("currentTextChanged(QString)", lambda _: self.updateModelChoice())
        self.ui.engineComboBox.connect("currentTextChanged(QString)", lambda _: self.updateModelChoice())
        self.ui.checkpointPathLineEdit.connect("currentPathChanged(QString)", lambda _: self.updateModelChoice())
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.stopBackgroundEncoding()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        self.stopBackgroundEncoding()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    # -- parameter node -------------------------------------------------------------------------
    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        node = self._parameterNode
        if not node.inputVolume:
            node.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if not node.positivePoints:
            node.positivePoints = self._newPointList("SAMIHS bleed (+)", POSITIVE_COLOR)
        if not node.negativePoints:
            node.negativePoints = self._newPointList("SAMIHS not bleed (-)", NEGATIVE_COLOR)
        if not node.boxROI:
            node.boxROI = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "SAMIHS box")
        self.ui.positivePlaceWidget.setCurrentNode(node.positivePoints)
        self.ui.negativePlaceWidget.setCurrentNode(node.negativePoints)
        self.ui.boxPlaceWidget.setCurrentNode(node.boxROI)
        for markups in (node.positivePoints, node.negativePoints, node.boxROI):
            # Segment when a point is placed or released: no Apply button, no polling.
            for event in (slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                          slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent):
                if not self.hasObserver(markups, event, self.onPromptChanged):
                    self.addObserver(markups, event, self.onPromptChanged)

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
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
            self.onParameterNodeModified()

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        node = self._parameterNode
        ready = bool(node and node.inputVolume)
        self.ui.propagateButton.enabled = ready and not self._busy
        self._updateUndoButtons()
        self.ui.segmentAllButton.enabled = not self._busy
        if node and node.segmentationNode is not self.ui.segmentSelector.currentNode():
            self.ui.segmentSelector.setCurrentNode(node.segmentationNode)
        if ready and self._encoder is None:
            self.startBackgroundEncoding()

    def onSegmentationChanged(self, node) -> None:
        if self._parameterNode:
            self._parameterNode.segmentationNode = node

    def onSegmentChanged(self, segmentID: str) -> None:
        if self._parameterNode:
            self._parameterNode.segmentID = segmentID or ""

    # -- background encoding ------------------------------------------------------------------
    def startBackgroundEncoding(self) -> None:
        """Encode slices outward from the one shown in the red view, if dependencies are present."""
        if self._parameterNode is None or not self._parameterNode.inputVolume or not dependenciesInstalled():
            return
        self.stopBackgroundEncoding()
        volume = self._parameterNode.inputVolume
        sliceNode = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
        center = [sliceNode.GetSliceToRAS().GetElement(r, 3) for r in range(3)]
        try:
            sliceIndex = max(0, self.logic.slice_index_at(volume, center))
            self._encoder = self.logic.start_background_encoding(volume, sliceIndex)
        except Exception as error:  # an unusable volume: report it when the user clicks
            logging.info(f"SAMIHS: no background encoding: {error}")

    def stopBackgroundEncoding(self) -> None:
        if self._encoder is not None:
            self._encoder.stop()
            self._encoder = None

    # -- actions --------------------------------------------------------------------------------
    def updateModelChoice(self) -> None:
        node = self._parameterNode
        if node is None:
            return
        self.stopBackgroundEncoding()
        from SAMIHSLib.model_names import DEFAULT_MODEL

        self.logic.set_model(node.checkpointPath or DEFAULT_MODEL, node.device, node.engine)

    def onWindowPreset(self, text: str) -> None:
        node = self._parameterNode
        if node and node.inputVolume and text in WINDOW_PRESETS:
            display = node.inputVolume.GetDisplayNode()
            if display is not None:
                width, level = WINDOW_PRESETS[text]
                display.AutoWindowLevelOff()
                display.SetWindowLevel(width, level)

    def _ensureSegmentation(self) -> vtkMRMLSegmentationNode:
        node = self._parameterNode
        if not node.segmentationNode:
            segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Hemorrhage segmentation")
            segmentation.CreateDefaultDisplayNodes()
            segmentation.SetReferenceImageGeometryParameterFromVolumeNode(node.inputVolume)
            node.segmentationNode = segmentation
        return node.segmentationNode

    def _run(self, work, message: str) -> None:
        """Run ``work(progress, cancel)`` with the progress bar, cancel button and error display."""
        if self._busy or not ensureDependencies(self._parameterNode.engine if self._parameterNode else "auto"):
            return
        self._busy = True
        self._cancel.clear()
        self.ui.progressBar.visible = True
        self.ui.cancelButton.enabled = True
        self.onParameterNodeModified()
        self.ui.statusLabel.text = message
        try:
            with slicer.util.tryWithErrorDisplay("SAMIHS could not segment.", waitCursor=True):
                work(self.onProgress, self._cancel)
        finally:
            self._busy = False
            self.ui.progressBar.visible = False
            self.ui.cancelButton.enabled = False
            self.ui.cpuWarningLabel.visible = self.logic.model_loaded and self.logic.device_name() == "cpu"
            self.onParameterNodeModified()

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

    def _showUpdate(self, update) -> None:
        self.ui.hemorrhageVolumeLabel.text = f"Hemorrhage volume: {update.volume_ml:.2f} mL"
        reasons = "; ".join(f"{d}: {r}" for d, r in sorted(update.stop_reasons.items()))
        status = [update.message.capitalize()] if update.message else []  # e.g. "No bleed found at the click..."
        status += [f"Propagation stopped ({reasons})"] if reasons else []
        self.ui.statusLabel.text = ". ".join(status)
        self._updateUndoButtons()

    def onPromptChanged(self, caller, event) -> None:
        node = self._parameterNode
        if node is None or not node.inputVolume or self._busy:
            return

        def work(progress, cancel):
            segmentation = self._ensureSegmentation()
            segmentID, update = self.logic.segment_from_points(
                node.inputVolume, segmentation, node.positivePoints, node.negativePoints, node.segmentID,
                node.boxROI, propagate=node.propagateOnClick, overwrite_other_segments=node.overwriteOtherSegments,
                progress=progress, cancel=cancel)
            node.segmentID = segmentID
            self.ui.segmentSelector.setCurrentSegmentID(segmentID)
            self._showUpdate(update)

        self._run(work, "Segmenting...")

    def onPropagate(self) -> None:
        node = self._parameterNode

        def work(progress, cancel):
            self._showUpdate(self.logic.propagate(node.inputVolume, self._ensureSegmentation(), node.segmentID,
                                                  overwrite_other_segments=node.overwriteOtherSegments,
                                                  progress=progress, cancel=cancel))

        self._run(work, "Propagating...")

    def onUndo(self, redo: bool) -> None:
        node = self._parameterNode
        self._run(lambda progress, cancel: self._showUpdate(
            self.logic.undo(node.inputVolume, self._ensureSegmentation(), node.segmentID, redo=redo)),
            "Redo" if redo else "Undo")

    def onSegmentAll(self) -> None:
        def work(progress, cancel):
            results = self.logic.segment_all_loaded_volumes(slicer.mrmlScene, progress, cancel)
            lines = [f"{r['volume']}: {r['volume_ml']:.2f} mL" if not r["error"] else f"{r['volume']}: {r['error']}"
                     for r in results]
            self.ui.statusLabel.text = "\n".join(lines)

        self._run(work, "Segmenting all loaded volumes...")


def dependenciesInstalled(engine: str = "auto") -> bool:
    from SAMIHSSlicer import dependencies

    return not dependencies.missing_packages(engine)


def ensureDependencies(engine: str = "auto") -> bool:
    """Ask once, then install what is missing for ``engine`` (optional engines only when chosen);
    False if the user declined or it failed."""
    from SAMIHSSlicer import dependencies

    missing = dependencies.missing_packages(engine)
    if not missing:
        return True
    if not slicer.util.confirmOkCancelDisplay(
            f"SAMIHS needs these Python packages: {', '.join(missing)}. Install them now? "
            "(PyTorch may take several minutes.)", "SAMIHS dependencies"):
        return False
    try:
        with slicer.util.WaitCursor():
            dependencies.install_missing(slicer.util.pip_install,
                                               lambda message: slicer.util.showStatusMessage(message, 3000), engine)
    except dependencies.DependencyInstallError as error:
        restart = " Restart Slicer, then try again." if error.restart_needed else ""
        slicer.util.errorDisplay(f"{error}{restart}")
        return False
    return True


class SAMIHSLogic(ScriptedLoadableModuleLogic, SAMIHSMRMLLogic):
    """The module's logic: SAMIHSMRMLLogic (MRML nodes in, segment voxels out) plus the
    parameter node. Usable from the Python console and in batch scripts without the GUI."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        SAMIHSMRMLLogic.__init__(self)

    def getParameterNode(self) -> SAMIHSParameterNode:
        return SAMIHSParameterNode(super().getParameterNode())


class SAMIHSTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: the whole click -> 3D -> undo flow on the shipped phantom."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_ClickPropagateUndo()

    def test_ClickPropagateUndo(self):
        import numpy as np

        from SAMIHSLib.metrics import dice
        from SAMIHSLib.phantom import make_head_phantom

        from SAMIHSSlicer import mrml_nodes as core
        from SAMIHSLib.interaction.regions import slice_with_most

        self.assertTrue(ensureDependencies(), "dependencies are needed for this test")
        phantom = make_head_phantom(shape=(16, 256, 256), spacing_zyx=(5.0, 0.9, 0.9))
        volume = slicer.util.addVolumeFromArray(phantom.volume_hu, ijkToRAS=np.diag([-0.9, -0.9, 5.0, 1.0]),
                                                name="phantom CT")
        truth = phantom.bleed_mask(0)
        k = slice_with_most(truth)
        rows, cols = np.nonzero(truth[k])
        ijk = np.array([cols.mean(), rows.mean(), k, 1.0])
        ras = (core.ijk_to_ras(volume) @ ijk)[:3]
        points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
        points.AddControlPoint(*ras)
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        segmentation.CreateDefaultDisplayNodes()

        logic = SAMIHSLogic()
        segmentID, update = logic.segment_from_points(volume, segmentation, points)
        mask = core.read_segment_mask(segmentation, segmentID, volume)
        self.assertGreaterEqual(dice(mask, truth), 0.85)
        self.assertGreater(update.volume_ml, 0.5 * float(truth.sum()) * 0.9 * 0.9 * 5.0 / 1000.0)
        logic.undo(volume, segmentation, segmentID)
        self.assertFalse(core.read_segment_mask(segmentation, segmentID, volume).any())
        self.delayDisplay("SAMIHS click -> 3D -> undo passed")
