"""The posture history: a SQLite database in WAL mode in the device's directory.

Owns the file and its schema: posture intervals (one row per state change; the open
interval's row is rewritten by `checkpoint` every few seconds, so kill -9 loses at most
that much), alert events and calibrations. Per-day figures are folded from the rows with
`DayTotals.fold`, the same function the tracker uses for the live stats.

One connection guarded by a lock, so the pipeline thread and the request thread may both
call it. sqlite3 errors become `HistoryError` here; a corrupt file becomes `HistoryCorrupt`,
which `open_history` turns into "move the file aside and start fresh" with one warning.
It never publishes, never decides alerts and never reads the clock except in `open_history`.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import sqlite3
import threading
import time
from datetime import date, timedelta, tzinfo
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import DeskPulseError, RequestError
from .tracker import POSTURES, DayTotals, Event

__all__ = [
    "DB_NAME", "MAX_RANGE_DAYS", "History", "HistoryCorrupt", "HistoryError", "db_path", "open_history",
    "parse_date_range", "resolve_timezone",
]

log = logging.getLogger(__name__)

DB_NAME = "history.sqlite3"
MAX_RANGE_DAYS = 366
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS intervals (
    id INTEGER PRIMARY KEY,
    start_ts REAL NOT NULL,
    end_ts REAL NOT NULL,
    posture TEXT NOT NULL,
    open INTEGER NOT NULL DEFAULT 0,
    CHECK (end_ts >= start_ts)
);
CREATE INDEX IF NOT EXISTS intervals_end ON intervals (end_ts);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_at ON alerts (at);
CREATE TABLE IF NOT EXISTS calibrations (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    baseline TEXT NOT NULL
);
"""

T = TypeVar("T")


class HistoryError(DeskPulseError):
    """The history database cannot be opened, read or written."""


class HistoryCorrupt(HistoryError):
    """The file exists but is not a healthy SQLite database."""


def db_path(directory: Path, configured: Path | None = None) -> Path:
    """history.path if set, else <directory>/history.sqlite3 (directory: storage.device_dir)."""
    return configured if configured is not None else Path(directory) / DB_NAME


def resolve_timezone(name: str = "") -> tzinfo:
    """The zone whose midnight starts a day: `name`, else $TZ, else the system zone, else UTC."""
    candidates = [name, os.environ.get("TZ", "").lstrip(":")]
    try:
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    except OSError:
        pass
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for key in candidates:
        if not key:
            continue
        try:
            return ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


def parse_date_range(
    from_value: Any, to_value: Any, today: date, default_days: int = 7
) -> tuple[date, date]:
    """Validate a `history` request's "from"/"to" (ISO dates, both optional) -> (from, to).

    Raises RequestError naming the problem.
    """
    def parse(key: str, value: Any, default: date) -> date:
        if value is None:
            return default
        if not isinstance(value, str):
            raise RequestError(f"{key}: expected a date like \"2026-11-21\", got {type(value).__name__}")
        try:
            return date.fromisoformat(value)
        except ValueError:
            shown = value if len(value) <= 40 else value[:37] + "..."
            raise RequestError(f"{key}: not a date like \"2026-11-21\": {shown!r}") from None

    to = parse("to", to_value, today)
    start = parse("from", from_value, to - timedelta(days=default_days - 1))
    if start > to:
        raise RequestError(f"from ({start}) is after to ({to})")
    if (to - start).days + 1 > MAX_RANGE_DAYS:
        raise RequestError(f"range too long: at most {MAX_RANGE_DAYS} days")
    return start, to


class History:
    """The history database. Open with `History(path)` or, in the agent, `open_history(path)`."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.Lock()
        self._open_row: tuple[int, str, float] | None = None  # (rowid, posture, start) of the open interval
        try:
            if readonly:
                if not self.path.exists():
                    raise HistoryError(f"{self.path}: no history database")
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, timeout=5.0, check_same_thread=False,
                                           isolation_level=None)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False,
                                           isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise HistoryError(f"{self.path}: cannot open the history database ({exc})") from None
        try:
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise HistoryError(f"{self.path}: the history database is locked ({exc})") from None
            raise HistoryCorrupt(f"{self.path}: the history database is corrupt ({exc})") from None
        except HistoryError:
            self._db.close()
            raise

    def _setup(self) -> None:
        db = self._db
        check = db.execute("PRAGMA quick_check").fetchall()
        if check != [("ok",)]:
            raise HistoryCorrupt(f"{self.path}: the history database is corrupt ({check[0][0]})")
        if self.readonly:
            return
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise HistoryError(f"{self.path}: cannot switch the history database to WAL (got {mode})")
        # In WAL mode NORMAL never corrupts the file; a power cut may lose the last commits.
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        # Rows left open by a crash end at their last checkpoint.
        db.execute("UPDATE intervals SET open = 0 WHERE open = 1")

    # -- plumbing -----------------------------------------------------------------------------

    def _run(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                return fn(self._db)
            except sqlite3.Error as exc:
                raise HistoryError(f"{self.path}: cannot {what} ({exc})") from None

    def _write(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self.readonly:
            raise HistoryError(f"{self.path}: opened read-only, cannot {what}")

        def tx(db: sqlite3.Connection) -> T:
            db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return out

        return self._run(what, tx)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def journal_mode(self) -> str:
        return self._run("read the journal mode", lambda db: str(db.execute("PRAGMA journal_mode").fetchone()[0]))

    def integrity_check(self) -> str:
        """'ok' or SQLite's first complaint."""
        return self._run("check integrity", lambda db: str(db.execute("PRAGMA integrity_check").fetchone()[0]))

    # -- writes -------------------------------------------------------------------------------

    def record(self, event: Event) -> None:
        """Store a tracker event: an interval or an alert."""
        if event.kind == "interval":
            p = event.payload
            self.record_interval(p["posture"], p["start"], p["end"])
        elif event.kind == "alert":
            self.record_alert(event.payload, event.at)
        else:
            raise ValueError(f"unknown event kind {event.kind!r}")

    def record_interval(self, posture: str, start: float, end: float) -> None:
        """A closed interval. Closes the checkpointed open row if it is the same interval."""
        self._store_interval(posture, start, end, open_=False, what="record an interval")

    def checkpoint(self, posture: str, start: float, now: float) -> None:
        """Write the still-open interval (insert once, then update its end)."""
        self._store_interval(posture, start, max(start, now), open_=True, what="checkpoint")

    def _store_interval(self, posture: str, start: float, end: float, *, open_: bool, what: str) -> None:
        if posture not in POSTURES:
            raise ValueError(f"unknown posture {posture!r}")
        if end < start:
            raise ValueError(f"interval ends before it starts ({start} > {end})")

        def fn(db: sqlite3.Connection) -> None:
            row = self._open_row
            if row is not None and row[1] == posture and row[2] == start:
                db.execute("UPDATE intervals SET end_ts = ?, open = ? WHERE id = ?", (end, int(open_), row[0]))
            else:
                db.execute("UPDATE intervals SET open = 0 WHERE open = 1")
                cur = db.execute(
                    "INSERT INTO intervals (start_ts, end_ts, posture, open) VALUES (?, ?, ?, ?)",
                    (start, end, posture, int(open_)),
                )
                row = (int(cur.lastrowid or 0), posture, start)
            self._open_row = row if open_ else None

        self._write(what, fn)

    def record_alert(self, payload: dict[str, Any], at: float) -> None:
        self._write("record an alert", lambda db: db.execute(
            "INSERT INTO alerts (at, type, payload) VALUES (?, ?, ?)",
            (at, str(payload.get("type", "")), json.dumps(payload, sort_keys=True)),
        ))

    def record_calibration(self, baseline: dict[str, Any], at: float) -> None:
        self._write("record a calibration", lambda db: db.execute(
            "INSERT INTO calibrations (at, baseline) VALUES (?, ?)", (at, json.dumps(baseline, sort_keys=True)),
        ))

    def prune(self, retention_days: int, now: float) -> int:
        """Delete rows older than `retention_days`; the newest calibration is always kept. -> rows deleted."""
        cutoff = now - retention_days * 86400.0

        def fn(db: sqlite3.Connection) -> int:
            n = db.execute("DELETE FROM intervals WHERE end_ts < ? AND open = 0", (cutoff,)).rowcount
            n += db.execute("DELETE FROM alerts WHERE at < ?", (cutoff,)).rowcount
            n += db.execute(
                "DELETE FROM calibrations WHERE at < ? AND id <> (SELECT MAX(id) FROM calibrations)", (cutoff,)
            ).rowcount
            return n

        return self._write("prune", fn)

    # -- reads --------------------------------------------------------------------------------

    def latest_calibration(self) -> tuple[dict[str, Any], float] | None:
        row = self._run("read calibrations", lambda db: db.execute(
            "SELECT baseline, at FROM calibrations ORDER BY id DESC LIMIT 1").fetchone())
        return None if row is None else (json.loads(row[0]), row[1])

    def intervals(self, start: float, end: float) -> list[tuple[str, float, float]]:
        """(posture, start, end) rows overlapping [start, end), in time order."""
        rows = self._run("read intervals", lambda db: db.execute(
            "SELECT posture, start_ts, end_ts FROM intervals WHERE end_ts > ? AND start_ts < ?"
            " ORDER BY start_ts, id", (start, end)).fetchall())
        return [(p, s, e) for p, s, e in rows]

    def alerts(self, start: float, end: float) -> list[dict[str, Any]]:
        rows = self._run("read alerts", lambda db: db.execute(
            "SELECT payload FROM alerts WHERE at >= ? AND at < ? ORDER BY at, id", (start, end)).fetchall())
        return [json.loads(r[0]) for r in rows]

    def day_totals(self, day: date, tz: tzinfo) -> DayTotals:
        """One local day's totals, to restore the tracker after a restart."""
        return self.daily_totals(day, day, tz)[0]

    def daily_totals(self, from_date: date, to_date: date, tz: tzinfo) -> list[DayTotals]:
        days = list(_days(from_date, to_date))
        out = [DayTotals.empty(d, tz) for d in days]
        if not out:
            return out
        lo, hi = out[0].start, out[-1].end
        rows = self.intervals(lo, hi)
        alert_rows = self._run("read alerts", lambda db: db.execute(
            "SELECT at, type FROM alerts WHERE at >= ? AND at < ? ORDER BY at", (lo, hi)).fetchall())
        starts = [t.start for t in out]
        for posture, s, e in rows:
            # Usually one day per row, but a row may span midnight if something else wrote it.
            i = max(0, bisect.bisect_right(starts, s) - 1)
            while i < len(out) and out[i].start < e:
                out[i].fold(posture, s, e)
                i += 1
        for at, kind in alert_rows:
            t = out[bisect.bisect_right(starts, at) - 1]
            if kind == "bad_posture":
                t.alerts += 1
            elif kind == "break_reminder":
                t.break_reminders += 1
        return out

    def daily(self, from_date: date, to_date: date, tz: tzinfo) -> list[dict[str, Any]]:
        """Per-day aggregates, oldest first, one entry for every day in the range (inclusive)."""
        if to_date < from_date:
            raise ValueError(f"from_date {from_date} is after to_date {to_date}")
        if (to_date - from_date).days + 1 > MAX_RANGE_DAYS:
            raise ValueError(f"at most {MAX_RANGE_DAYS} days at once")
        return [t.summary() for t in self.daily_totals(from_date, to_date, tz)]


def _days(a: date, b: date) -> Iterator[date]:
    d = a
    while d <= b:
        yield d
        d += timedelta(days=1)


def open_history(path: Path) -> History:
    """Open the agent's history; a corrupt file is moved aside to <name>.corrupt-<ts> and replaced.

    Raises HistoryError only if the fresh database cannot be created either (e.g. no permission).
    """
    try:
        return History(path)
    except HistoryCorrupt as exc:
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        log.warning("%s; moved it to %s and starting a fresh history", exc, aside.name)
        os.replace(path, aside)
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.replace(side, aside.with_name(aside.name + suffix))
        return History(path)

