"""The request verbs: what each .../request/<verb> does to the agent, and its answer.

Every handler validates its payload first (unknown fields, types, ranges) and raises
RequestError naming the problem, so a bad request changes nothing. The dashboard, Home
Assistant (switch, button) and the CLI all arrive here through the same router.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from . import settings
from .calibration import Calibrator
from .errors import RequestError
from .history import HistoryError, parse_date_range
from .requests import PENDING, Reply, Router, get_number, reject_unknown
from .tracker import local_date

if TYPE_CHECKING:
    from .agent import Agent

log = logging.getLogger(__name__)


def register(router: Router, agent: "Agent") -> None:
    c = Commands(agent)
    router.add("pause", c.pause, description="pause monitoring and release the camera; optional minutes")
    router.add("resume", c.resume, description="resume monitoring")
    router.add("monitoring", c.monitoring, raw=True, description="ON resumes, OFF pauses (Home Assistant)")
    router.add("calibrate", c.calibrate, description="record a few seconds of good posture as the baseline")
    router.add("stream", c.stream, description="renew the frame lease; optional lease_s, or enable=false",
               quiet=True)
    router.add("config/get", c.config_get, description="the runtime settings")
    router.add("config/set", c.config_set, description="change runtime settings, e.g. alerts.bad_posture_minutes")
    router.add("history", c.history, description="per-day totals; optional from/to (YYYY-MM-DD)")


class Commands:
    def __init__(self, agent: "Agent") -> None:
        self.agent = agent

    def pause(self, body: dict[str, Any], reply: Reply) -> Any:
        reject_unknown(body, {"minutes"})
        minutes = get_number(body, "minutes", low=0.1, high=7 * 24 * 60)
        until = self.agent.pause(minutes)
        return {"paused": True, "until": self.agent.iso(until)}

    def resume(self, body: dict[str, Any], reply: Reply) -> Any:
        reject_unknown(body, set())
        self.agent.resume()
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
        a = self.agent
        seconds = get_number(body, "seconds", default=a.config.posture.calibration_s, low=1, high=120)
        assert seconds is not None
        if a.pause_state.paused:
            raise RequestError("monitoring is paused: resume before calibrating")
        if a.camera == "disconnected":
            raise RequestError("the camera is disconnected")
        a.start_calibration(Calibrator(a.config.posture.view, seconds, a.clock()), reply)
        reply.progress({"stage": "starting", "percent": 0, "seconds": seconds})
        return PENDING

    def stream(self, body: dict[str, Any], reply: Reply) -> Any:
        reject_unknown(body, {"lease_s", "enable"})
        frames = self.agent.config.frames
        if frames.mode == "never":
            raise RequestError("frames are disabled on this device (frames.mode = never)")
        if "enable" in body and not isinstance(body["enable"], bool):
            raise RequestError("enable must be true or false")
        if body.get("enable") is False:
            self.agent.set_lease(0.0)
            return {"streaming": frames.mode == "always", "lease_s": 0}
        lease = get_number(body, "lease_s", default=frames.lease_s, low=1, high=600)
        assert lease is not None
        self.agent.set_lease(time.monotonic() + lease)
        return {"streaming": True, "lease_s": lease, "fps": frames.fps}

    def config_get(self, body: dict[str, Any], reply: Reply) -> Any:
        reject_unknown(body, set())
        return {"settings": settings.current(self.agent.config), "descriptions": settings.RUNTIME_KEYS}

    def config_set(self, body: dict[str, Any], reply: Reply) -> Any:
        new = settings.apply(self.agent.config, body)
        self.agent.apply_config(new)
        return {"settings": settings.current(new)}

    def history(self, body: dict[str, Any], reply: Reply) -> Any:
        reject_unknown(body, {"from", "to"})
        a = self.agent
        if a.history is None:
            raise RequestError("history is unavailable on this device (see the agent's log)")
        start, end = parse_date_range(body.get("from"), body.get("to"), local_date(a.clock(), a.tz))
        try:
            days = a.history.daily(start, end, a.tz)
        except HistoryError as exc:
            raise RequestError(f"history could not be read: {exc}") from None
        return {"from": start.isoformat(), "to": end.isoformat(), "days": days}
