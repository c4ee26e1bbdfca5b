"""SAMIHS in a web browser: real Slicer views (trame-slicer) over a real MRML scene, driven by
the same Qt-free logic as the Slicer module (SAMIHS/SAMIHSLogicCore.py).

Click the bleed in the axial view: the click lands as a positive control point, SAMIHS segments
that slice, propagates through the volume, and the hemorrhage segment and its volume in mL appear.

    .venv/bin/python web/samihs_web_app.py [CT.nrrd] --port 8080 [--save result.seg.nrrd]

Without a CT it opens the module's sample head CT (a synthetic phantom with a bleed).
Needs the test extras (trame-slicer with slicer-core); rendering runs headless (EGL/OSMesa).

Only its user can drive it: each launch makes a random token, printed in the URL to open; a
WebSocket without it is refused (wslink's secret), and so is one from a page of another origin
or for another host name (DNS rebinding). It listens on 127.0.0.1 unless ``--host`` says
otherwise (with a warning). ``--save`` never overwrites the input CT, nor an existing file
without ``--overwrite``, and writes atomically.
"""

import argparse
import ipaddress
import secrets
import sys
import traceback
from pathlib import Path
from typing import Iterable, Optional
from urllib.parse import urlsplit

import slicer  # (slicer-core: MRML without the desktop application)
import vtk
from SAMIHSLogicCore import SAMIHSMRMLLogic, ensure_segmentation_converters
from trame.app import TrameApp
from trame.widgets import html
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_vuetify.ui.vuetify3 import SinglePageLayout

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CT = REPO / "SAMIHS" / "Resources" / "SampleData" / "SAMIHSPhantomHeadCT.nrrd"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address) only accepts connections from this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def same_origin_guard(allowed_hosts: Iterable[str]):
    """aiohttp middleware: a request whose Host is not one of ours (DNS rebinding), or that comes
    from a page of another origin (a browser sends Origin), is refused with 403."""
    from aiohttp import web

    allowed = {h.lower() for h in allowed_hosts}

    @web.middleware
    async def guard(request, handler):
        host = (request.url.host or "").lower().strip("[]")
        origin = request.headers.get("Origin")
        origin_ok = origin is None or (urlsplit(origin).netloc.lower() == request.host.lower())
        if host not in allowed or not origin_ok:
            return web.Response(status=403, text="SAMIHS: connections from other hosts or pages are refused.")
        return await handler(request)

    return guard


def check_save_path(save_path: Path, ct_path: Path, overwrite: bool) -> Path:
    """Refuse to save over the input CT, or over an existing file unless ``overwrite``."""
    save_path = Path(save_path)
    if not save_path.name.lower().endswith(".seg.nrrd"):
        raise ValueError(f"--save writes a Slicer segmentation: the name must end with .seg.nrrd, not {save_path.name}.")
    if save_path.exists() and save_path.resolve() == Path(ct_path).resolve():
        raise ValueError(f"--save {save_path} is the input CT; choose another file.")
    if save_path.exists() and not overwrite:
        raise ValueError(f"--save {save_path} exists; add --overwrite to replace it.")
    return save_path


class SAMIHSWebApp(TrameApp):
    """Slicer's "Axial Primary" layout; every click in a slice view is a positive SAMIHS click."""

    def __init__(self, ct_path: Path = SAMPLE_CT, server=None, model: str = "lite-base", engine: str = "auto",
                 save_path: Optional[Path] = None) -> None:
        super().__init__(server=server)
        self.slicer_app = SlicerApp()
        register_rca_factories(self.slicer_app.view_manager, self.server)
        self.layout_manager = LayoutManager(self.slicer_app.scene, self.slicer_app.view_manager, self.server)
        self.layout_manager.register_layout_dict(LayoutManager.default_grid_configuration())
        self.layout_manager.set_layout("Axial Primary")
        scene = self.slicer_app.scene
        ensure_segmentation_converters()
        self.logic = SAMIHSMRMLLogic(model, "auto", engine)
        if not Path(ct_path).is_file():
            raise FileNotFoundError(f"CT not found: {ct_path}")
        loaded = self.slicer_app.io_manager.load_volumes(str(ct_path))
        if not loaded:
            raise ValueError(f"{ct_path} could not be read as a volume.")
        self.volume_node = loaded[0]
        display = self.volume_node.GetDisplayNode()
        display.SetAutoWindowLevel(False)
        display.SetWindowLevel(80.0, 40.0)  # the brain window, where acute blood stands out
        self.save_path = save_path
        self.segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "SAMIHS segmentation")
        self.segmentation_node.CreateDefaultDisplayNodes()
        self.segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(self.volume_node)
        self.positive_node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "SAMIHS positive")
        self.positive_node.CreateDefaultDisplayNodes()
        self.positive_node.AddObserver(slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent, self._on_point_placed)
        self.slicer_app.markups_logic.place_node(self.positive_node, persistent=True)
        self.segment_id = ""
        self.state.samihs_status = "Click the bleed in the axial view."
        self.server.controller.trigger("samihs_locate")(self.locate)
        self.state.samihs_volume_ml = None
        with SinglePageLayout(self.server) as self.ui:
            self.ui.title.set_text("SAMIHS: click to segment intracranial hemorrhage")
            with self.ui.toolbar:
                html.Span("{{ samihs_status }}", classes="ml-4", id="samihs-status")
            with self.ui.content:
                self.layout_manager.initialize_layout_grid(self.ui)
        # the views exist once the layout grid is built
        self.slicer_app.display_manager.show_volume_in_slice_background(self.volume_node)
        self.slicer_app.display_manager.reset_views()

    @property
    def axial_view(self):
        return self.slicer_app.view_manager.get_view("Red")

    def locate(self, ras: list) -> dict:
        """Show the axial slice through ``ras`` (mm) and say where that point is drawn: pixels from
        the top-left of the axial view's render window, and the window's size. For scripted
        demos and the browser test, which then click there like a user."""
        slice_node = self.slicer_app.scene.GetNodeByID("vtkMRMLSliceNodeRed")
        slice_node.JumpSliceByOffsetting(*[float(v) for v in ras])
        xy_to_ras = vtk.vtkMatrix4x4()
        xy_to_ras.DeepCopy(slice_node.GetXYToRAS())
        xy_to_ras.Invert()
        x, y, _, _ = xy_to_ras.MultiplyPoint([float(v) for v in ras] + [1.0])
        width, height = slice_node.GetDimensions()[:2]
        self.axial_view.schedule_render()
        return {"x": x, "y": height - y, "width": width, "height": height}

    def _save(self) -> None:
        from SAMIHSLib.io.atomic_write import atomic_output

        storage = self.segmentation_node.GetStorageNode() or \
            self.slicer_app.scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
        self.segmentation_node.SetAndObserveStorageNodeID(storage.GetID())
        with atomic_output(self.save_path) as temporary:  # a crash never leaves half a file
            storage.SetFileName(str(temporary))
            if not storage.WriteData(self.segmentation_node):
                raise OSError(f"Could not write {self.save_path}.")

    def _on_point_placed(self, *_) -> None:
        self.state.samihs_status = "Segmenting..."
        self.state.flush()
        try:
            self.segment_id, update = self.logic.segment_from_points(
                self.volume_node, self.segmentation_node, self.positive_node, segment_id=self.segment_id)
            self.state.samihs_volume_ml = round(update.volume_ml, 2)
            self.state.samihs_status = f"Hemorrhage: {update.volume_ml:.2f} mL" + (
                f". {update.message[0].upper()}{update.message[1:]}" if update.message else "")  # fallback or no bleed
            if self.save_path is not None and update.volume_ml > 0:
                self._save()
        except Exception as error:  # shown to the user; the scene is left as it was
            traceback.print_exc()
            self.state.samihs_status = f"SAMIHS could not segment: {error}"
        for view in self.slicer_app.view_manager.get_views():
            view.schedule_render()
        self.state.flush()


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ct", nargs="?", default=str(SAMPLE_CT), help="CT volume (NRRD, NIfTI, ...)")
    from SAMIHSLib.engines import AUTO_ENGINE, ENGINE_CHOICES

    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    from SAMIHSLib.model_names import DEFAULT_MODEL

    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--engine", default=AUTO_ENGINE, choices=(AUTO_ENGINE,) + ENGINE_CHOICES)
    parser.add_argument("--save", help="write the segmentation here (.seg.nrrd) after every change")
    parser.add_argument("--overwrite", action="store_true", help="let --save replace an existing file")
    args = parser.parse_args(argv)
    try:
        save_path = check_save_path(Path(args.save), Path(args.ct), args.overwrite) if args.save else None
    except ValueError as error:
        parser.exit(2, f"samihs web: error: {error}\n")
    if not is_loopback(args.host):
        print(f"samihs web: warning: listening on {args.host}: other machines can reach this page; anyone with "
              "the URL below (it holds the token) can drive the session.", file=sys.stderr)
    token = secrets.token_urlsafe(24)
    app = SAMIHSWebApp(Path(args.ct), model=args.model, engine=args.engine, save_path=save_path)
    app.server.cli.set_defaults(authKey=token)  # wslink refuses a client without this secret
    allowed = set(LOOPBACK_NAMES) | {args.host.lower()}
    app.server.controller.on_server_bind.add(
        lambda wslink_server: wslink_server.app.middlewares.append(same_origin_guard(allowed)))
    shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"SAMIHS web app: open http://{shown_host}:{args.port}/?secret={token}", flush=True)
    app.server.start(port=args.port, host=args.host, open_browser=False, show_connection_info=False)


if __name__ == "__main__":
    main()
