"""The recorder: the tracker (alerts, today's stats) and the SQLite history, fed by the pipeline.

Owned by the pipeline thread, which calls `update` with the published posture on every
tick. It publishes what it owns: alerts on .../alert and today's totals on .../stats.
History reads for `request/history` may come from the requests thread: History has its
own lock, and reads never change the tracker.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path
from typing import Any

from .config import Config
from .history import History, HistoryError, open_history, resolve_timezone
from .publisher import Publisher
from .topics import Topics
from .tracker import Event, Tracker, local_date

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 24 * 3600


class Recorder:
    def __init__(self, config: Config, publisher: Publisher, topics: Topics, db: Path) -> None:
        self.config = config
        self.publisher = publisher
        self.topics = topics
        self.db = db
        self.tz = resolve_timezone(config.history.timezone)
        self.history: History | None = None
        self.tracker = Tracker(config.alerts, self.tz)
        self._last_stats_at = -1e9
        self._last_checkpoint_at = 0.0
        self._last_prune_at = 0.0

    def open(self, wall: float, mono: float) -> None:
        """Open the history and restore today's totals into the tracker."""
        cfg = self.config
        try:
            self.history = open_history(self.db)
            self.history.prune(cfg.history.retention_days, wall)
            restored = self.history.day_totals(local_date(wall, self.tz), self.tz)
        except HistoryError as exc:
            log.error("history disabled: %s", exc)
            self.history, restored = None, None
        self.tracker = Tracker(cfg.alerts, self.tz, restored=restored)
        self._last_checkpoint_at = self._last_prune_at = mono

    def apply_config(self, config: Config) -> None:
        self.config = config
        self.tracker.apply_config(config.alerts)

    def today(self, wall: float) -> date:
        return local_date(wall, self.tz)

    def update(self, posture: str, wall: float, mono: float) -> None:
        events = self.tracker.update(posture, wall)
        for event in events:
            self._record(event)
        hist = self.config.history
        if any(e.kind == "alert" for e in events) or mono - self._last_stats_at >= hist.stats_interval_s:
            self.publish_stats(wall, mono)
        if self.history is not None and mono - self._last_checkpoint_at >= hist.checkpoint_s:
            self._last_checkpoint_at = mono
            self._checkpoint(wall)
        if self.history is not None and mono - self._last_prune_at >= PRUNE_EVERY_S:
            self._last_prune_at = mono
            try:
                self.history.prune(hist.retention_days, wall)
            except HistoryError as exc:
                log.warning("history prune failed: %s", exc)

    def publish_stats(self, wall: float, mono: float) -> None:
        self._last_stats_at = mono
        self.publisher.publish_retained(self.topics.stats, self.tracker.stats(wall), qos=1)

    def _checkpoint(self, wall: float) -> None:
        open_interval = self.tracker.open_interval(wall)
        if open_interval is not None and self.history is not None:
            try:
                self.history.checkpoint(*open_interval)
            except HistoryError as exc:
                log.warning("history checkpoint failed: %s", exc)

    def _record(self, event: Event) -> None:
        if self.history is not None:
            try:
                self.history.record(event)
            except HistoryError as exc:
                log.warning("history write failed: %s", exc)
        if event.kind == "alert":
            log.info("alert: %s", event.payload.get("message", event.payload.get("type")))
            self.publisher.publish_event(self.topics.alert, event.payload)

    def record_calibration(self, baseline: dict[str, Any], wall: float) -> None:
        if self.history is not None:
            try:
                self.history.record_calibration(baseline, wall)
            except HistoryError as exc:
                log.warning("calibration not recorded in history: %s", exc)

    def daily(self, start: date, end: date) -> list[dict[str, Any]]:
        if self.history is None:
            raise HistoryError("history is unavailable on this device (see the agent's log)")
        return self.history.daily(start, end, self.tz)

    def close(self, posture: str, wall: float) -> None:
        """The last interval, then close the database."""
        if self.history is None:
            return
        try:
            for event in self.tracker.update(posture, wall):
                self._record(event)
            self._checkpoint(wall)
            self.history.close()
        except HistoryError as exc:
            log.warning("history not closed cleanly: %s", exc)
