"""Notices when the config file is edited while the agent runs.

A valid edit applies the runtime settings it changes (the same keys as `config/set`) and
names the keys that need a restart; an invalid edit is reported, one line per problem, and
the running configuration stays: a typo never stops monitoring. Checked by mtime, a few
seconds apart, from the pipeline's periodic tick (no thread of its own).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping

from . import settings
from .config import Config, load_config
from .errors import ConfigError, RequestError

log = logging.getLogger(__name__)


def _flat(config: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.model_dump().items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


class ConfigWatcher:
    def __init__(self, path: Path, overrides: Mapping[str, Any], interval_s: float = 2.0) -> None:
        self.path = path
        self.overrides = dict(overrides)
        self.interval_s = interval_s
        self._mtime = self._stat()
        self._next = time.monotonic() + interval_s

    def _stat(self) -> float | None:
        try:
            return os.stat(self.path).st_mtime_ns
        except OSError:
            return None

    def poll(self, running: Config) -> Config | None:
        """A new running config if the file changed validly, else None."""
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + self.interval_s
        mtime = self._stat()
        if mtime == self._mtime:
            return None
        self._mtime = mtime
        try:
            edited = load_config(self.path, self.overrides)
        except ConfigError as exc:
            for line in exc.problems:
                log.error("config edited but invalid, keeping the running configuration: %s", line)
            return None
        old, new = _flat(running), _flat(edited)
        changed = sorted(k for k in new if new[k] != old.get(k))
        live = {k: new[k] for k in changed if k in settings.RUNTIME_KEYS}
        restart = [k for k in changed if k not in settings.RUNTIME_KEYS]
        if restart:
            log.warning("config edited: %s take effect after a restart", ", ".join(restart))
        if not live:
            return None
        try:
            updated = settings.apply(running, live)
        except RequestError as exc:  # validated above; kept for safety
            log.error("config edited but not applied: %s", exc)
            return None
        log.info("config edited: applied %s", ", ".join(f"{k}={v}" for k, v in live.items()))
        return updated
