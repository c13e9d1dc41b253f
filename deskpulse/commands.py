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
from .requests import PENDING, Reply, Router, get_number, reject_unknown

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
        reject_unknown(body, {"minutes"})
        minutes = get_number(body, "minutes", low=0.1, high=7 * 24 * 60)
        until = self.control.pause(minutes)
        return {"paused": True, "until": iso(until)}

    def resume(self, body: dict[str, Any], reply: Reply) -> Any:
        reject_unknown(body, set())
        self.control.resume()
        return {"paused": False}

    def monitoring(self, body: str, reply: Reply) -> Any:
        command = body.upper()
        if command == "ON":
            return self.resume({}, reply)
        if command == "OFF":
            return self.pause({}, reply)
        raise RequestError(f"monitoring expects ON or OFF, got {body[:40]!r}")

    def calibrate(self, body: dict[str, Any], reply: Reply) -> Any:
        reject_unknown(body, {"seconds"})
        default = self.control.config().posture.calibration_s
        seconds = get_number(body, "seconds", default=default, low=1, high=120)
        assert seconds is not None
        self.control.start_calibration(seconds, reply)
        return PENDING

    def stream(self, body: dict[str, Any], reply: Reply) -> Any:
        reject_unknown(body, {"lease_s", "enable"})
        frames = self.control.config().frames
        if frames.mode == "never":
            raise RequestError("frames are disabled on this device (frames.mode = never)")
        if "enable" in body and not isinstance(body["enable"], bool):
            raise RequestError("enable must be true or false")
        if body.get("enable") is False:
            self.control.set_lease(None)
            return {"streaming": frames.mode == "always", "lease_s": 0}
        lease = get_number(body, "lease_s", default=frames.lease_s, low=1, high=600)
        assert lease is not None
        self.control.set_lease(lease)
        return {"streaming": True, "lease_s": lease, "fps": frames.fps}

    def config_get(self, body: dict[str, Any], reply: Reply) -> Any:
        reject_unknown(body, set())
        return self.control.settings()

    def config_set(self, body: dict[str, Any], reply: Reply) -> Any:
        return self.control.apply_settings(body)

    def history(self, body: dict[str, Any], reply: Reply) -> Any:
        reject_unknown(body, {"from", "to"})
        with self._history_lock:
            if not self._history_bucket.take(time.monotonic()):
                raise RequestError(f"too many history requests: try again in "
                                   f"{self._history_bucket.retry_after():.0f}s")
        start, end = parse_date_range(body.get("from"), body.get("to"), self.control.today())
        try:
            days = self.control.history(start, end)
        except HistoryError as exc:
            raise RequestError(f"history could not be read: {exc}") from None
        return {"from": start.isoformat(), "to": end.isoformat(), "days": days}
