"""The request verbs: what each .../request/<verb> asks of the agent, and its answer.

Every handler validates its payload first (unknown fields, types, ranges) and raises
RequestError naming the problem, so a bad request changes nothing. The handlers depend
only on the `Control` interface (control.py); the dashboard, Home Assistant (switch,
button) and the CLI all arrive here through the same router. Handlers run on the requests
thread; every change to the agent's state is carried out by the pipeline thread.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .clock import iso
from .control import Control
from .errors import RequestError
from .history import HistoryError, parse_date_range
from .ratelimit import TokenBucket
from .requests import PENDING, SILENT, Reply, Router
from .schema import parse_request, settings_changes

log = logging.getLogger(__name__)

# history reads SQLite and folds up to MAX_RANGE_DAYS of intervals: a few a minute is plenty.
HISTORY_RATE_PER_S = 0.5
HISTORY_BURST = 5


def register(router: Router, control: Control) -> None:
    c = Commands(control)
    router.add("pause", c.pause, description="pause monitoring and release the camera; optional minutes")
    router.add("resume", c.resume, description="resume monitoring")
    router.add("monitoring", c.monitoring, raw=True, description="ON resumes, OFF pauses (Home Assistant)")
    router.add("calibrate", c.calibrate, description="record a few seconds of good posture as the baseline")
    router.add("stream", c.stream, description="renew the frame lease; optional lease_s, or enable=false",
               quiet=True)
    router.add("config/get", c.config_get, description="the runtime settings and where each value came from")
    router.add("config/set", c.config_set, description="change runtime settings, e.g. alerts.bad_posture_minutes")
    router.add("history", c.history, description="per-day totals; optional from/to (YYYY-MM-DD)")


class Commands:
    def __init__(self, control: Control) -> None:
        self.control = control
        self._history_bucket = TokenBucket(HISTORY_RATE_PER_S, HISTORY_BURST, time.monotonic())
        self._history_lock = threading.Lock()

    def pause(self, body: dict[str, Any], reply: Reply) -> Any:
        req = parse_request("pause", body)
        return {"paused": True, "until": iso(self.control.pause(req.minutes))}

    def resume(self, body: dict[str, Any], reply: Reply) -> Any:
        parse_request("resume", body)
        self.control.resume()
        return {"paused": False}

    def monitoring(self, body: str, reply: Reply) -> Any:
        return self.resume({}, reply) if parse_request("monitoring", body).on else self.pause({}, reply)

    def calibrate(self, body: dict[str, Any], reply: Reply) -> Any:
        req = parse_request("calibrate", body)
        seconds = req.seconds if req.seconds is not None else self.control.config().posture.calibration_s
        self.control.start_calibration(seconds, reply)
        return PENDING

    def stream(self, body: dict[str, Any], reply: Reply) -> Any:
        req = parse_request("stream", body)
        frames = self.control.config().frames
        if frames.mode == "never":
            raise RequestError("frames are disabled on this device (frames.mode = never)")
        if not req.enable:
            self.control.set_lease(None, req.viewer)
            return SILENT if req.quiet else {"streaming": frames.mode == "always", "lease_s": 0}
        lease = req.lease_s if req.lease_s is not None else frames.lease_s
        self.control.set_lease(lease, req.viewer)
        return SILENT if req.quiet else {"streaming": True, "lease_s": lease, "fps": frames.fps}

    def config_get(self, body: dict[str, Any], reply: Reply) -> Any:
        parse_request("config/get", body)
        return self.control.settings()

    def config_set(self, body: dict[str, Any], reply: Reply) -> Any:
        return self.control.apply_settings(settings_changes(parse_request("config/set", body)))

    def history(self, body: dict[str, Any], reply: Reply) -> Any:
        req = parse_request("history", body)
        with self._history_lock:
            if not self._history_bucket.take(time.monotonic()):
                raise RequestError(f"too many history requests: try again in "
                                   f"{self._history_bucket.retry_after():.0f}s")
        start, end = parse_date_range(req.from_, req.to, self.control.today())
        try:
            days = self.control.history(start, end)
        except HistoryError as exc:
            raise RequestError(f"history could not be read: {exc}") from None
        return {"from": start.isoformat(), "to": end.isoformat(), "days": days}
