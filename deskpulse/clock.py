"""The agent's two clocks: monotonic time for every duration, wall time for timestamps.

Passed in (never read globally) so tests can step the wall clock and prove that no
duration depends on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable


@dataclass(frozen=True)
class Clock:
    wall: Callable[[], float] = time.time        # epoch seconds: timestamps, dates, persisted deadlines
    mono: Callable[[], float] = time.monotonic   # durations, debounce, timers


def iso(ts: float | None) -> str | None:
    """Epoch seconds -> ISO-8601 UTC with milliseconds ("...Z"); None stays None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
