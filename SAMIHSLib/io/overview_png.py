"""A PNG overview of a result: CT slices in a brain window with the mask outline in red."""

from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage as ndi

from SAMIHSLib.imaging.preprocessing import BRAIN_WINDOW, normalize_slice
from SAMIHSLib.io.atomic_write import atomic_output

OUTLINE_RGB = (255, 40, 40)
CLICK_RGB = (40, 255, 40)


def _panel(slice_hu: np.ndarray, mask: np.ndarray) -> np.ndarray:
    grey = (normalize_slice(slice_hu, BRAIN_WINDOW) * 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    outline = mask & ~ndi.binary_erosion(mask, iterations=2)
    rgb[outline] = OUTLINE_RGB
    return rgb


def write_overview_png(path: Path, volume_hu: np.ndarray, mask: np.ndarray, slices: Optional[Sequence[int]] = None,
                       click_kji: Optional[Tuple[int, int, int]] = None, title: str = "",
                       max_panels: int = 6) -> Path:
    """Write a row of panels (the slices with most mask first, click slice always shown).

    ``volume_hu`` and ``mask`` are (k, j, i); ``click_kji`` marks the click with a green cross.
    """
    if slices is None:
        areas = mask.reshape(mask.shape[0], -1).sum(axis=1)
        chosen = [int(k) for k in np.argsort(-areas) if areas[k] > 0][:max_panels]
        if click_kji is not None and click_kji[0] not in chosen:
            chosen = [click_kji[0]] + chosen[: max_panels - 1]
        slices = sorted(chosen) or [volume_hu.shape[0] // 2]
    panels = []
    for k in slices:
        panel = Image.fromarray(_panel(volume_hu[k], mask[k].astype(bool)))
        draw = ImageDraw.Draw(panel)
        if click_kji is not None and k == click_kji[0]:
            _, j, i = click_kji
            draw.line([(i - 8, j), (i + 8, j)], fill=CLICK_RGB, width=2)
            draw.line([(i, j - 8), (i, j + 8)], fill=CLICK_RGB, width=2)
        draw.text((6, 6), f"slice {k}", fill=(255, 255, 0))
        panels.append(panel)
    height = max(p.height for p in panels)
    sheet = Image.new("RGB", (sum(p.width for p in panels), height + (20 if title else 0)))
    x = 0
    for panel in panels:
        sheet.paste(panel, (x, 20 if title else 0))
        x += panel.width
    if title:
        ImageDraw.Draw(sheet).text((6, 4), title, fill=(255, 255, 255))
    with atomic_output(Path(path)) as temporary:  # a crash never leaves half a picture
        sheet.save(temporary, format="PNG")
    return Path(path)
