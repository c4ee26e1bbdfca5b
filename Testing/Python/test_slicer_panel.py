"""The module panel (SAMIHS/SAMIHS.py) built and driven with Slicer's own Python of 5.8.1 and
5.10.0 (parameterNodeWrapper, its GUI connectors, util, ScriptedLoadableModule) on real MRML
(slicer-core), with stand-in Qt widget classes (Testing/Python/slicer_app.py): what raises here
raises when the panel opens in Slicer."""

import shlex
import subprocess
import sys
import threading
import unittest
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from conftest import REPO, require

slicer = require("slicer", module_level=True)

from slicer_app import TAGS, open_panel, slicer_app  # noqa: E402
from SAMIHSLib.io.volume_io import CTVolume, write_ct  # noqa: E402
from mrml_files import load_volume  # noqa: E402

UI_FILE = REPO / "SAMIHS" / "Resources" / "UI" / "SAMIHS.ui"


def bound_names():
    return [p.find("string").text for w in ET.parse(UI_FILE).getroot().iter("widget") for p in w.findall("property")
            if p.get("name") == "SlicerParameterName"]


@pytest.fixture(params=TAGS)
def app(request):
    with slicer_app(request.param) as context:
        yield context


@pytest.fixture
def a_package_missing(monkeypatch):
    """One requirement that is not installed (and cannot be): the installer has work to do."""
    from SAMIHSSlicer import dependencies

    monkeypatch.setitem(dependencies.REQUIREMENTS, "samihs_no_such_module",
                        ("samihs-no-such-package", "samihs-no-such-package>=1,<2"))


@pytest.fixture
def app_with_ct(app, tmp_path, small_phantom):
    volume = CTVolume(small_phantom.volume_hu, (0.9, 0.9, 5.0), (-110.0, 95.0, -30.0), np.eye(3))
    node = load_volume(app.scene, write_ct(tmp_path / "head_ct.nrrd", volume), "head CT")
    node.CreateDefaultDisplayNodes()
    return app, node


def test_every_binding_of_the_ui_connects_and_follows_both_ways(app):
    widget = open_panel(app)
    node = widget._parameterNode
    assert widget._parameterNodeGuiTag is not None  # 5.8's connectGui would have returned None
    assert set(bound_names()) <= set(node.allParameters)
    assert [widget.ui.windowPresetComboBox.itemText(i) for i in range(widget.ui.windowPresetComboBox.count)] == \
        list(app.module.WINDOW_PRESETS)
    widget.ui.windowPresetComboBox.currentIndex = 3
    assert node.windowPreset == "Bone (W2800 L600)"
    node.engine = "torch"
    assert widget.ui.engineComboBox.currentText == "torch"
    widget.ui.propagateOnClickCheckBox.checked = False
    assert node.propagateOnClick is False


def test_reentering_keeps_the_ct_window_and_the_menu_tooltips(app_with_ct):
    app, volume = app_with_ct
    widget = open_panel(app)
    display = volume.GetDisplayNode()
    display.AutoWindowLevelOff()
    display.SetWindowLevel(123.0, 45.0)  # the user's own window
    first = widget._parameterNode
    for _ in range(2):  # the module is left and entered again
        widget.exit()
        widget.enter()
    assert (display.GetWindow(), display.GetLevel()) == (123.0, 45.0)
    assert first._parameterGUIs == {}  # the old connection is gone (5.8: no tag, nothing was disconnected)
    labels = [widget.ui.engineComboBox.itemData(i, 3) for i in range(widget.ui.engineComboBox.count)]
    assert all(labels) and labels[1:] == [spec.label for spec in app.module.ENGINES.values()]
    widget.ui.windowPresetComboBox.currentIndex = 1  # the user picks Subdural
    assert (display.GetWindow(), display.GetLevel()) == (200.0, 75.0)


def test_the_checkpoint_path_is_synced_by_hand_and_empty_means_the_default(app):
    widget = open_panel(app)
    widget.ui.checkpointPathLineEdit.currentPath = "/models/mine.samihs.pt"
    assert widget._parameterNode.checkpointPath == "/models/mine.samihs.pt"
    assert widget.logic.model_spec == "/models/mine.samihs.pt"
    widget.ui.checkpointPathLineEdit.currentPath = ""
    assert widget._parameterNode.checkpointPath == "" and widget.logic.model_spec == "lite-base"


def test_opening_the_panel_leaves_placement_and_models_alone(app_with_ct):
    app, _ = app_with_ct
    app.interaction.SetPlaceModePersistence(0)
    constructed = []
    original_init = app.module.SAMIHSMRMLLogic.__init__

    def counting_init(self, *args, **kwargs):
        constructed.append(self)
        original_init(self, *args, **kwargs)

    app.module.SAMIHSMRMLLogic.__init__ = counting_init
    try:
        widget = open_panel(app)
    finally:
        app.module.SAMIHSMRMLLogic.__init__ = original_init
    assert len(constructed) == 1  # the logic's __init__ ran once
    assert app.interaction.GetPlaceModePersistence() == 0  # other modules' markups are not changed
    assert widget.ui.positivePlaceWidget.placeMultipleMarkups == slicer.qSlicerMarkupsPlaceWidget.ForcePlaceMultipleMarkups
    assert widget.ui.boxPlaceWidget.placeMultipleMarkups == slicer.qSlicerMarkupsPlaceWidget.ForcePlaceSingleMarkup
    assert not widget.logic.model_loaded and widget._encoder is None  # nothing loaded on the GUI thread
    assert widget._axialSliceCenterRAS() is not None
    app.app.slice_node.SetOrientation("Sagittal")
    assert widget._axialSliceCenterRAS() is None  # no view is assumed to be axial by its name


def test_markups_observers_end_with_the_panel(app):
    widget = open_panel(app)
    points = widget._parameterNode.positivePoints
    event = slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent
    assert widget.hasObserver(points, event, widget.onPromptChanged)
    widget.exit()
    assert not widget.hasObserver(points, event, widget.onPromptChanged)
    widget.enter()
    assert widget.hasObserver(points, event, widget.onPromptChanged)


def test_a_click_on_the_panel_loads_the_model_off_the_gui_thread_segments_and_undoes(app_with_ct, lite_model):
    app, volume = app_with_ct
    widget = open_panel(app)
    loaded_on = []

    def loader(spec, device):
        loaded_on.append(threading.current_thread().name)
        return lite_model

    widget.logic.model_loader = loader
    widget.logic.engine_name = "torch"
    node = widget._parameterNode
    ras, k = app.module.sampleBleedClick(volume)
    node.positivePoints.AddControlPoint(*ras)  # Slicer fires PointPositionDefinedEvent: the panel segments
    assert loaded_on == ["SAMIHS model loading"] and any(d[0] == "progressDialog" for d in app.dialogs)
    assert [d for d in app.dialogs if d[0] == "errorDisplay"] == []
    from SAMIHSSlicer import mrml_nodes

    mask = mrml_nodes.read_segment_mask(node.segmentationNode, node.segmentID, volume)
    assert mask[k].any() and mask.any(axis=(1, 2)).sum() > 1
    assert float(widget.ui.hemorrhageVolumeLabel.text.split()[2]) > 0.5
    assert app.app.processed_events > 0  # progress reached the event loop
    widget.onUndo(redo=False)
    assert not mrml_nodes.read_segment_mask(node.segmentationNode, node.segmentID, volume).any()
    assert node.positivePoints.GetNumberOfControlPoints() == 0  # the undone point is gone from the list
    assert widget.ui.hemorrhageVolumeLabel.text == "Hemorrhage volume: 0.00 mL"  # the report after the undo


def test_install_runs_inside_the_busy_guard_and_a_pip_failure_is_shown_with_pip_output(app_with_ct, a_package_missing):
    app, volume = app_with_ct
    widget = open_panel(app)
    pip_calls = []

    def pip_install(arguments: str) -> None:  # Slicer's pip_install runs pip and raises CalledProcessError
        pip_calls.append(arguments)
        widget.onPromptChanged(None, None)  # a second click while pip runs
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--dry-run", *shlex.split(arguments)],
                       check=True, capture_output=True, text=True)

    app.slicer.util.pip_install = pip_install
    widget._parameterNode.positivePoints.AddControlPoint(0.0, 0.0, 0.0)
    assert len(pip_calls) == 1
    errors = [d for d in app.dialogs if d[0] == "errorDisplay"]
    assert len(errors) == 1 and "samihs-no-such-package" in errors[0][2]["detailedText"]
    assert "No matching distribution" in errors[0][2]["detailedText"] or "ERROR" in errors[0][2]["detailedText"]
    assert not widget._busy and not widget.logic.model_loaded


def test_the_self_test_does_not_install_packages(app, a_package_missing):
    app.slicer.util.pip_install = lambda arguments: pytest.fail("the self-test ran pip")
    with pytest.raises(unittest.SkipTest, match="samihs_no_such_module"):
        app.module.SAMIHSTest().test_PanelClickUndo()
