"""The SQLite history (deskpulse/history.py): WAL, round trips, totals, pruning, corruption, kill -9."""

from __future__ import annotations

import logging
import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskpulse.config import AlertsConfig
from deskpulse.errors import DeskPulseError, RequestError
from deskpulse.history import History, HistoryCorrupt, HistoryError, open_history, parse_date_range
from deskpulse.tracker import POSTURES, Tracker, local_date

from .support import ROOT

BERLIN = ZoneInfo("Europe/Berlin")
DAY = date(2026, 11, 21)
T0 = datetime(2026, 11, 21, 9, 0, tzinfo=BERLIN).timestamp()


@pytest.fixture
def history(tmp_path: Path):
    h = History(tmp_path / "data" / "history.sqlite3")
    try:
        yield h
    finally:
        h.close()


def test_wal_mode_and_synchronous_normal(history: History) -> None:
    assert history.journal_mode() == "wal"
    assert history._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert history.integrity_check() == "ok"


def test_intervals_alerts_calibrations_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    with History(path) as h:
        h.record_interval("good", T0, T0 + 100)
        h.checkpoint("bad", T0 + 100, T0 + 105)
        h.checkpoint("bad", T0 + 100, T0 + 110)  # same open interval: one row, end moved
        h.record_alert({"type": "bad_posture", "duration_s": 600.0, "started": "x", "message": "m", "ts": "y"},
                       T0 + 110)
        h.record_calibration({"head_height": 0.68}, T0)
        h.record_calibration({"head_height": 0.70}, T0 + 50)
    with History(path) as h:
        assert h.intervals(T0, T0 + 200) == [("good", T0, T0 + 100), ("bad", T0 + 100, T0 + 110)]
        assert h.alerts(T0, T0 + 200)[0]["duration_s"] == 600.0
        assert h.latest_calibration() == ({"head_height": 0.70}, T0 + 50)
        # The crashed run's open row is closed on open; a new interval does not touch it.
        h.checkpoint("good", T0 + 200, T0 + 205)
        h.record_interval("good", T0 + 200, T0 + 220)
        assert h.intervals(T0 + 150, T0 + 300) == [("good", T0 + 200, T0 + 220)]
        assert h._db.execute("SELECT COUNT(*) FROM intervals").fetchone()[0] == 3


def test_checkpoint_then_close_uses_one_row(history: History) -> None:
    history.checkpoint("good", T0, T0 + 5)
    history.checkpoint("good", T0, T0 + 10)
    history.record_interval("good", T0, T0 + 12)
    history.checkpoint("bad", T0 + 12, T0 + 15)
    rows = history._db.execute("SELECT posture, start_ts, end_ts, open FROM intervals ORDER BY id").fetchall()
    assert rows == [("good", T0, T0 + 12, 0), ("bad", T0 + 12, T0 + 15, 1)]


def test_rejects_bad_rows(history: History) -> None:
    with pytest.raises(ValueError, match="posture"):
        history.record_interval("slouch", T0, T0 + 1)
    with pytest.raises(ValueError, match="before it starts"):
        history.record_interval("good", T0 + 1, T0)


def _drive(tracker: Tracker, history: History, seq: list[tuple[str, float]], start: float,
           checkpoint_every: int = 3) -> float:
    now = start
    for i, (posture, dt) in enumerate(seq):
        now += dt
        for ev in tracker.update(posture, now):
            history.record(ev)
        if i % checkpoint_every == 0:
            history.checkpoint(*tracker.open_interval(now))
    history.checkpoint(*tracker.open_interval(now))
    return now


def test_day_totals_equal_the_trackers_stats(history: History) -> None:
    tracker = Tracker(AlertsConfig(bad_posture_minutes=1, cooldown_minutes=0, escalate_minutes=1), BERLIN)
    seq = [("good", 0)] + [(("good", "bad", "unknown", "bad", "bad", "absent")[i % 6], 37.0) for i in range(300)]
    now = _drive(tracker, history, seq, T0)
    stats = tracker.stats(now)
    restored = history.day_totals(DAY, BERLIN).summary()
    for key in restored:
        assert restored[key] == stats[key], key
    assert stats["alerts"] > 0


@settings(max_examples=40, deadline=None)
@given(
    seq=st.lists(st.tuples(st.sampled_from(POSTURES), st.floats(0, 400, allow_nan=False)), min_size=1, max_size=60),
    offset=st.floats(0, 3600),
)
def test_day_totals_equal_the_trackers_stats_for_any_sequence(seq: list[tuple[str, float]], offset: float) -> None:
    # Start late in the evening so that many runs cross midnight.
    start = datetime(2026, 11, 21, 23, 0, tzinfo=BERLIN).timestamp() + offset
    with tempfile.TemporaryDirectory() as tmp, History(Path(tmp) / "h.sqlite3") as h:
        tracker = Tracker(AlertsConfig(bad_posture_minutes=0.5, cooldown_minutes=0), BERLIN)
        now = _drive(tracker, h, seq, start, checkpoint_every=2)
        today = local_date(now, BERLIN)
        assert h.day_totals(today, BERLIN).summary() == {
            k: v for k, v in tracker.stats(now).items() if k in h.day_totals(today, BERLIN).summary()
        }


def test_daily_covers_every_day_and_splits_at_midnight(history: History) -> None:
    late = datetime(2026, 11, 20, 23, 0, tzinfo=BERLIN).timestamp()
    history.record_interval("good", late, late + 7200)  # 23:00 -> 01:00, written in one row
    history.record_interval("bad", late + 7200, late + 7200 + 600)
    history.record_alert({"type": "bad_posture"}, late + 7800)
    history.record_alert({"type": "break_reminder"}, late + 7800)
    history.record_alert({"type": "recovered"}, late + 7800)
    rows = history.daily(date(2026, 11, 19), DAY, BERLIN)
    assert [r["date"] for r in rows] == ["2026-11-19", "2026-11-20", "2026-11-21"]
    assert rows[0]["good_pct"] is None and rows[0]["good_s"] == 0
    assert (rows[1]["good_s"], rows[1]["bad_s"], rows[1]["alerts"]) == (3600, 0, 0)
    assert (rows[2]["good_s"], rows[2]["bad_s"], rows[2]["alerts"], rows[2]["break_reminders"]) == (3600, 600, 1, 1)
    assert rows[2]["good_pct"] == 85.7
    with pytest.raises(ValueError):
        history.daily(DAY, date(2026, 11, 1), BERLIN)


def test_parse_date_range() -> None:
    assert parse_date_range(None, None, DAY) == (date(2026, 11, 15), DAY)
    assert parse_date_range("2026-11-01", "2026-11-03", DAY) == (date(2026, 11, 1), date(2026, 11, 3))
    for args, msg in [
        (("2026-11-05", "2026-11-01"), "after"),
        (("2020-01-01", "2026-11-01"), "too long"),
        ((17, None), "from: expected a date"),
        (("yesterday", None), "from: not a date"),
    ]:
        with pytest.raises(RequestError, match=msg):
            parse_date_range(*args, DAY)


def test_prune_keeps_recent_rows_and_the_latest_calibration(history: History) -> None:
    old, now = T0 - 100 * 86400, T0
    history.record_interval("good", old, old + 60)
    history.record_interval("good", now - 60, now)
    history.record_alert({"type": "bad_posture"}, old)
    history.record_alert({"type": "bad_posture"}, now)
    history.record_calibration({"v": 1}, old)
    history.record_calibration({"v": 2}, old + 10)
    assert history.prune(90, now) == 3
    assert history.intervals(0, now + 1) == [("good", now - 60, now)]
    assert len(history.alerts(0, now + 1)) == 1
    assert history.latest_calibration() == ({"v": 2}, old + 10)


def test_concurrent_threads_share_one_connection(history: History) -> None:
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(300):
                history.record_interval("good", T0 + i, T0 + i + 1)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(300):
                history.daily(DAY, DAY, BERLIN)
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=writer, name="w"), threading.Thread(target=reader, name="r")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert history.day_totals(DAY, BERLIN).seconds["good"] == 300


def test_garbage_file_is_a_clear_error_and_is_moved_aside(tmp_path: Path, caplog) -> None:
    path = tmp_path / "history.sqlite3"
    path.write_bytes(b"this is not a database\n" * 500)
    with pytest.raises(HistoryCorrupt, match="history.sqlite3: the history database is corrupt") as info:
        History(path)
    assert isinstance(info.value, DeskPulseError)
    with caplog.at_level(logging.WARNING, logger="deskpulse.history"):
        h = open_history(path)
    try:
        assert h.integrity_check() == "ok"
        h.record_interval("good", T0, T0 + 1)
    finally:
        h.close()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("history.sqlite3.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "moved it to history.sqlite3.corrupt-" in warnings[0].getMessage()


def test_damaged_pages_are_detected(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    with History(path) as h:
        for i in range(3000):
            h.record_interval("good", T0 + i, T0 + i + 1)
    assert not (tmp_path / "history.sqlite3-wal").exists()  # checkpointed into the main file on close
    data = bytearray(path.read_bytes())
    data[3 * 4096: 5 * 4096] = os.urandom(2 * 4096)
    path.write_bytes(bytes(data))
    with pytest.raises(HistoryCorrupt):
        History(path)
    with open_history(path) as h:
        assert h.intervals(0, T0 + 10**6) == []


def test_unopenable_path_is_a_history_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(HistoryError, match="cannot open"):
        History(tmp_path / "file" / "history.sqlite3")
    with pytest.raises(HistoryError, match="no history database"):
        History(tmp_path / "missing.sqlite3", readonly=True)


def test_readonly_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    History(path).close()
    with History(path, readonly=True) as h, pytest.raises(HistoryError, match="read-only"):
        h.record_interval("good", T0, T0 + 1)


# -- kill -9 ------------------------------------------------------------------------------------

CHILD = r"""
import sys
from pathlib import Path
from zoneinfo import ZoneInfo
from deskpulse.config import AlertsConfig
from deskpulse.history import open_history
from deskpulse.tracker import Tracker, local_date

tz = ZoneInfo("Europe/Berlin")
path, t = Path(sys.argv[1]), float(sys.argv[2])
history = open_history(path)
tracker = Tracker(AlertsConfig(bad_posture_minutes=0.5, cooldown_minutes=0, escalate_minutes=0.5), tz,
                  restored=history.day_totals(local_date(t, tz), tz))
pattern = ["good"] * 7 + ["bad"] * 5 + ["unknown"] * 2
tracker.update("good", t)
last_checkpoint, i = t, 0
while True:
    t += 1.0
    i += 1
    for event in tracker.update(pattern[i % len(pattern)], t):
        history.record(event)
    if t - last_checkpoint >= 5:
        history.checkpoint(*tracker.open_interval(t))
        last_checkpoint = t
        kind = "commit"  # everything up to t is committed when this line is written
    else:
        kind = "tick"  # processed, maybe not yet committed
    sys.stdout.write(f"{kind} {t!r} {tracker.stats(t)['alerts']}\n")
    sys.stdout.flush()
"""


def _run_and_kill(path: Path, start: float, commits_before_kill: int) -> dict[str, tuple[float, int]]:
    """Run the writer, SIGKILL it after `commits_before_kill` commits.

    -> {"commit": (t, alerts) of the last commit it reported, "tick": (t, alerts) of the last step it processed}.
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), repr(start)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    buf = b""
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while buf.count(b"commit ") < commits_before_kill:
                if not sel.select(timeout=60):
                    raise AssertionError("writer reported no progress for 60 s")
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    raise AssertionError(f"writer died: {proc.stderr.read().decode()}")
                buf += chunk
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        buf += proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    last: dict[str, tuple[float, int]] = {}
    for line in buf.split(b"\n")[:-1]:  # a torn last line is ignored
        kind, t, alerts = line.decode().split()
        last[kind] = (float(t), int(alerts))
    last["tick"] = max(last["tick"], last["commit"])
    return last


def test_sigkill_mid_run_keeps_the_database_sound_and_totals_carry_on(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    start = T0
    previous_total = 0.0
    for kills_after in (40, 7, 150, 23, 90):
        last = _run_and_kill(path, start, kills_after)
        (commit_t, commit_alerts), (tick_t, tick_alerts) = last["commit"], last["tick"]
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            newest = raw.execute("SELECT MAX(end_ts) FROM intervals").fetchone()[0]
        raw.close()
        # Everything committed survived, and at most one checkpoint period (5 s) plus one step was lost.
        # The writer can be killed between committing a step and reporting it on stdout, so
        # the database may be one step ahead of the last "tick" line it printed.
        assert commit_t <= newest, (commit_t, newest)
        assert newest <= tick_t + 1.0, (newest, tick_t)
        assert tick_t - newest <= 6.0, (tick_t, newest)
        with History(path) as h:
            assert h.integrity_check() == "ok"
            totals = h.day_totals(DAY, BERLIN)
        total = sum(totals.seconds.values())
        # Today's totals carry on: this run's seconds are added to the previous runs'.
        assert total == pytest.approx(previous_total + (newest - start))
        # As above, the one step the writer did not report may have recorded one more alert.
        assert commit_alerts <= totals.alerts <= tick_alerts + 1
        previous_total = total
        start = tick_t + 60  # the restart takes a minute of wall time; nothing is recorded for it
    # A fresh tracker restored from the history continues today's figures.
    with History(path, readonly=True) as h:
        tracker = Tracker(AlertsConfig(), BERLIN, restored=h.day_totals(DAY, BERLIN))
    tracker.update("good", start)
    stats = tracker.stats(start + 10)
    assert sum(stats[f"{p}_s"] for p in POSTURES) == pytest.approx(previous_total + 10, abs=0.2)
