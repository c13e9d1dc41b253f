"""The tracker: debounced postures in, posture intervals, alert events and today's stats out.

A pure state machine. Time (epoch seconds) and the time zone are passed in; it owns no
clock, thread, broker or database. Today's totals are folded from the very interval events
it emits for history (`DayTotals.fold`), and `History.day_totals` folds the stored rows with
the same function, so the published stats and the history can never disagree.
Rules and the timeline format: docs/alerts-and-history.md.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any

from .config.alerts import AlertsConfig

__all__ = [
    "BUCKET_S", "POSTURES", "DayTotals", "Event", "Tracker", "day_bounds", "iso_utc", "local_date",
]

log = logging.getLogger(__name__)

POSTURES = ("good", "bad", "absent", "unknown", "paused")
_INDEX = {p: i for i, p in enumerate(POSTURES)}
_CODE = "gbaup"  # one timeline character per posture, in POSTURES order
BUCKET_S = 300
# Intervals meeting within this many seconds count as contiguous (float rounding, SQLite REAL).
_EPS = 1e-6
_Date = date  # DayTotals has a field named `date`
PRESENT = frozenset({"good", "bad", "unknown"})
AWAY = frozenset({"absent", "paused"})


def iso_utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_date(t: float, tz: tzinfo) -> date:
    return datetime.fromtimestamp(t, tz).date()


def day_bounds(d: date, tz: tzinfo) -> tuple[float, float]:
    """Epoch seconds of local midnight starting `d` and the next one (23 or 25 h apart on DST days)."""
    start = datetime.combine(d, time(0), tz).timestamp()
    end = datetime.combine(d + timedelta(days=1), time(0), tz).timestamp()
    return start, end


@dataclass(frozen=True)
class Event:
    """Something the agent must act on.

    kind "interval": payload {"posture", "start", "end"} (epoch seconds) -> History.record_interval.
    kind "alert": payload is the .../alert JSON {"type", "duration_s", "started", "message", "ts"}.
    `at` is when it happened (epoch seconds).
    """

    kind: str
    at: float
    payload: dict[str, Any]


@dataclass
class DayTotals:
    """One local day's totals, folded from its posture intervals in time order."""

    date: date
    start: float
    end: float
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(POSTURES, 0.0))
    alerts: int = 0
    break_reminders: int = 0
    longest_good_streak_s: float = 0.0
    # The good streak ending at `streak_end`; unknown time bridges it, other postures break it.
    streak_s: float = 0.0
    streak_end: float | None = None
    # Seconds per posture (POSTURES order) in each BUCKET_S bucket from local midnight.
    buckets: list[list[float]] = field(default_factory=list)

    @classmethod
    def empty(cls, d: _Date, tz: tzinfo) -> DayTotals:
        start, end = day_bounds(d, tz)
        n = math.ceil((end - start) / BUCKET_S)
        return cls(d, start, end, buckets=[[0.0] * len(POSTURES) for _ in range(n)])

    def fold(self, posture: str, start: float, end: float) -> None:
        """Add one interval (clipped to this day). Callers fold in time order."""
        s, e = max(start, self.start), min(end, self.end)
        if e <= s:
            return
        self.seconds[posture] += e - s
        if posture == "good":
            contiguous = self.streak_end is not None and abs(self.streak_end - s) < _EPS
            self.streak_s = self.streak_s + (e - s) if contiguous else e - s
            self.streak_end = e
            self.longest_good_streak_s = max(self.longest_good_streak_s, self.streak_s)
        elif posture == "unknown":
            if self.streak_end is not None and abs(self.streak_end - s) < _EPS:
                self.streak_end = e
        else:
            self.streak_s, self.streak_end = 0.0, None
        i = _INDEX[posture]
        b = int((s - self.start) // BUCKET_S)
        while s < e and b < len(self.buckets):
            edge = min(e, self.start + (b + 1) * BUCKET_S)
            self.buckets[b][i] += edge - s
            s, b = edge, b + 1

    def copy(self) -> DayTotals:
        return DayTotals(
            self.date, self.start, self.end, dict(self.seconds), self.alerts, self.break_reminders,
            self.longest_good_streak_s, self.streak_s, self.streak_end, [list(b) for b in self.buckets],
        )

    def good_pct(self) -> float | None:
        """Good share of monitored (good + bad) time; None before any monitored time."""
        monitored = self.seconds["good"] + self.seconds["bad"]
        return None if monitored <= 0 else 100.0 * self.seconds["good"] / monitored

    def summary(self) -> dict[str, Any]:
        """The per-day aggregate used by the `history` request and `deskpulse stats`."""
        pct = self.good_pct()
        out: dict[str, Any] = {"date": self.date.isoformat()}
        out.update({f"{p}_s": round(self.seconds[p], 1) for p in POSTURES})
        out.update({
            "good_pct": None if pct is None else round(pct, 1),
            "alerts": self.alerts,
            "break_reminders": self.break_reminders,
            "longest_good_streak_s": round(self.longest_good_streak_s, 1),
        })
        return out

    def timeline(self, upto: float | None = None) -> dict[str, Any]:
        """Compact timeline: good/bad whole seconds and the dominant posture per 5-minute bucket.

        Buckets are counted in elapsed time from local midnight; `upto` trims trailing buckets.
        """
        n = len(self.buckets)
        if upto is not None:
            n = min(n, max(0, math.ceil((upto - self.start) / BUCKET_S)))
        rows = self.buckets[:n]
        dominant = "".join(
            _CODE[max(range(len(POSTURES)), key=r.__getitem__)] if sum(r) > 0 else "-" for r in rows
        )
        return {
            "bucket_s": BUCKET_S,
            "start": _local_iso(self.start, self.date),
            "good": [round(r[0]) for r in rows],
            "bad": [round(r[1]) for r in rows],
            "postures": dominant,
        }


def _local_iso(start: float, d: date) -> str:
    # The offset of local midnight, without needing the tz object here: it is the difference
    # between the local wall-clock midnight of `d` and the UTC instant.
    offset = datetime.combine(d, time(0)) - datetime.fromtimestamp(start, timezone.utc).replace(tzinfo=None)
    return datetime.combine(d, time(0), timezone(offset)).isoformat()


@dataclass
class _Slouch:
    """One slouch episode: from the first bad second until recovery or a long absence."""

    started: float
    bad_s: float = 0.0
    good_run_s: float = 0.0
    away_run_s: float = 0.0
    alerts: int = 0
    last_alert_bad_s: float = 0.0


class Tracker:
    """Feed it `update(posture, now)` after every processed frame or tick.

    Time between two updates is attributed to the earlier posture. A gap longer than
    `max_gap_s` (process stalled, wall clock jumped: a Pi without RTC at boot) is not
    attributed to anything: the open interval is closed at the last update and timers reset.
    """

    def __init__(
        self,
        alerts: AlertsConfig,
        tz: tzinfo,
        restored: DayTotals | None = None,
        max_gap_s: float = 120.0,
    ) -> None:
        self._alerts = alerts
        self._tz = tz
        self._restored = restored
        self._max_gap_s = max_gap_s
        self._day: DayTotals | None = None
        self._cur: str | None = None
        self._cur_start = 0.0
        self._last = 0.0
        self._slouch: _Slouch | None = None
        self._last_alert_at: float | None = None
        self._present_s = 0.0
        self._present_start: float | None = None
        self._away_s = 0.0
        self._carry: list[str] = []  # alert kinds raised at exactly the end of self._day

    # -- inputs -------------------------------------------------------------------------------

    def apply_config(self, alerts: AlertsConfig) -> None:
        """New thresholds apply from the next update; running timers are kept."""
        self._alerts = alerts

    def update(self, posture: str, now: float) -> list[Event]:
        if posture not in _INDEX:
            raise ValueError(f"unknown posture {posture!r}; expected one of {', '.join(POSTURES)}")
        events: list[Event] = []
        if self._cur is None:
            self._open_day(now)
            self._cur, self._cur_start, self._last = posture, now, now
            return events
        if now < self._last - self._max_gap_s or now > self._last + self._max_gap_s:
            log.warning("time jumped by %.0f s between updates; not attributing the gap", now - self._last)
            self._close(self._last, events)
            self._reset_timers()
            self._open_day(now)
            self._cur, self._cur_start, self._last = posture, now, now
            return events
        now = max(now, self._last)  # a small step back of the wall clock: treat as no time passing
        assert self._day is not None
        while now >= self._day.end:
            midnight = self._day.end
            self._advance(midnight, events)
            self._close(midnight, events)
            self._day = DayTotals.empty(self._day.date + timedelta(days=1), self._tz)
            self._cur_start = midnight
            carry, self._carry = self._carry, []
            for kind in carry:
                self._count(kind, midnight)
        self._advance(now, events)
        if posture != self._cur:
            self._close(now, events)
            self._cur, self._cur_start = posture, now
        return events

    # -- outputs ------------------------------------------------------------------------------

    @property
    def posture(self) -> str | None:
        return self._cur

    @property
    def since(self) -> float | None:
        """When the current posture interval started (or local midnight, if it spans it)."""
        return None if self._cur is None else self._cur_start

    def open_interval(self, now: float) -> tuple[str, float, float] | None:
        """(posture, start, end) of the still-open interval, for History.checkpoint."""
        if self._cur is None:
            return None
        return self._cur, self._cur_start, max(self._cur_start, min(now, self._day.end if self._day else now))

    def bad_for_s(self, now: float) -> float:
        """The current slouch's bad seconds while the posture is bad, else 0 (state.bad_for_s)."""
        if self._cur != "bad" or self._slouch is None:
            return 0.0
        return self._slouch.bad_s + max(0.0, now - self._last)

    def totals(self, now: float) -> DayTotals | None:
        """Today's totals including the open interval up to `now` (a copy)."""
        if self._day is None or self._cur is None:
            return None
        if now >= self._day.end:  # midnight passed and no update since: today is a new day
            day = DayTotals.empty(local_date(now, self._tz), self._tz)
        else:
            day = self._day.copy()
        day.fold(self._cur, self._cur_start, max(now, self._cur_start))
        return day

    def stats(self, now: float) -> dict[str, Any]:
        """The retained .../stats payload."""
        day = self.totals(now)
        if day is None:  # before the first update: today's restored totals, if they are today's
            d = local_date(now, self._tz)
            restored = self._restored
            day = restored.copy() if restored is not None and restored.date == d else DayTotals.empty(d, self._tz)
        current = 0.0
        if self._cur in ("good", "unknown") and day.streak_end is not None and day.streak_end >= now - _EPS:
            current = day.streak_s
        out = day.summary()
        out.update({
            "current_good_streak_s": round(current, 1),
            "bad_for_s": round(self.bad_for_s(now), 1),
            "timeline": day.timeline(upto=now),
            "ts": iso_utc(now),
        })
        return out

    # -- internals ----------------------------------------------------------------------------

    def _open_day(self, now: float) -> None:
        d = local_date(now, self._tz)
        if self._day is not None and self._day.date == d:
            return
        restored, self._restored = self._restored, None
        self._day = restored.copy() if restored is not None and restored.date == d else DayTotals.empty(d, self._tz)

    def _close(self, at: float, events: list[Event]) -> None:
        assert self._day is not None and self._cur is not None
        if at > self._cur_start:
            self._day.fold(self._cur, self._cur_start, at)
            events.append(Event("interval", at, {"posture": self._cur, "start": self._cur_start, "end": at}))
        self._cur_start = at

    def _reset_timers(self) -> None:
        self._slouch = None
        self._present_s, self._present_start, self._away_s = 0.0, None, 0.0

    def _advance(self, to: float, events: list[Event]) -> None:
        """Run the alert and break timers over [self._last, to] spent in the current posture."""
        dt = to - self._last
        start = self._last
        self._last = to
        if dt <= 0:
            return
        posture, cfg = self._cur, self._alerts
        s = self._slouch
        if posture == "bad":
            if s is None:
                s = self._slouch = _Slouch(started=start)
            s.bad_s += dt
            s.good_run_s = s.away_run_s = 0.0
            self._maybe_alert(s, to, events)
        elif s is not None and posture == "good":
            s.good_run_s += dt
            s.away_run_s = 0.0
            if s.good_run_s >= cfg.recovery_s:
                self._slouch = None
                if s.alerts:
                    events.append(self._alert_event("recovered", s.bad_s, s.started, to))
        elif s is not None and posture in AWAY:
            s.away_run_s += dt
            s.good_run_s = 0.0
            if s.away_run_s >= cfg.recovery_s:
                self._slouch = None  # they left the desk: a new slouch starts from zero
        if posture in PRESENT:
            if self._present_start is None:
                self._present_start = start
            self._present_s += dt
            self._away_s = 0.0
            if cfg.break_minutes > 0 and self._present_s >= cfg.break_minutes * 60:
                events.append(self._alert_event("break_reminder", self._present_s, self._present_start, to))
                self._count("break_reminder", to)
                self._present_s, self._present_start = 0.0, to
        else:
            self._away_s += dt
            if self._away_s >= cfg.break_reset_minutes * 60:
                self._present_s, self._present_start = 0.0, None

    def _maybe_alert(self, s: _Slouch, now: float, events: list[Event]) -> None:
        cfg = self._alerts
        if s.alerts == 0:
            due = s.bad_s >= cfg.bad_posture_minutes * 60
        else:
            due = cfg.escalate_minutes > 0 and s.bad_s >= s.last_alert_bad_s + cfg.escalate_minutes * 60
        if not due:
            return
        if self._last_alert_at is not None and now - self._last_alert_at < cfg.cooldown_minutes * 60:
            return
        s.alerts += 1
        s.last_alert_bad_s = s.bad_s
        self._last_alert_at = now
        self._count("bad_posture", now)
        events.append(self._alert_event("bad_posture", s.bad_s, s.started, now))

    def _count(self, kind: str, at: float) -> None:
        """Count an alert on the day it happened in (an alert at exactly midnight is the new day's)."""
        assert self._day is not None
        if at >= self._day.end:
            self._carry.append(kind)
            return
        if kind == "bad_posture":
            self._day.alerts += 1
        else:
            self._day.break_reminders += 1

    @staticmethod
    def _alert_event(kind: str, duration_s: float, started: float, now: float) -> Event:
        minutes = max(1, round(duration_s / 60))
        unit = "minute" if minutes == 1 else "minutes"
        message = {
            "bad_posture": f"You have been slouching for {minutes} {unit}. Sit up and relax your shoulders.",
            "recovered": f"Good posture again, after {minutes} {unit} of slouching.",
            "break_reminder": f"You have been sitting for {minutes} {unit}. Time for a short break.",
        }[kind]
        payload = {
            "type": kind,
            "duration_s": round(duration_s, 1),
            "started": iso_utc(started),
            "message": message,
            "ts": iso_utc(now),
        }
        return Event("alert", now, payload)
