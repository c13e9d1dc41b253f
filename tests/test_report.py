"""`deskpulse stats` output (deskpulse/report.py) on a seeded database."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from deskpulse.config import Config, load_config
from deskpulse.history import History
from deskpulse.report import format_stats_table, stats_command

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 21, 18, 0, tzinfo=BERLIN).timestamp()


def at(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2026, 11, day, hour, minute, tzinfo=BERLIN).timestamp()


def config_for(tmp_path: Path) -> Config:
    return load_config(None, {"data_dir": str(tmp_path), "history.timezone": "Europe/Berlin"}, env={})


def seed(path: Path) -> None:
    with History(path) as h:
        # Nov 19: 3 h good, 30 min bad, one alert.
        h.record_interval("good", at(19, 9), at(19, 12))
        h.record_interval("bad", at(19, 12), at(19, 12, 30))
        h.record_alert({"type": "bad_posture"}, at(19, 12, 10))
        h.record_alert({"type": "recovered"}, at(19, 12, 31))
        # Nov 20: nothing. Nov 21: 45 min good, 15 min bad (still open at the last checkpoint), 2 alerts.
        h.record_interval("absent", at(21, 8), at(21, 9))
        h.record_interval("good", at(21, 9), at(21, 9, 45))
        h.checkpoint("bad", at(21, 9, 45), at(21, 10))
        h.record_alert({"type": "bad_posture"}, at(21, 9, 55))
        h.record_alert({"type": "bad_posture"}, at(21, 9, 58))
        h.record_alert({"type": "break_reminder"}, at(21, 9, 59))


def run(config: Config, days: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = stats_command(config, days, now=NOW, out=out, err=err)  # type: ignore[arg-type]
    return code, out.getvalue(), err.getvalue()


def test_stats_table_on_a_seeded_database(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    seed(tmp_path / "history.sqlite3")
    code, out, err = run(config, 4)
    assert (code, err) == (0, "")
    assert out == (
        "date        good %  bad min  alerts\n"
        "2026-11-18       -      0.0       0\n"
        "2026-11-19    85.7     30.0       1\n"
        "2026-11-20       -      0.0       0\n"
        "2026-11-21    75.0     15.0       2\n"
        "total         83.3     45.0       3\n"
    )


def test_stats_reads_while_the_agent_holds_the_database_open(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    seed(tmp_path / "history.sqlite3")
    with History(tmp_path / "history.sqlite3") as live:
        live.checkpoint("bad", at(21, 10), at(21, 10, 6))
        code, out, _ = run(config, 1)
    assert code == 0
    assert out.splitlines()[1] == "2026-11-21    68.2     21.0       2"


def test_missing_database_is_not_an_error(tmp_path: Path) -> None:
    code, out, err = run(config_for(tmp_path), 7)
    assert code == 0
    assert out == "date        good %  bad min  alerts\n"
    assert err.startswith("deskpulse stats: no history yet (") and err.count("\n") == 1


def test_bad_days_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for days in (0, -3, 367, "7", 2.5, True):
        code, out, err = run(config_for(tmp_path), days)
        assert (code, out) == (2, "")
        assert err.startswith("deskpulse stats: --days must be a whole number from 1 to 366") and err.count("\n") == 1


def test_corrupt_database_is_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "history.sqlite3").write_bytes(b"garbage" * 1000)
    code, out, err = run(config_for(tmp_path), 7)
    assert (code, out) == (1, "")
    assert "history database is corrupt" in err and err.count("\n") == 1
    assert (tmp_path / "history.sqlite3").read_bytes() == b"garbage" * 1000  # read-only: untouched


def test_format_empty() -> None:
    assert format_stats_table([]) == "date        good %  bad min  alerts\n"
