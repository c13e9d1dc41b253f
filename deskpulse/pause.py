"""Pause state: whether monitoring is paused and until when, persisted across restarts.

A pause with an end (a snooze) survives an agent restart until it expires; a pause
without an end lasts until `resume`. Stored as pause.json in the device's directory
(storage.device_dir), so pausing one desk never pauses another on the same host.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from .files import write_json_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PauseState:
    paused: bool = False
    until: float | None = None  # epoch seconds; None with paused=True means until resumed

    def expired(self, now: float) -> bool:
        return self.paused and self.until is not None and now >= self.until


PAUSE_NAME = "pause.json"


class PauseStore:
    def __init__(self, directory: Path) -> None:
        self.path = directory / PAUSE_NAME

    def load(self, now: float) -> PauseState:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            state = PauseState(bool(data["paused"]), None if data.get("until") is None else float(data["until"]))
        except FileNotFoundError:
            return PauseState()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable pause file %s (%s)", self.path, exc)
            return PauseState()
        return PauseState() if state.expired(now) else state

    def save(self, state: PauseState) -> None:
        write_json_atomic(self.path, {"paused": state.paused, "until": state.until})
