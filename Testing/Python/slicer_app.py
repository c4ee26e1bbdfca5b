"""The Slicer application around SAMIHS/SAMIHS.py, as far as it can be had here.

Real: MRML (PyPI slicer-core: scene, volume, markups, segmentation, interaction and slice nodes),
VTK, and Slicer's own Python at a release tag from ../shared/slicer-reference (``slicer.util``,
``slicer.parameterNodeWrapper``, ``slicer.ScriptedLoadableModule``), unmodified.
Stand-ins (no PythonQt here): the Qt/CTK/Slicer widget classes the module's .ui uses, built from
the .ui file, with the behaviour the module relies on (a QComboBox drops its items' data on
``clear()`` and signals index changes; ``qSlicerMarkupsPlaceWidget.setPlaceModePersistency`` sets
the application's interaction node, as Slicer's C++ does); dialogs record what they were asked.
"""

import contextlib
import importlib.util
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, Iterator, List

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO.parent / "shared" / "slicer-reference"
TAGS = ("v5.8.1", "v5.10.0")


class Signal:
    def __init__(self) -> None:
        self.slots: List = []

    def connect(self, slot) -> None:
        self.slots.append(slot)

    def disconnect(self, slot) -> None:
        self.slots.remove(slot)

    def emit(self, *args) -> None:
        for slot in list(self.slots):
            slot(*args[:_arity(slot, len(args))])  # PythonQt passes a slot only the arguments it takes


def _arity(slot, offered: int) -> int:
    import inspect

    try:
        parameters = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):
        return offered
    if any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return offered
    return min(offered, sum(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                            for p in parameters) or 0)


class QObject:
    SIGNALS = ()

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._properties: Dict[str, object] = {}
        self._children: List["QObject"] = []
        self._parent = None
        for signal in self.SIGNALS + ("destroyed",):
            setattr(self, signal, Signal())

    def connect(self, signature: str, slot) -> None:  # PythonQt's connect("signal(args)", slot)
        getattr(self, signature.split("(")[0]).connect(slot)

    def property(self, name: str):
        return self._properties.get(name)

    def setProperty(self, name: str, value) -> None:
        self._properties[name] = value

    def children(self) -> List["QObject"]:
        return list(self._children)

    def parent(self):
        return self._parent

    def addChild(self, child: "QObject") -> None:
        child._parent = self
        self._children.append(child)

    def findChildren(self, kind=None) -> List["QObject"]:
        found = []
        for child in self._children:
            if kind is None or isinstance(child, kind):
                found.append(child)
            found += child.findChildren(kind)
        return found

    def isWidgetType(self) -> bool:
        return True


class QWidget(QObject):
    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self.enabled, self.visible, self.toolTip, self.text = True, True, "", ""
        self._layout = None

    def setLayout(self, layout) -> None:
        self._layout = layout

    def layout(self):
        return self._layout

    def setMRMLScene(self, scene) -> None:
        self.mrmlScene = scene

    def show(self) -> None:
        self.visible = True


class QApplication:
    @staticmethod
    def setOverrideCursor(cursor) -> None:
        pass

    @staticmethod
    def restoreOverrideCursor() -> None:
        pass


class QVBoxLayout:
    def __init__(self) -> None:
        self.widgets: List[QWidget] = []

    def addWidget(self, widget) -> None:
        self.widgets.append(widget)


class QComboBox(QWidget):
    SIGNALS = ("currentIndexChanged", "currentTextChanged")

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self._items: List[list] = []  # [text, {role: data}]
        self._current = -1

    @property
    def count(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items = []
        self._set_index(-1)

    def addItem(self, text: str) -> None:
        self._items.append([text, {}])
        if self._current == -1:
            self._set_index(0)

    def setItemData(self, index: int, value, role: int) -> None:
        self._items[index][1][role] = value

    def itemData(self, index: int, role: int):
        return self._items[index][1].get(role)

    def itemText(self, index: int) -> str:
        return self._items[index][0]

    @property
    def currentIndex(self) -> int:
        return self._current

    @currentIndex.setter
    def currentIndex(self, index: int) -> None:
        self._set_index(index)

    @property
    def currentText(self) -> str:
        return self._items[self._current][0] if self._current >= 0 else ""

    def _set_index(self, index: int) -> None:
        if index != self._current:
            self._current = index
            self.currentIndexChanged.emit(index)
            self.currentTextChanged.emit(self.currentText)


class QCheckBox(QWidget):
    SIGNALS = ("toggled", "stateChanged")

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self._checked = False

    @property
    def checked(self) -> bool:
        return self._checked

    @checked.setter
    def checked(self, value: bool) -> None:
        if bool(value) != self._checked:
            self._checked = bool(value)
            self.toggled.emit(self._checked)
            self.stateChanged.emit(2 if self._checked else 0)


class QPushButton(QWidget):
    SIGNALS = ("clicked", "toggled")


class QProgressBar(QWidget):
    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self.value, self.maximum = 0, 100


class QTimer(QObject):
    SIGNALS = ("timeout",)

    def __init__(self) -> None:
        super().__init__()
        self.active, self.interval = False, 0

    def setInterval(self, milliseconds: int) -> None:
        self.interval = milliseconds

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False


class ctkPathLineEdit(QWidget):
    SIGNALS = ("currentPathChanged",)

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self._path = ""

    @property
    def currentPath(self) -> str:
        return self._path

    @currentPath.setter
    def currentPath(self, path: str) -> None:
        if path != self._path:
            self._path = path
            self.currentPathChanged.emit(path)


class qMRMLNodeComboBox(QWidget):
    SIGNALS = ("currentNodeChanged", "currentNodeIDChanged")

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self._node, self.nodeTypes = None, []

    def currentNode(self):
        return self._node

    def setCurrentNode(self, node) -> None:
        if node is not self._node:
            self._node = node
            self.currentNodeChanged.emit(node)


class qMRMLSegmentSelectorWidget(qMRMLNodeComboBox):
    SIGNALS = ("currentNodeChanged", "currentSegmentChanged")

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self.noneEnabled, self._segment = False, ""

    def setCurrentNode(self, node) -> None:
        # Slicer selects the node's first segment unless "None" is a choice.
        super().setCurrentNode(node)
        first = node.GetSegmentation().GetNthSegmentID(0) if node and node.GetSegmentation().GetNumberOfSegments() else ""
        self.setCurrentSegmentID("" if self.noneEnabled else first)

    def currentSegmentID(self) -> str:
        return self._segment

    def setCurrentSegmentID(self, segment_id: str) -> None:
        if segment_id != self._segment:
            self._segment = segment_id
            self.currentSegmentChanged.emit(segment_id)


class qSlicerMarkupsPlaceWidget(QWidget):
    SIGNALS = ("activeMarkupsPlaceModeChanged",)
    HideCreateMarkupsOption, ShowPlaceMultipleMarkupsOption, ForcePlaceSingleMarkup, ForcePlaceMultipleMarkups = range(4)
    scene = None  # the application's scene, set by slicer_app()

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self._node, self.placeMultipleMarkups = None, self.ShowPlaceMultipleMarkupsOption
        self.buttonsVisible = self.deleteAllControlPointsOptionVisible = False

    def setCurrentNode(self, node) -> None:
        self._node = node

    def currentNode(self):
        return self._node

    def setPlaceModePersistency(self, persistent: bool) -> None:
        # qSlicerMarkupsPlaceWidget::setPlaceModePersistency: the application's interaction node.
        self.scene.GetNodeByID("vtkMRMLInteractionNodeSingleton").SetPlaceModePersistence(int(persistent))


QT_WIDGETS = {"QWidget": QWidget, "QComboBox": QComboBox, "QCheckBox": QCheckBox, "QPushButton": QPushButton,
              "QLabel": QWidget, "QProgressBar": QProgressBar}
CTK_WIDGETS = {"ctkPathLineEdit": ctkPathLineEdit, "ctkCollapsibleButton": QWidget}
SLICER_WIDGETS = {"qMRMLWidget": QWidget, "qMRMLNodeComboBox": qMRMLNodeComboBox,
                  "qMRMLSegmentSelectorWidget": qMRMLSegmentSelectorWidget,
                  "qSlicerMarkupsPlaceWidget": qSlicerMarkupsPlaceWidget}
ALL_WIDGETS = {**QT_WIDGETS, **CTK_WIDGETS, **SLICER_WIDGETS}


def load_ui(path: str) -> QWidget:
    """The widgets of a Qt Designer file, with their properties (stdset="0" ones as dynamic
    properties, as Qt sets them) and combo-box items; every widget a child of the top one (the
    module finds them by name only)."""
    def build(element) -> QWidget:
        widget = ALL_WIDGETS[element.get("class")](element.get("name"))
        for prop in element.findall("property"):
            value = prop[0]
            parsed = {"string": value.text or "", "bool": value.text == "true"}.get(value.tag, value.text)
            if prop.get("stdset") == "0":
                widget.setProperty(prop.get("name"), parsed)
            else:
                setattr(widget, prop.get("name"), parsed)
        for item in element.findall("item"):
            widget.addItem(item.find("property/string").text)
        return widget

    top_element = ET.parse(path).getroot().find("widget")
    top = build(top_element)
    for element in top_element.iter("widget"):
        if element is not top_element:
            top.addChild(build(element))
    return top


def _module(name: str, classes: Dict[str, type], **extra) -> types.ModuleType:
    """A module of these classes; any other widget class it is asked for (Slicer's connectors name
    many in annotations) is a distinct class that no widget of the panel is."""
    module = types.ModuleType(name)
    for key, value in {**classes, **extra}.items():
        setattr(module, key, value)
    others: Dict[str, type] = {}

    def other(attribute: str):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return others.setdefault(attribute, type(attribute, (QWidget,), {}))

    module.__getattr__ = other
    return module


def _load(name: str, path: Path, package: bool = False) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(
        name, path / "__init__.py" if package else path, submodule_search_locations=[str(path)] if package else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Application:
    """``slicer.app``: the parts the module calls, with one axial (Red) slice view."""

    def __init__(self, scene) -> None:
        import slicer

        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
        self.slice_node = scene.AddNewNodeByClass("vtkMRMLSliceNode", "Red")
        self.slice_node.SetLayoutName("Red")
        self.slice_node.SetOrientation("Axial")
        self.processed_events = 0

    def layoutManager(self):
        slice_node = self.slice_node
        widget = types.SimpleNamespace(mrmlSliceNode=lambda: slice_node)
        return types.SimpleNamespace(sliceViewNames=lambda: ["Red"], sliceWidget=lambda name: widget)

    def processEvents(self) -> None:
        self.processed_events += 1

    def moduleManager(self):
        manager = QObject()
        manager.moduleAboutToBeUnloaded = Signal()
        return manager

    def connect(self, *args) -> None:
        pass

    def testingEnabled(self) -> bool:
        return True

    def setOverrideCursor(self, cursor) -> None:
        pass

    def restoreOverrideCursor(self) -> None:
        pass


@contextlib.contextmanager
def slicer_app(tag: str) -> Iterator[types.SimpleNamespace]:
    """Import SAMIHS/SAMIHS.py inside this stand-in application, with Slicer's own Python of
    ``tag``; yields (module, scene, app, dialogs). Everything is undone afterwards."""
    import slicer

    reference = REFERENCE / tag / "Base" / "Python" / "slicer"
    saved_modules = {name: sys.modules.get(name) for name in list(sys.modules)
                     if name in ("qt", "ctk", "SAMIHS") or name.startswith(("slicer.util", "slicer.parameterNodeWrapper",
                                                                            "slicer.ScriptedLoadableModule", "slicer.i18n"))}
    attributes = ("app", "mrmlScene", "util", "parameterNodeWrapper", "ScriptedLoadableModule", "i18n", "modules",
                  "__getattr__", *SLICER_WIDGETS)
    saved_attributes = {name: getattr(slicer, name) for name in attributes if hasattr(slicer, name)}
    try:
        sys.modules["qt"] = _module("qt", QT_WIDGETS, QObject=QObject, QVBoxLayout=QVBoxLayout, QTimer=QTimer,
                                    QApplication=QApplication,
                                    Qt=types.SimpleNamespace(ToolTipRole=3, WaitCursor=16),
                                    QSettings=lambda: types.SimpleNamespace(contains=lambda key: False))
        sys.modules["ctk"] = _module("ctk", CTK_WIDGETS)
        for name, cls in SLICER_WIDGETS.items():
            setattr(slicer, name, cls)
        other_widgets: Dict[str, type] = {}

        def other_widget(attribute: str):  # slicer.qMRML*/qSlicer* classes the panel does not use
            if not attribute.startswith(("qMRML", "qSlicer")):
                raise AttributeError(attribute)
            return other_widgets.setdefault(attribute, type(attribute, (QWidget,), {}))

        slicer.__getattr__ = other_widget
        scene = slicer.vtkMRMLScene()
        interaction = slicer.vtkMRMLInteractionNode()
        interaction.SetSingletonTag("Singleton")
        scene.AddNode(interaction)
        qSlicerMarkupsPlaceWidget.scene = scene
        app = Application(scene)
        slicer.app, slicer.mrmlScene = app, scene
        slicer.i18n = sys.modules["slicer.i18n"] = _module("slicer.i18n", {}, tr=lambda text: text)
        slicer.util = _load("slicer.util", reference / "util.py")
        slicer.parameterNodeWrapper = _load("slicer.parameterNodeWrapper", reference / "parameterNodeWrapper",
                                            package=True)
        slicer.ScriptedLoadableModule = _load("slicer.ScriptedLoadableModule", reference / "ScriptedLoadableModule.py")
        dialogs: List[tuple] = []
        answers = {"confirmOkCancelDisplay": True, "confirmYesNoDisplay": False}

        def recorder(kind):
            def record(*args, **kwargs):
                dialogs.append((kind, args, kwargs))
                return answers.get(kind)
            return record

        for kind in ("errorDisplay", "confirmOkCancelDisplay", "confirmYesNoDisplay", "showStatusMessage"):
            setattr(slicer.util, kind, recorder(kind))
        slicer.util.createProgressDialog = lambda **kwargs: (dialogs.append(("progressDialog", (), kwargs))
                                                              or types.SimpleNamespace(close=lambda: None))
        slicer.util.loadUI = lambda path: load_ui(path)
        slicer.util.modulePath = lambda name: str(REPO / "SAMIHS" / "SAMIHS.py")
        slicer.util.restart = recorder("restart")
        module = _load("SAMIHS", REPO / "SAMIHS" / "SAMIHS.py")
        context = types.SimpleNamespace(module=module, scene=scene, app=app, dialogs=dialogs, answers=answers,
                                        interaction=interaction, slicer=slicer, panels=[])
        yield context
        for panel in context.panels:  # as Slicer does when the module is unloaded
            panel.cleanup()
    finally:
        for name, value in saved_attributes.items():
            setattr(slicer, name, value)
        for name in attributes:
            if name not in saved_attributes and hasattr(slicer, name):
                delattr(slicer, name)
        for name in [n for n in sys.modules if n in ("qt", "ctk", "SAMIHS") or n.startswith(
                ("slicer.util", "slicer.parameterNodeWrapper", "slicer.ScriptedLoadableModule", "slicer.i18n"))]:
            del sys.modules[name]
        sys.modules.update({name: value for name, value in saved_modules.items() if value is not None})


def open_panel(context, parent_layout=True):
    """The module panel as Slicer builds it: the widget, setup(), enter()."""
    parent = QWidget("modulePanel")
    parent.setLayout(QVBoxLayout())
    parent.isEntered = True
    widget = context.module.SAMIHSWidget(parent)
    widget.setup()
    widget.enter()
    context.panels.append(widget)
    return widget
