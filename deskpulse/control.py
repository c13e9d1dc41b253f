"""What request handlers may ask of the agent: a small interface, not the Agent itself.

commands.py depends only on this Protocol, so the handlers can be tested against any
implementation and the agent's modules have no import cycle. The agent's implementation
(agent.AgentControl) forwards every state change to the pipeline thread, the single
writer of the agent's state, and waits for its answer.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Protocol

from .config import Config
from .requests import Reply


class Control(Protocol):
    def config(self) -> Config:
        """The running configuration (a snapshot; never mutate it)."""

    def pause(self, minutes: float | None) -> float | None:
        """Pause monitoring and release the camera; returns the wall time it ends, if timed."""

    def resume(self) -> bool:
        """Resume monitoring; False if it was not paused."""

    def start_calibration(self, seconds: float, reply: Reply) -> None:
        """Start recording the baseline; progress and the result go through `reply`.
        Raises RequestError when it can't start (paused, camera gone, one running)."""

    def set_lease(self, lease_s: float | None, viewer: str | None = None) -> None:
        """Keep frames flowing for lease_s more seconds for `viewer` (a page's own lease id);
        None releases that viewer's lease (without a viewer: every lease)."""

    def apply_settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Validate and apply runtime settings (config/set); returns config_get()'s answer."""

    def settings(self) -> dict[str, Any]:
        """The runtime settings with where each value came from (config/get)."""

    def history(self, start: date, end: date) -> list[dict[str, Any]]:
        """Per-day totals from the history; raises RequestError if it can't be read."""

    def today(self) -> date:
        """Today's date in the history's time zone."""
