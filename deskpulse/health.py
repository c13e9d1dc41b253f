"""Process and board health for .../health: CPU temperature, memory, uptime, rates.

Reads /sys and /proc only; returns None for what this machine doesn't have (a PC has no
Pi thermal zone) rather than guessing.
"""

from __future__ import annotations

import os
import resource
import time
from collections import deque
from pathlib import Path

THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")


def cpu_temp_c() -> float | None:
    try:
        return round(int(THERMAL.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


def rss_mb() -> float:
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            pages = int(f.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class RateMeter:
    """Events per second over a sliding window, plus a mean of a measured value."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._events: deque[tuple[float, float]] = deque()

    def add(self, value: float = 0.0, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._events.append((now, value))
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._events and now - self._events[0][0] > self.window_s:
            self._events.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._trim(now)
        return len(self._events) / self.window_s

    def mean(self) -> float:
        return sum(v for _, v in self._events) / len(self._events) if self._events else 0.0
