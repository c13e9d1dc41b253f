"""The base of every object that owns one of the agent's long-lived threads.

Capture, the pipeline, the live stream and the requests inbox each own one named thread:
they start it, stop it and say whether it is alive, the same way for all four. The owner
writes `_run`, which watches `_stop`; `_wake` cuts its waits short.
"""

from __future__ import annotations

import threading
from typing import Self


class ThreadOwner:
    thread_name = "deskpulse-thread"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the loop to end, wake it out of any wait (`_interrupt`), wait for the thread."""
        self._stop.set()
        self._wake.set()
        self._interrupt()
        if self._thread is not None:
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def on_own_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _interrupt(self) -> None:
        """Wake the loop from waits other than `_wake` (an owner with such waits overrides it)."""

    def _run(self) -> None:
        raise NotImplementedError
