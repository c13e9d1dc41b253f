"""Where each device keeps its state: `<data_dir>/<device_id>/`.

Pause, calibration baselines, runtime settings, the Home Assistant discovery record and the
history database all belong to one device, so two agents with different ids on one host
(one data dir) share none of them. The stores themselves take a directory; this module says
which one, and once, on the first start after an upgrade, moves an older single-device data
dir (those files directly in `data_dir`) into the starting device's directory.

The move is all or nothing as seen from outside: the files are renamed into a staging
directory beside the device's, which is then renamed into place (one rename, atomic on one
file system). A lock on the data dir makes concurrent starts take turns: the first device
to start takes every old file, the others find none. A device directory that already holds
anything is never migrated into. It never opens the files it moves.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from .config import Config

__all__ = ["DEVICE_FILES", "HISTORY_FILES", "device_dir", "find", "legacy_files", "legacy_path", "prepare"]

log = logging.getLogger(__name__)

# The files a device owns, by name; tests/test_storage.py checks them against their owners
# (PauseStore, SettingsStore, BaselineStore, discovery.RECORD_NAME, history.DB_NAME).
DEVICE_FILES = ("pause.json", "settings.json", "ha-discovery.json",
                "calibration-front.json", "calibration-side.json")
# The default history database and SQLite's companions: they only ever move together.
HISTORY_FILES = ("history.sqlite3", "history.sqlite3-wal", "history.sqlite3-shm", "history.sqlite3-journal")
_STAGING = ".migrating-{}"


def device_dir(config: Config) -> Path:
    """The directory of everything device-specific: <data_dir>/<device_id>."""
    return config.data_dir / config.device_id


def legacy_path(config: Config, name: str) -> Path:
    """Where the single-device layout (before per-device directories) kept `name`."""
    return config.data_dir / name


def find(config: Config, name: str) -> Path:
    """The device's file `name`; for readers that may run before the agent has moved an old
    layout (`deskpulse stats`, `ha-remove`): the old single-device file while the device
    has none of its own yet and the old one exists."""
    own = device_dir(config) / name
    old = legacy_path(config, name)
    if not own.exists() and old.is_file():
        return old
    return own


def legacy_files(config: Config) -> list[str]:
    """The names of the old single-device files present directly in data_dir. The history
    counts only when history.path is unset (a configured path is the user's and stays)."""
    names = DEVICE_FILES + (HISTORY_FILES if config.history.path is None else ())
    return [n for n in names if legacy_path(config, n).is_file()]


def prepare(config: Config) -> Path:
    """Create the device's directory, first moving an old single-device layout into it.
    Returns the directory. Raises OSError (the caller reports it and exits)."""
    data, target = config.data_dir, device_dir(config)
    data.mkdir(parents=True, exist_ok=True)
    fd = os.open(data, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # concurrent starts take turns; released on close
        staging = data / _STAGING.format(config.device_id)
        names = legacy_files(config)
        if names or staging.exists():
            _migrate(config, names, staging, target, fd)
        target.mkdir(exist_ok=True)
    finally:
        os.close(fd)
    return target


def _has_data(directory: Path) -> bool:
    return directory.is_dir() and any(directory.iterdir())


def _migrate(config: Config, names: list[str], staging: Path, target: Path, data_fd: int) -> None:
    data = config.data_dir
    if _has_data(target):
        log.warning("not moving the single-device files %s from %s: %s already holds this device's data "
                    "(move or delete them yourself)", ", ".join(names) or "-", data, target)
        return
    # A staging dir left by a start that crashed mid-move is ours: carry on with it.
    staging.mkdir(exist_ok=True)
    for name in names:
        os.rename(data / name, staging / name)
    moved = sorted(p.name for p in staging.iterdir())
    os.rename(staging, target)  # replaces an empty target directory, atomically
    os.fsync(data_fd)
    log.info("moved %s from the single-device data dir %s into %s (per-device storage; the first device "
             "to start after the upgrade takes them)", ", ".join(moved), data, target)
