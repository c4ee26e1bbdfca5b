"""The browser app run as a user runs it, on a port it picks itself (``--port 0``): the test reads
the URLs it prints once it listens, so no port is probed first and no time is guessed."""

import subprocess
import sys
import threading
from pathlib import Path
from typing import List, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "web" / "samihs_web_app.py"
PHANTOM_SPACING_IJK = (0.9, 0.9, 5.0)  # the shared server's CTs: the small phantom at this voxel size


class WebAppProcess:
    """``samihs_web_app.py ARGS --port 0``; its output goes to ``log_path`` (if given) as it comes."""

    def __init__(self, args: Sequence[str], log_path: Optional[Path] = None) -> None:
        self.urls: List[str] = []
        self._changed = threading.Condition()
        self._log = open(log_path, "w") if log_path is not None else None
        self.process = subprocess.Popen([sys.executable, str(APP), *args, "--port", "0"], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)  # drains the pipe: the app never blocks
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            if self._log is not None:
                self._log.write(line)
                self._log.flush()
            if "open http" in line:
                with self._changed:
                    self.urls.append(line.split("open ", 1)[1].strip())
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()  # the app ended

    def wait_for_urls(self, count: int = 1, seconds: float = 120.0) -> List[str]:
        """The first ``count`` URLs the app printed (it prints them once it listens)."""
        with self._changed:
            ready = self._changed.wait_for(lambda: len(self.urls) >= count or not self._reader.is_alive(), seconds)
        if len(self.urls) < count:
            raise RuntimeError(f"the web app printed {len(self.urls)} of {count} URLs "
                               f"({'it exited with ' + str(self.process.poll()) if ready else 'timed out'})")
        return self.urls[:count]

    @property
    def port(self) -> int:
        return int(self.wait_for_urls()[0].split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self._reader.join(timeout=30)
        if self._log is not None:
            self._log.close()
