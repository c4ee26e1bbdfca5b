"""Regenerate the module's icon and its offline sample head CT (a synthetic phantom).

Run: .venv/bin/python tools/make_resources.py  -- then update SAMPLE_SHA256 in SAMIHS/SAMIHS.py
with the printed hash (a test checks that the two agree).
"""

from pathlib import Path

import numpy as np
from PIL import Image

from SAMIHSLib.models.files import sha256_file
from SAMIHSLib.io.overview_png import write_overview_png
from SAMIHSLib.phantom import make_head_phantom
from SAMIHSLib.interaction.regions import slice_with_most
from SAMIHSLib.io.volume_io import CTVolume, write_ct

REPO = Path(__file__).resolve().parents[1]
RESOURCES = REPO / "SAMIHS" / "Resources"


def main() -> None:
    phantom = make_head_phantom(shape=(24, 256, 256), spacing_zyx=(5.0, 0.9, 0.9), seed=11)
    volume = CTVolume(phantom.volume_hu, (0.9, 0.9, 5.0), (-115.0, -115.0, -60.0), np.eye(3), "phantom")
    sample = write_ct(RESOURCES / "SampleData" / "SAMIHSPhantomHeadCT.nrrd", volume)
    k = slice_with_most(phantom.bleed_mask(0))
    preview = RESOURCES / "Icons" / "preview.png"
    write_overview_png(preview, phantom.volume_hu, phantom.bleed_mask(0), slices=[k])
    icon = Image.open(preview).convert("RGB").resize((128, 128), Image.LANCZOS)
    icon.save(RESOURCES / "Icons" / "SAMIHS.png")
    icon.save(REPO / "Resources" / "Icons" / "SAMIHS.png")
    preview.unlink()
    print(f"{sample}: SHA256 {sha256_file(sample)}")


if __name__ == "__main__":
    main()
