"""How long work reports progress: ``progress(done, total, message)``, called by propagation, the
volume segmentation and the batch; the CLI draws a bar from it, Slicer and the web app a dialog."""

from typing import Callable

ProgressCallback = Callable[[int, int, str], None]
