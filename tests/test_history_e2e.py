"""History end to end: kill -9 the real agent mid-run, restart it on the same data dir, and
check the database is intact and today's totals carry on; `deskpulse stats --days 7` as a
subprocess on a seeded database.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from deskpulse.history import History
from deskpulse.topics import Topics

from .photos import astronaut
from .support import ROOT, AgentProcess, Msg, agent_env

CHECKPOINT_S = 1.0
CONFIG = f"[history]\ncheckpoint_s = {CHECKPOINT_S}\nstats_interval_s = 1\ntimezone = \"UTC\"\n"


def integrity(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def good_s(m: Msg) -> float:
    return float(m.json()["good_s"])


def run_then_kill(port: int, recorder: Any, device: str, source: str, data_dir: Path) -> Msg:
    """Run the agent until a few checkpoints of good posture are in the stats, then SIGKILL it.
    Returns the last stats message seen before the kill."""
    t = Topics("deskpulse", device)
    agent = AgentProcess(port, source, device, data_dir, config=CONFIG).start()
    try:
        first = recorder.wait_topic(t.stats, lambda m: good_s(m) > 0, timeout=60)
        recorder.wait_topic(t.stats, lambda m: good_s(m) >= good_s(first) + 4 * CHECKPOINT_S, timeout=30)
        agent.signal(signal.SIGKILL)
        assert agent.wait() == -signal.SIGKILL
    finally:
        agent.stop()
    assert "Traceback" not in agent.log()
    return [m for m in recorder.messages if m.topic == t.stats][-1]


@pytest.mark.slow
def test_sigkill_mid_run_keeps_the_database_intact_and_totals_carry_on(broker, recorder, tmp_path: Path) -> None:
    t = Topics("deskpulse", "hist1")
    data_dir = tmp_path / "d"
    source = str(astronaut(tmp_path / "a.jpg"))
    last = run_then_kill(broker.port, recorder, "hist1", source, data_dir)
    before = good_s(last)
    db = data_dir / "hist1" / "history.sqlite3"
    assert integrity(db) == "ok"

    mark = recorder.mark()
    with AgentProcess(broker.port, source, "hist1", data_dir, config=CONFIG) as agent:
        # Today's totals carry on from what was checkpointed (a fresh start would show ~1 s here).
        carried = recorder.wait_topic(t.stats, lambda m: good_s(m) > 0, timeout=60, start=mark)
        assert carried.json()["date"] == last.json()["date"]
        assert good_s(carried) >= before - CHECKPOINT_S, (good_s(carried), before)
        # ...and they keep growing from there.
        recorder.wait_topic(t.stats, lambda m: good_s(m) >= good_s(carried) + 2, timeout=30, start=mark)
        log = agent.log()
        assert "history disabled" not in log and "corrupt" not in log and "Traceback" not in log
    assert integrity(db) == "ok"
    with History(db, readonly=True) as h:
        assert h.journal_mode() == "wal"
        rows = h.intervals(0, 4e9)
    # One row per state change, not per frame: a handful for two short runs.
    assert 1 <= len(rows) <= 10, rows
    assert all(end >= start for _, start, end in rows)


@pytest.mark.slow
def test_the_first_stats_after_a_restart_already_carry_todays_totals(broker, recorder, tmp_path: Path) -> None:
    t = Topics("deskpulse", "hist2")
    data_dir = tmp_path / "d"
    source = str(astronaut(tmp_path / "a.jpg"))
    before = good_s(run_then_kill(broker.port, recorder, "hist2", source, data_dir))
    mark = recorder.mark()
    with AgentProcess(broker.port, source, "hist2", data_dir, config=CONFIG):
        first = recorder.wait_topic(t.stats, timeout=60, start=mark)
        assert good_s(first) >= before - CHECKPOINT_S, (good_s(first), before)


def test_stats_cli_prints_the_table_from_a_seeded_database(tmp_path: Path) -> None:
    # Days are laid out around UTC midnight of today; the config pins the zone to UTC.
    today = datetime.now(timezone.utc).date()

    def at(days_ago: int, hour: int, minute: int = 0) -> float:
        d = today - timedelta(days=days_ago)
        return datetime.combine(d, time(hour, minute), timezone.utc).timestamp()

    with History(tmp_path / "history.sqlite3") as h:
        # 6 days ago: 2 h good, 30 min bad, one alert (and a recovery, which is not counted).
        h.record_interval("good", at(6, 9), at(6, 11))
        h.record_interval("bad", at(6, 11), at(6, 11, 30))
        h.record_alert({"type": "bad_posture"}, at(6, 11, 10))
        h.record_alert({"type": "recovered"}, at(6, 11, 31))
        # Yesterday: only away and paused: no monitored time.
        h.record_interval("absent", at(1, 8), at(1, 9))
        h.record_interval("paused", at(1, 9), at(1, 10))
        # Today: 45 min good, 15 min bad still open at the last checkpoint, two alerts, a break reminder.
        h.record_interval("good", at(0, 0), at(0, 0, 45))
        h.checkpoint("bad", at(0, 0, 45), at(0, 1))
        h.record_alert({"type": "bad_posture"}, at(0, 0, 50))
        h.record_alert({"type": "bad_posture"}, at(0, 0, 58))
        h.record_alert({"type": "break_reminder"}, at(0, 0, 59))
        # 8 days ago: outside --days 7.
        h.record_interval("bad", at(8, 9), at(8, 10))
    cfg = tmp_path / "deskpulse.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n[history]\ntimezone = "UTC"\n')
    res = subprocess.run([sys.executable, "-m", "deskpulse", "stats", "--days", "7", "--config", str(cfg)],
                         capture_output=True, text=True, env=agent_env(), cwd=str(ROOT), timeout=60)
    assert (res.returncode, res.stderr) == (0, "")
    day = [(today - timedelta(days=n)).isoformat() for n in range(6, -1, -1)]
    assert res.stdout.splitlines() == [
        "date        good %  bad min  alerts",
        f"{day[0]}    80.0     30.0       1",
        f"{day[1]}       -      0.0       0",
        f"{day[2]}       -      0.0       0",
        f"{day[3]}       -      0.0       0",
        f"{day[4]}       -      0.0       0",
        f"{day[5]}       -      0.0       0",
        f"{day[6]}    75.0     15.0       2",
        "total         78.6     45.0       3",
    ]

    bad = subprocess.run([sys.executable, "-m", "deskpulse", "stats", "--days", "0", "--config", str(cfg)],
                         capture_output=True, text=True, env=agent_env(), cwd=str(ROOT), timeout=60)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("deskpulse stats: --days must be a whole number") and "Traceback" not in bad.stderr
