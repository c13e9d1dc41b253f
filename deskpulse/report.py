"""`deskpulse stats`: a per-day table of good %, bad minutes and alerts from the history.

Reads the configured device's history (`<data_dir>/<device_id>/history.sqlite3`, or
history.path; an older single-device one until the agent has moved it). Opens the database
read-only, so it is safe while the agent runs. Owns the table format and the command's
argument checks; the CLI only parses `--days` and calls `stats_command`.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta, tzinfo
from typing import Any, TextIO

from . import storage
from .config import Config
from .history import DB_NAME, MAX_RANGE_DAYS, History, HistoryError, resolve_timezone
from .tracker import local_date

__all__ = ["format_stats_table", "stats_command"]

_HEADER = f"{'date':<10}  {'good %':>6}  {'bad min':>7}  {'alerts':>6}"


def _row(label: str, good_pct: float | None, bad_s: float, alerts: int) -> str:
    pct = "-" if good_pct is None else f"{good_pct:.1f}"
    return f"{label:<10}  {pct:>6}  {bad_s / 60:>7.1f}  {alerts:>6}"


def format_stats_table(rows: list[dict[str, Any]]) -> str:
    """Rows as from History.daily(), oldest first, plus a total line. "-" = no monitored time."""
    lines = [_HEADER]
    good = bad = 0.0
    alerts = 0
    for r in rows:
        lines.append(_row(r["date"], r["good_pct"], r["bad_s"], r["alerts"]))
        good += r["good_s"]
        bad += r["bad_s"]
        alerts += r["alerts"]
    if rows:
        pct = None if good + bad <= 0 else round(100.0 * good / (good + bad), 1)
        lines.append(_row("total", pct, bad, alerts))
    return "\n".join(lines) + "\n"


def stats_command(
    config: Config,
    days: int = 7,
    *,
    now: float | None = None,
    tz: tzinfo | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print the last `days` days (today included). Exit codes: 0 ok (also: no history yet),
    1 the database cannot be read, 2 bad --days."""
    out = out or sys.stdout
    err = err or sys.stderr
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_RANGE_DAYS:
        err.write(f"deskpulse stats: --days must be a whole number from 1 to {MAX_RANGE_DAYS}, got {days!r}\n")
        return 2
    now = time.time() if now is None else now
    tz = tz or resolve_timezone(config.history.timezone)
    today = local_date(now, tz)
    start = today - timedelta(days=days - 1)
    path = config.history.path or storage.find(config, DB_NAME)
    if not path.exists():
        # The agent creates it on its first run; an empty history is not an error.
        err.write(f"deskpulse stats: no history yet ({path} does not exist; the agent creates it)\n")
        out.write(format_stats_table([]))
        return 0
    try:
        with History(path, readonly=True) as history:
            rows = history.daily(start, today, tz)
    except HistoryError as exc:
        err.write(f"deskpulse stats: {exc}\n")
        return 1
    out.write(format_stats_table(rows))
    return 0
