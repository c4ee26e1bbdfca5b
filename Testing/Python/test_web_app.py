"""SAMIHS in a real browser as a correction tool: Chromium (driven by Playwright) opens CTs
(a DICOM series from --data, an uploaded NRRD), switches windows, clicks the bleed, adds a second
bleed with a box, undoes and redoes it, removes it with a negative click, re-propagates, and
downloads .seg.nrrd, DICOM SEG and the reports; the files are read back in a fresh MRML scene
and checked against the phantom's truth. Each state is screenshotted (``SAMIHS_SCREENSHOTS=DIR``
keeps them: that is how Resources/Screenshots/ is made)."""

import csv
import io
import json
import os
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from SAMIHSLib.interaction.regions import slice_with_most
from SAMIHSLib.io.report import CSV_COLUMNS, SegmentationReport
from SAMIHSLib.io.volume_io import CTVolume, read_ct, write_ct
from SAMIHSLib.metrics import dice

from conftest import require, unavailable
from web_server import PHANTOM_SPACING_IJK, WebAppProcess

require("trame_slicer", module_level=True)
require("highdicom", module_level=True)
playwright = require("playwright.sync_api", module_level=True)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    unavailable("Debian's chromium is not installed (tools/install_system_packages.sh installs it)", module_level=True)

REPO = Path(__file__).resolve().parents[2]
SPACING = PHANTOM_SPACING_IJK
pytestmark = pytest.mark.browser
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


# Counts every appearance of the busy overlay and notes what it held. Playwright polls a selector
# every 500 ms after its first few tries, so a short operation's overlay (up ~0.25 s, one progress tick
# of the server, for a negative click on a fast CPU) can come and go unseen; a MutationObserver sees all.
# It also counts the frames the server pushes into the views (each one sets an <img>'s src): a
# render is waited for by its frame, not by a guessed time.
BUSY_WATCH = """
window.samihsBusySeen = 0;
window.samihsBusyHeld = [];
window.samihsFrames = 0;
window.samihsLastFrame = 0;
window.samihsFramesAtBusy = 0;
new MutationObserver(records => {
  for (const record of records) {
    if (record.target.tagName === "IMG") {
      window.samihsFrames += 1;
      window.samihsLastFrame = performance.now();
    }
  }
}).observe(document, {attributes: true, attributeFilter: ["src"], subtree: true});
new MutationObserver(() => {
  const overlay = document.getElementById("samihs-busy");
  if (overlay && !window.samihsBusyShown) {
    window.samihsFramesAtBusy = window.samihsFrames;
    window.samihsBusySeen += 1;
    window.samihsBusyHeld.push({
      text: overlay.textContent,
      progress: !!overlay.querySelector("[role=progressbar]"),
      cancel: !!overlay.querySelector("#samihs-cancel"),
    });
  }
  window.samihsBusyShown = !!overlay;
}).observe(document, {childList: true, subtree: true});
"""


class Page:
    """The app's page as a user drives it: clicks land where the axial view draws a RAS point."""

    def __init__(self, page, shots: Path) -> None:
        self.page, self.shots = page, shots
        self.operations_waited = 0
        page.add_init_script(BUSY_WATCH)

    @classmethod
    def opened(cls, driver, url: str, shots: Path) -> "Page":
        """Chromium (headless, 1280x800, downloads accepted) on the app at ``url``; its browser is
        ``page.page.context.browser``."""
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        app = cls(browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True), shots)
        app.page.goto(url)
        return app

    def views(self):
        images = [box for box in (image.bounding_box() for image in self.page.query_selector_all("img")) if box]
        return sorted(images, key=lambda box: box["width"] * box["height"], reverse=True)

    def page_xy(self, ras) -> tuple:
        """Where on the page the axial view draws ``ras`` (after showing its slice)."""
        where = self.page.evaluate("ras => window.trame.trigger('samihs_locate', [ras])", [float(v) for v in ras])
        view = self.views()[0]  # the axial view is the large one (the server maps the click on its new slice)
        return (view["x"] + where["x"] * view["width"] / where["width"],
                view["y"] + where["y"] * view["height"] / where["height"])

    def click_ras(self, ras, shift: bool = False) -> None:
        x, y = self.page_xy(ras)
        if shift:
            self.page.keyboard.down("Shift")
        self.page.mouse.click(x, y)
        if shift:
            self.page.keyboard.up("Shift")

    def drag_ras(self, start_ras, end_ras) -> None:
        (x0, y0), (x1, y1) = self.page_xy(start_ras), self.page_xy(end_ras)
        self.page.mouse.move(x0, y0)
        self.page.mouse.down()
        self.page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
        self.page.mouse.move(x1, y1, steps=4)
        assert self.page.is_visible("#samihs-box-band")  # the rubber band follows the drag
        self.shot("box-drag")
        self.page.mouse.up()

    def wait_done(self, start_timeout_ms: int = 20_000) -> str:
        """Wait for the next operation's busy overlay (progress + cancel) to come and go; the status
        line after. Each operation is waited for once, in order."""
        self.page.wait_for_function(f"() => window.samihsBusySeen > {self.operations_waited}",
                                    timeout=start_timeout_ms)
        self.page.wait_for_selector("#samihs-busy", state="detached", timeout=300_000)
        seen = self.page.evaluate("() => window.samihsBusySeen")
        assert seen == self.operations_waited + 1, f"{seen - self.operations_waited} operations ran, not one"
        self.operations_waited = seen
        self.wait_rendered("window.samihsFramesAtBusy")
        return self.page.text_content("#samihs-status")

    def frames(self) -> int:
        return self.page.evaluate("() => window.samihsFrames")

    def wait_rendered(self, since: str) -> None:
        """Wait for a frame pushed after ``since`` (a frame count, or a JS expression giving one),
        then for the views to settle (no new frame for 0.4 s: a render may push several)."""
        self.page.wait_for_function(f"() => window.samihsFrames > {since} && "
                                    "performance.now() - window.samihsLastFrame > 400", timeout=60_000)

    def volume_ml(self) -> float:
        text = self.page.text_content("#samihs-volume").strip()
        return float(text.split(" mL")[0]) if text else 0.0

    def shot(self, name: str, clip=None) -> Path:
        path = self.shots / f"SAMIHS-web-{name}.png"
        self.page.screenshot(path=str(path), clip=clip)
        return path

    def download(self, kind: str, target: Path) -> Path:
        with self.page.expect_download() as info:
            self.page.click(f"#samihs-download-{kind}")
        info.value.save_as(str(target))
        return target


def _ras(volume: CTVolume, k: float, row: float, column: float) -> np.ndarray:
    return (volume.ijk_to_ras_matrix() @ np.array([column, row, k, 1.0]))[:3]


def _reddish(path: Path) -> int:
    from PIL import Image

    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int(((pixels[..., 0] > pixels[..., 1] + 60) & (pixels[..., 0] > pixels[..., 2] + 60)).sum())


def _read_back(segmentation_path: Path, ct_path: Path) -> np.ndarray:
    """The Hemorrhage segment of a downloaded .seg.nrrd, in a fresh MRML scene, on the CT's voxels."""
    import slicer

    from SAMIHSSlicer import mrml_nodes as core
    from mrml_files import load_segmentation, load_volume

    core.ensure_segmentation_converters()
    scene = slicer.vtkMRMLScene()
    volume_node = load_volume(scene, ct_path)
    segmentation = load_segmentation(scene, segmentation_path)
    segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName("Hemorrhage")
    return core.read_segment_mask(segmentation, segment_id, volume_node)


def test_the_browser_correction_flow(web_app_server, small_phantom, tmp_path):
    url, series, nrrd, saved = web_app_server.url, web_app_server.series, web_app_server.nrrd, web_app_server.saved
    volume = read_ct(series)
    bleed_a, bleed_b = small_phantom.bleed_mask(0), small_phantom.bleed_mask(1)
    k_a, k_b = slice_with_most(bleed_a), slice_with_most(bleed_b)
    rows_a, cols_a = np.nonzero(bleed_a[k_a])
    rows_b, cols_b = np.nonzero(bleed_b[k_b])
    shots = Path(os.environ.get("SAMIHS_SCREENSHOTS", tmp_path / "shots"))
    shots.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as driver:
        app = Page.opened(driver, url, shots)
        page, browser = app.page, app.page.context.browser
        page.wait_for_selector("#samihs-status")
        page.wait_for_function("() => [...document.querySelectorAll('img')].some(i => i.naturalWidth > 0)")
        assert "head_series" in page.text_content("#samihs-status")  # the DICOM series under --data
        assert "click" in page.text_content("#samihs-help").lower()

        # Open another CT by upload, then come back to the DICOM series through the CT list.
        page.set_input_files("#samihs-upload", str(nrrd))
        page.wait_for_function("() => /head_ct/.test(document.querySelector('#samihs-status').textContent)",
                               timeout=120_000)
        page.click("#samihs-ct", force=True)  # (the field around the input takes the click)
        page.click(".v-list-item:has-text('head_series')")
        page.wait_for_function("() => /head_series/.test(document.querySelector('#samihs-status').textContent)",
                               timeout=120_000)

        # Window presets change what the axial view shows.
        app.click_ras(_ras(volume, k_a, rows_a.mean(), cols_a.mean()))  # (jumps to the slice; a click segments)
        app.wait_done(start_timeout_ms=30_000)
        brain = app.shot("positive-click")
        volume_a = app.volume_ml()
        assert volume_a > 0.5 and "mL" in page.text_content("#samihs-status")
        assert "Bleed on axial slices" in page.text_content("#samihs-slices")
        assert _reddish(brain) > 300  # the segment over the CT, and its surface in the 3D view
        frames = app.frames()
        page.click("#samihs-window-bone")
        app.wait_rendered(str(frames))
        bone = app.shot("bone-window")
        from PIL import Image

        assert np.abs(np.asarray(Image.open(bone), float) - np.asarray(Image.open(brain), float)).mean() > 2.0
        page.click("#samihs-window-brain")

        # A box dragged around the second bleed adds it; undo and redo take it away and bring it back.
        page.click("#samihs-mode-box")
        margin = 4
        app.drag_ras(_ras(volume, k_b, rows_b.min() - margin, cols_b.min() - margin),
                     _ras(volume, k_b, rows_b.max() + margin, cols_b.max() + margin))
        app.wait_done()
        app.shot("box")
        volume_ab = app.volume_ml()
        assert volume_ab > volume_a + 0.3
        assert page.text_content("#samihs-undo").strip().endswith("(2)")
        page.click("#samihs-undo")
        app.wait_done()
        assert app.volume_ml() == pytest.approx(volume_a, abs=0.01)
        page.click("#samihs-redo")
        app.wait_done()
        assert app.volume_ml() == pytest.approx(volume_ab, abs=0.01)

        # A shift-click (in positive mode) is a negative click: it removes the second bleed from that
        # slice (a known false area here); undone, the mode toggle does the same.
        page.click("#samihs-mode-positive")
        app.click_ras(_ras(volume, k_b, rows_b.mean(), cols_b.mean()), shift=True)
        app.wait_done()
        shifted = _read_back(app.download("seg", tmp_path / "after_shift_click.seg.nrrd"), nrrd)
        assert not (shifted[k_b] & bleed_b[k_b]).any()
        assert page.text_content("#samihs-undo").strip().endswith("(3)")
        page.click("#samihs-undo")
        app.wait_done()
        assert app.volume_ml() == pytest.approx(volume_ab, abs=0.01)
        page.click("#samihs-mode-negative")
        app.click_ras(_ras(volume, k_b, rows_b.mean(), cols_b.mean()))
        app.wait_done()
        app.shot("negative-click")
        assert app.volume_ml() < volume_ab
        after_negative = _read_back(app.download("seg", tmp_path / "after_negative.seg.nrrd"), nrrd)
        assert not (after_negative[k_b] & bleed_b[k_b]).any()
        assert dice(after_negative & ~bleed_b, bleed_a) >= 0.7  # the first bleed untouched

        # Back to the first bleed alone, then re-propagate from its slice on screen.
        page.click("#samihs-undo")
        app.wait_done()
        page.click("#samihs-undo")
        app.wait_done()
        assert app.volume_ml() == pytest.approx(volume_a, abs=0.01)
        page.click("#samihs-mode-positive")
        page.evaluate("ras => window.trame.trigger('samihs_locate', [ras])",
                      [float(v) for v in _ras(volume, k_a, rows_a.mean(), cols_a.mean())])
        page.click("#samihs-repropagate")
        try:  # (the screenshot only documents; the overlay may be gone already on a fast CPU)
            page.wait_for_selector("#samihs-busy", state="attached", timeout=5_000)
            app.shot("progress")  # the progress bar and its cancel button
        except playwright.TimeoutError:
            pass
        app.wait_done()
        held = page.evaluate("() => window.samihsBusyHeld.at(-1)")
        assert held["progress"] and held["cancel"] and "Re-propagating" in held["text"]
        app.shot("repropagated")
        shown = app.volume_ml()
        assert shown > 0.5

        seg_path = app.download("seg", tmp_path / "result.seg.nrrd")
        dicom_path = app.download("dicom", tmp_path / "result_seg.dcm")
        report = json.loads(app.download("json", tmp_path / "report.json").read_text())
        csv_text = app.download("csv", tmp_path / "report.csv").read_text()
        saved_after_change = _read_back(saved, nrrd)
        # Undone to nothing, the --save file says so too (it is written after every change).
        while not page.is_disabled("#samihs-undo"):
            page.click("#samihs-undo")
            app.wait_done()
        saved_when_empty = _read_back(saved, nrrd)
        browser.close()

    mask = _read_back(seg_path, nrrd)
    assert dice(mask, bleed_a) >= 0.7
    assert not (mask & bleed_b).any()  # the other bleed is left as the user left it: not claimed
    assert abs(shown - mask.sum() * np.prod(SPACING) / 1000.0) < 0.05
    from SAMIHSLib.io.dicom_seg import read_dicom_seg_mask

    assert np.array_equal(read_dicom_seg_mask(dicom_path, volume.dicom_files), mask)  # DICOM SEG: the same voxels
    assert np.array_equal(saved_after_change, mask)  # --save follows every change
    assert saved_when_empty.shape == mask.shape and not saved_when_empty.any()
    assert report["measurements"]["volume_ml"] == pytest.approx(shown, abs=0.01)
    # what ran, not "auto": lite-base runs exact fp32
    assert (report["engine"], report["precision"], report["device"]) == ("openvino", "fp32", "cpu")
    assert report["filled_slices"] == [int(k) for k in np.nonzero(mask.any(axis=(1, 2)))[0]]
    assert list(report) == list(SegmentationReport("").to_dict())  # the CLI's and the batch's schema
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert len(rows) == 1 and tuple(rows[0]) == CSV_COLUMNS
    assert float(rows[0]["volume_ml"]) == pytest.approx(shown, abs=0.01)


def test_downloads_need_the_launch_token(web_app_server):
    url = web_app_server.url
    base = url.split("?")[0]
    for query in ("", "?secret=wrong"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}samihs/download/seg{query}", timeout=30)
        assert refused.value.code == 403
    token = url.split("secret=", 1)[1]
    with pytest.raises(urllib.error.HTTPError) as nothing_yet:
        urllib.request.urlopen(f"{base}samihs/download/json?secret={token}", timeout=30)
    assert nothing_yet.value.code == 409  # nothing segmented: said, not an empty file


@pytest.mark.real_data
def test_the_detector_lists_each_bleed_as_a_region_the_reader_can_delete(tmp_path):
    """"Find bleeds automatically" on a real head CT (patient 075, its 98 mL bleed): each region the
    detector keeps becomes a segment named with its score, listed on the page with its slices and
    mL; together they cover the bleed; the report measures and lists them; "Re-propagate" waits for a
    click; "Delete" removes one from the scene, the saved file and the report; a second search adds
    none of them again."""
    import slicerio

    from conftest import real_whole_ct

    volume, truth = real_whole_ct("075", slice(12, 34))
    ct_path = write_ct(tmp_path / "075.nrrd", volume)
    saved = tmp_path / "saved.seg.nrrd"
    server = WebAppProcess([str(ct_path), "--save", str(saved)], tmp_path / "web_app.log")
    try:
        url = server.wait_for_urls()[0]
        with playwright.sync_playwright() as driver:
            app = Page.opened(driver, url, tmp_path)
            page, browser = app.page, app.page.context.browser
            page.wait_for_selector("#samihs-find-bleeds")
            page.click("#samihs-find-bleeds")
            status = app.wait_done()
            regions = page.locator(".samihs-region").all_text_contents()
            assert regions and status.startswith("region 1: slices "), status
            assert all("(score " in text and "mL" in text for text in regions), regions
            found = slicerio.read_segmentation(str(saved))
            assert [s["name"] for s in found["segments"]] == [text.split(":")[0] for text in regions]
            union = np.asarray(found["voxels"]).transpose(2, 1, 0) > 0
            if union.ndim == 4:  # several segments: one layer each
                union = union.any(axis=-1)
            assert dice(union, truth) >= 0.5
            report = json.loads(app.download("json", tmp_path / "found.json").read_text())
            assert report["detected_regions"] == len(regions) and report["reason"] == status
            assert report["measurements"]["volume_ml"] == pytest.approx(union.sum() * 0.45 * 0.45 * 5.0 / 1000, rel=1e-6)
            assert app.volume_ml() == pytest.approx(report["measurements"]["volume_ml"], abs=0.01)
            assert page.is_disabled("#samihs-repropagate")  # detected regions are no click to propagate from

            page.locator(".samihs-region-delete").first.click()
            page.wait_for_function(f"() => document.querySelectorAll('.samihs-region').length == {len(regions) - 1}")
            if len(regions) > 1:
                report = json.loads(app.download("json", tmp_path / "after_delete.json").read_text())
                assert report["detected_regions"] == len(regions) - 1
                assert report["reason"].endswith("1 detected region deleted by the reader")
            else:  # the reader rejected the only region: nothing is left to measure or report
                page.wait_for_selector("#samihs-download-json", state="hidden")
                assert app.volume_ml() == 0.0
            page.click("#samihs-find-bleeds")  # searching again adds nothing the first search found
            status = app.wait_done()
            assert status.endswith("found by this CT's earlier search, not added again"), status
            assert page.locator(".samihs-region").count() == len(regions) - 1
            browser.close()
        assert [s["name"] for s in slicerio.read_segmentation(str(saved))["segments"]] == \
            [text.split(":")[0] for text in regions[1:]]
    finally:
        server.stop()
