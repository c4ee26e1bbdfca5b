"""SAMIHS in a real browser: Chromium (driven by Playwright) clicks the bleed in a trame-slicer
axial view; the server's real MRML scene gets the hemorrhage segment, written as .seg.nrrd."""

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from SAMIHSLib.metrics import dice
from SAMIHSLib.io.volume_io import CTVolume, write_ct
from SAMIHSLib.interaction.regions import slice_with_most

from conftest import require, unavailable  # noqa: E402

require("trame_slicer", module_level=True)
playwright = require("playwright.sync_api", module_level=True)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    unavailable("Debian's chromium is not installed (tools/install_system_packages.sh installs it)", module_level=True)

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.browser
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_server(url: str, process: subprocess.Popen, seconds: float = 90.0) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the web app exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {seconds} s")


@pytest.fixture
def web_app(tmp_path, small_phantom):
    volume = CTVolume(small_phantom.volume_hu, (0.9, 0.9, 5.0), (0.0, 0.0, 0.0), np.eye(3))
    ct_path = write_ct(tmp_path / "head_ct.nrrd", volume)
    port, saved = _free_port(), tmp_path / "result.seg.nrrd"
    log_path = tmp_path / "web_app.log"
    log = open(log_path, "w")
    process = subprocess.Popen([sys.executable, str(REPO / "web" / "samihs_web_app.py"), str(ct_path), "--port",
                                str(port), "--save", str(saved)], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_server(f"http://127.0.0.1:{port}/", process)
        printed = [line for line in log_path.read_text().splitlines() if "open http" in line]
        yield printed[0].split("open ", 1)[1].strip(), volume, ct_path, saved  # the URL with this launch's token
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_a_click_in_the_browser_segments_the_bleed_into_the_scene(web_app, small_phantom, tmp_path):
    url, volume, ct_path, saved = web_app
    truth = small_phantom.bleed_mask(0)
    k = slice_with_most(truth)
    rows, cols = np.nonzero(truth[k])
    ras = (volume.ijk_to_ras_matrix() @ np.array([cols.mean(), rows.mean(), k, 1.0]))[:3]
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        page.goto(url)
        page.wait_for_selector("#samihs-status")
        page.wait_for_function("() => [...document.querySelectorAll('img')].some(i => i.naturalWidth > 0)")
        # where the axial view draws the bleed's centre (the view jumps to its slice)
        where = page.evaluate("ras => window.trame.trigger('samihs_locate', [ras])", [float(v) for v in ras])
        images = [box for box in (image.bounding_box() for image in page.query_selector_all("img")) if box]
        view = max(images, key=lambda box: box["width"] * box["height"])  # the axial view is the large one
        time.sleep(1.0)
        page.mouse.click(view["x"] + where["x"] * view["width"] / where["width"],
                         view["y"] + where["y"] * view["height"] / where["height"])
        page.wait_for_function("() => /mL|could not/.test(document.querySelector('#samihs-status').textContent)",
                               timeout=180_000)
        status = page.text_content("#samihs-status")
        time.sleep(2.0)
        page.screenshot(path=str(tmp_path / "after_click.png"), clip=view)
        browser.close()
    assert "mL" in status, status
    from PIL import Image

    pixels = np.asarray(Image.open(tmp_path / "after_click.png").convert("RGB")).astype(int)
    reddish = (pixels[..., 0] > pixels[..., 1] + 60) & (pixels[..., 0] > pixels[..., 2] + 60)
    assert reddish.sum() > 300  # the segment is drawn over the CT in the browser
    import slicer

    import SAMIHSLogicCore as core
    from mrml_files import load_segmentation, load_volume

    core.ensure_segmentation_converters()
    scene = slicer.vtkMRMLScene()
    volume_node = load_volume(scene, ct_path)
    segmentation = load_segmentation(scene, saved)
    segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName("Hemorrhage")
    mask = core.read_segment_mask(segmentation, segment_id, volume_node)
    assert dice(mask, truth) >= 0.7
    assert not (mask & small_phantom.bleed_mask(1)).any()  # the other, separate bleed is not claimed
    shown_ml = float(status.split(":")[1].split("mL")[0])
    assert abs(shown_ml - mask.sum() * 0.9 * 0.9 * 5.0 / 1000.0) < 0.05
