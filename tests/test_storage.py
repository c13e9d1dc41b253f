"""Per-device storage: every device's files under <data_dir>/<device_id>/, the one-time move
of an older single-device data dir (the first device to start takes it, all or nothing, its
SQLite WAL included), and `deskpulse stats` reading the configured device's history."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from deskpulse import discovery, storage
from deskpulse.calibration import BaselineStore
from deskpulse.config import Config, PostureConfig, load_config
from deskpulse.history import DB_NAME, History
from deskpulse.pause import PauseState, PauseStore
from deskpulse.posture import Baseline
from deskpulse.report import stats_command
from deskpulse.settings import SettingsStore

from .support import ROOT, agent_env

NOW = datetime(2026, 11, 21, 18, 0, tzinfo=timezone.utc).timestamp()
VIEWS = PostureConfig.model_fields["view"].annotation.__args__  # type: ignore[union-attr]


def config(data_dir: Path, device: str, **over: object) -> Config:
    return load_config(None, {"data_dir": str(data_dir), "device_id": device, "history.timezone": "UTC", **over},
                       env={})


def old_layout(data_dir: Path) -> dict[str, object]:
    """A single-device data dir as the previous version left it, written by the real stores.
    The history's last rows are only in its WAL (the writer died without a checkpoint)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    PauseStore(data_dir).save(PauseState(True, None))
    SettingsStore(data_dir).write({"alerts.bad_posture_minutes": 15})
    BaselineStore(data_dir).save("front", Baseline(head_height=0.7, calibrated=True))
    topics = discovery.discovery_topics("homeassistant", "old")
    discovery.write_published(data_dir / discovery.RECORD_NAME, topics)
    script = ("import os, sys; from deskpulse.history import History; "
              "h = History(__import__('pathlib').Path(sys.argv[1])); "
              f"h.record_interval('good', {NOW - 600}, {NOW - 60}); os._exit(0)")
    subprocess.run([sys.executable, "-c", script, str(data_dir / DB_NAME)], check=True, cwd=str(ROOT),
                   env=agent_env(), timeout=60)
    assert (data_dir / f"{DB_NAME}-wal").stat().st_size > 0  # the interval lives in the WAL only
    return {"topics": topics}


def moved_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "deskpulse.storage" and r.levelno == logging.INFO]


def test_every_device_file_is_known_to_the_migration(tmp_path: Path) -> None:
    # The owners name their files; storage must move each of them.
    owned = [PauseStore(tmp_path).path.name, SettingsStore(tmp_path).path.name, discovery.RECORD_NAME,
             *(BaselineStore(tmp_path).path(view).name for view in VIEWS)]
    assert sorted(owned) == sorted(storage.DEVICE_FILES)
    assert storage.HISTORY_FILES[0] == DB_NAME
    cfg = config(tmp_path, "desk1")
    assert storage.device_dir(cfg) == tmp_path / "desk1"
    assert discovery.record_path(cfg) == tmp_path / "desk1" / discovery.RECORD_NAME


def test_the_first_device_to_start_takes_the_old_files_with_one_log_line(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="deskpulse.storage")
    data = tmp_path / "data"
    old = old_layout(data)
    a = storage.prepare(config(data, "desk-a"))
    assert a == data / "desk-a"
    (line,) = moved_lines(caplog)
    assert str(data) in line and "desk-a" in line and "history.sqlite3-wal" in line
    assert storage.legacy_files(config(data, "desk-a")) == []
    # Everything reads back from the device's directory, the WAL-only history rows included.
    assert PauseStore(a).load(NOW) == PauseState(True, None)
    assert SettingsStore(a).read() == {"alerts.bad_posture_minutes": 15}
    assert BaselineStore(a).load("front").head_height == 0.7
    assert discovery.read_published(discovery.record_path(config(data, "desk-a"))) == sorted(old["topics"])  # type: ignore[call-overload]
    with History(a / DB_NAME) as h:
        assert h.intervals(0, 4e9) == [("good", NOW - 600, NOW - 60)]
    # The second device finds nothing to take: an empty directory of its own, no log line.
    b = storage.prepare(config(data, "desk-b"))
    assert list(b.iterdir()) == [] and len(moved_lines(caplog)) == 1
    assert PauseStore(b).load(NOW) == PauseState()
    # Starting again moves nothing and says nothing.
    storage.prepare(config(data, "desk-a"))
    assert len(moved_lines(caplog)) == 1
    assert sorted(p.name for p in data.iterdir()) == ["desk-a", "desk-b"]


def test_never_migrates_into_a_device_directory_that_has_data(tmp_path: Path, caplog) -> None:
    data = tmp_path / "data"
    old_layout(data)
    own = data / "desk-a"
    PauseStore(own).save(PauseState(False, None))
    before = sorted(p.name for p in data.iterdir())
    storage.prepare(config(data, "desk-a"))
    assert sorted(p.name for p in data.iterdir()) == before  # the old files stay where they were
    assert [p.name for p in own.iterdir()] == ["pause.json"]
    assert PauseStore(own).load(NOW) == PauseState()
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "already holds this device's data" in warning and "pause.json" in warning


def test_a_configured_history_path_is_not_moved(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old_layout(data)
    cfg = config(data, "desk-a", **{"history.path": str(data / DB_NAME)})
    storage.prepare(cfg)
    assert (data / DB_NAME).exists() and not (data / "desk-a" / DB_NAME).exists()
    assert (data / "desk-a" / "pause.json").exists()


def test_a_move_interrupted_midway_is_completed_on_the_next_start(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="deskpulse.storage")
    data = tmp_path / "data"
    old_layout(data)
    staging = data / ".migrating-desk-a"
    staging.mkdir()
    for name in ("pause.json", DB_NAME):  # what a start killed mid-move had renamed so far
        (data / name).rename(staging / name)
    a = storage.prepare(config(data, "desk-a"))
    assert not staging.exists()
    assert {"pause.json", DB_NAME, f"{DB_NAME}-wal", "settings.json"} <= {p.name for p in a.iterdir()}
    with History(a / DB_NAME) as h:
        assert len(h.intervals(0, 4e9)) == 1
    assert len(moved_lines(caplog)) == 1


def flock_waiters(directory: Path) -> int:
    """Processes blocked in flock() on this directory, from /proc/locks ("->" marks a waiter)."""
    inode = f":{directory.stat().st_ino} "
    return sum(1 for line in Path("/proc/locks").read_text().splitlines()
               if "->" in line and "FLOCK" in line and inode in line)


def test_two_devices_starting_at_once_one_takes_everything(tmp_path: Path) -> None:
    import fcntl
    import os

    data = tmp_path / "data"
    old_layout(data)
    script = ("import sys, pathlib; from deskpulse.config import load_config; from deskpulse.storage import prepare; "
              "prepare(load_config(None, {'data_dir': sys.argv[1], 'device_id': sys.argv[2]}, env={}))")
    # Hold the data dir's lock so both starts queue up on it, then let them race.
    fd = os.open(data, os.O_RDONLY | os.O_DIRECTORY)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        procs = [subprocess.Popen([sys.executable, "-c", script, str(data), dev], cwd=str(ROOT), env=agent_env())
                 for dev in ("desk-a", "desk-b")]
        deadline = time.monotonic() + 60
        while flock_waiters(data) < 2:
            assert time.monotonic() < deadline, "the two starts never queued on the data dir's lock"
            assert all(p.poll() is None for p in procs), "a start finished without waiting for the lock"
            time.sleep(0.05)
    finally:
        os.close(fd)
        for p in procs:
            assert p.wait(60) == 0
    contents = {dev: sorted(p.name for p in (data / dev).iterdir()) for dev in ("desk-a", "desk-b")}
    full = sorted(contents.values(), key=len)
    assert full[0] == [] and {"pause.json", "settings.json", DB_NAME, f"{DB_NAME}-wal"} <= set(full[1]), contents
    assert storage.legacy_files(config(data, "desk-a")) == []


def seed_history(path: Path, good_s: float, bad_s: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with History(path) as h:
        h.record_interval("good", NOW - 7200, NOW - 7200 + good_s)
        h.record_interval("bad", NOW - 3600, NOW - 3600 + bad_s)


def stats(cfg: Config) -> list[str]:
    out, err = io.StringIO(), io.StringIO()
    assert stats_command(cfg, 1, now=NOW, out=out, err=err) == 0, err.getvalue()
    return out.getvalue().splitlines()


def test_stats_reads_the_configured_devices_history(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed_history(storage.device_dir(config(data, "desk-a")) / DB_NAME, good_s=1800, bad_s=600)
    seed_history(storage.device_dir(config(data, "desk-b")) / DB_NAME, good_s=600, bad_s=1800)
    assert stats(config(data, "desk-a"))[1] == "2026-11-21    75.0     10.0       0"
    assert stats(config(data, "desk-b"))[1] == "2026-11-21    25.0     30.0       0"
    # A device that has no history yet says so; it never shows another device's.
    out, err = io.StringIO(), io.StringIO()
    assert stats_command(config(data, "desk-c"), 1, now=NOW, out=out, err=err) == 0
    assert "no history yet" in err.getvalue() and str(data / "desk-c" / DB_NAME) in err.getvalue()
    assert out.getvalue().splitlines() == ["date        good %  bad min  alerts"]


def test_stats_before_the_agent_has_moved_an_old_history_reads_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed_history(data / DB_NAME, good_s=1800, bad_s=600)
    assert stats(config(data, "desk-a"))[1] == "2026-11-21    75.0     10.0       0"
    storage.prepare(config(data, "desk-a"))
    assert stats(config(data, "desk-a"))[1] == "2026-11-21    75.0     10.0       0"
    assert stats(config(data, "desk-b"))[1:] == []
