"""Encoding slices ahead of the user, on one long-lived worker thread.

When a volume is shown, slices are encoded outward from the one on screen, so that a click on an
already-encoded slice runs only the decoder. A click on a slice that is not encoded yet does not
wait in the queue: the caller encodes it directly (``SAMIHSPredictor`` serialises model calls), and
``focus`` reorders the remaining queue around the new slice.
"""

import threading
from typing import Callable, List, Optional

from SAMIHSLib.interaction.predictor import SAMIHSPredictor

EncodedCallback = Callable[[int, int], None]


class BackgroundEncoder:
    """Owns one daemon thread that encodes queued slices of ``predictor``'s current volume."""

    def __init__(self, predictor: SAMIHSPredictor, on_encoded: Optional[EncodedCallback] = None) -> None:
        self.predictor = predictor
        self.on_encoded = on_encoded
        self._queue: List[int] = []
        self._condition = threading.Condition()
        self._stopped = False
        self._busy = False
        self.errors: List[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="samihs-encoder", daemon=True)
        self._thread.start()

    def focus(self, slice_index: int, radius: Optional[int] = None) -> None:
        """Queue every not-yet-encoded slice within ``radius`` of ``slice_index``, nearest first."""
        num = self.predictor.num_slices
        reach = num if radius is None else radius
        order = sorted(range(max(0, slice_index - reach), min(num, slice_index + reach + 1)),
                       key=lambda k: (abs(k - slice_index), k))
        with self._condition:
            self._queue = [k for k in order if not self.predictor.is_encoded(k)]
            self._condition.notify_all()

    def cancel(self) -> None:
        """Drop the queue; the slice being encoded (if any) finishes."""
        with self._condition:
            self._queue.clear()
            self._condition.notify_all()

    @property
    def pending(self) -> int:
        with self._condition:
            return len(self._queue) + (1 if self._busy else 0)

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Block until the queue is empty and nothing is being encoded; False on timeout."""
        with self._condition:
            return self._condition.wait_for(lambda: not self._queue and not self._busy, timeout)

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            self._queue.clear()
            self._condition.notify_all()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._stopped or bool(self._queue))
                if self._stopped:
                    return
                slice_index = self._queue.pop(0)
                self._busy = True
            try:
                if not self.predictor.is_encoded(slice_index):
                    self.predictor.encode_slice(slice_index)
                if self.on_encoded is not None:
                    self.on_encoded(slice_index, self.pending)
            except BaseException as error:  # keep the worker alive; report instead
                self.errors.append(error)
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()
