"""Notices when the config file is edited while the agent runs.

An edit changes only the keys that were edited: the old file layer is compared with the new
one, never with the running config, so values set through `config/set` (the settings layer),
the environment or the flags stay as they are. An edited runtime key (the keys of
`config/set`) applies at once unless a higher layer sets it, which is logged; any other
edited key is named as needing a restart. An invalid edit is reported, one line per problem,
and the running configuration stays: a typo never stops monitoring. Checked by mtime, a few
seconds apart, from the pipeline's periodic tick (no thread of its own).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping

from . import settings
from .config import Config, load_layers, read_file_layer
from .errors import ConfigError
from .settings import RuntimeConfig

log = logging.getLogger(__name__)

_MISSING = object()


class ConfigWatcher:
    def __init__(self, runtime: RuntimeConfig | Path, overrides: Mapping[str, Any] | None = None,
                 interval_s: float = 2.0) -> None:
        if isinstance(runtime, Path):
            # Transitional, for the composition root until it builds a RuntimeConfig: layers of
            # the file, the environment and these flags, without the settings layer.
            runtime = RuntimeConfig(load_layers(runtime, overrides or {}))
        if runtime.layers.path is None:
            raise ValueError("there is no config file to watch")
        self.runtime = runtime
        self.path = runtime.layers.path
        self.interval_s = interval_s
        self._mtime = self._stat()
        self._next = time.monotonic() + interval_s

    def _stat(self) -> int | None:
        try:
            return os.stat(self.path).st_mtime_ns
        except OSError:
            return None

    def poll(self, running: Config) -> Config | None:
        """`running` with the edited runtime keys applied, if the file changed validly and
        some applied; else None."""
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + self.interval_s
        mtime = self._stat()
        if mtime == self._mtime:
            return None
        self._mtime = mtime
        try:
            old, new = self.runtime.replace_file(read_file_layer(self.path))
        except ConfigError as exc:
            for line in exc.problems:
                log.error("config edited but invalid, keeping the running configuration: %s", line)
            return None
        before, after = old.flat("file"), new.flat("file")
        edited = sorted(k for k in before.keys() | after.keys()
                        if before.get(k, _MISSING) != after.get(k, _MISSING))
        live: list[str] = []
        restart: list[str] = []
        for key in edited:
            source = new.source_of(key)
            if source in ("settings", "env", "flag"):
                hint = "; config/set it to the file's value to hand it back to the file" if source == "settings" else ""
                log.warning("config edited: %s stays %s, set by the %s, which takes precedence over the file%s",
                            key, new.value(key) if key in settings.RUNTIME_KEYS else "as it is",
                            new.origin_of(key), hint)
            elif key in settings.RUNTIME_KEYS:
                live.append(key)
            else:
                restart.append(key)
        if restart:
            log.warning("config edited: %s take effect after a restart", ", ".join(restart))
        if not live:
            return None
        updated = self.runtime.onto(running, live)
        log.info("config edited: applied %s", ", ".join(f"{k}={new.value(k)}" for k in live))
        return updated
