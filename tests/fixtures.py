"""Payload fixtures built by the agent's own producers, never written by hand.

state: payloads.state_payload over a StateView whose reading comes from posture.classify
on landmarks; stats and alerts: a real Tracker driven through a scripted day; health:
payloads.health_payload; history days: tracker.DayTotals folded from intervals; answers:
requests.ok/error around data validated by deskpulse.schema. A test that needs a payload
asks for one here, so a fixture can never carry a value the agent does not send.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any

from pydantic import TypeAdapter

from deskpulse import __version__
from deskpulse.config import PostureConfig
from deskpulse.config.alerts import AlertsConfig
from deskpulse.payloads import HealthView, StateView, health_payload, state_payload
from deskpulse.pose import LEFT_EAR, LEFT_HIP, LEFT_SHOULDER, NOSE, RIGHT_EAR, RIGHT_HIP, RIGHT_SHOULDER, Landmark, Pose
from deskpulse.posture import Baseline, Reading, classify
from deskpulse.requests import error, ok
from deskpulse.schema import RESPONSES
from deskpulse.tracker import BUCKET_S, DayTotals, Tracker

W, H = 640, 480
BASELINE = Baseline(head_height=0.85, nose_height=0.75, shoulder_width=200 / W, calibrated=True,
                    at="2026-11-21T08:00:00Z")


# ---------- readings: the real classifier on landmarks ----------

def _pose(points: dict[int, tuple[float, float]], vis: float = 0.99) -> Pose:
    marks = [Landmark(0.0, 0.0, 0.0) for _ in range(33)]
    for i, (x, y) in points.items():
        marks[i] = Landmark(x, y, vis)
    return Pose(tuple(marks), W, H)


def front_pose(head_y: float = 130, nose_y: float = 150, vis: float = 0.99, hips_y: float | None = None) -> Pose:
    """A frontal upper body, shoulders 200 px wide at y=300; a lower head_y/nose_y is a slouch.
    With hips_y, both hips are in the frame too."""
    points = {LEFT_SHOULDER: (420, 300), RIGHT_SHOULDER: (220, 300), NOSE: (320, nose_y),
              LEFT_EAR: (355, head_y), RIGHT_EAR: (285, head_y)}
    if hips_y is not None:
        points.update({LEFT_HIP: (390, hips_y), RIGHT_HIP: (250, hips_y)})
    return _pose(points, vis)


def side_pose(neck_deg: float, vis: float = 0.99) -> Pose:
    import math

    sx, sy = 300.0, 250.0
    ear = (sx + 80 * math.sin(math.radians(neck_deg)), sy - 80 * math.cos(math.radians(neck_deg)))
    nose = (ear[0] + 30, ear[1] + 10)  # facing image right, head slightly down
    return _pose({NOSE: nose, LEFT_EAR: ear, LEFT_SHOULDER: (sx, sy), LEFT_HIP: (sx, sy + 150),
                  RIGHT_EAR: ear, RIGHT_SHOULDER: (sx, sy), RIGHT_HIP: (sx, sy + 150)}, vis)


def reading(kind: str = "good") -> Reading:
    """posture.classify's verdict: good, bad (head down), slumped (hips in view), side_bad, unknown."""
    front, side = PostureConfig(), PostureConfig(view="side")
    if kind == "good":
        return classify(front_pose(), front, BASELINE)
    if kind == "slumped":
        return classify(front_pose(hips_y=460), front, BASELINE)
    if kind == "bad":
        return classify(front_pose(head_y=215, nose_y=240), front, BASELINE)
    if kind == "side_bad":
        return classify(side_pose(60), side, BASELINE)
    if kind == "unknown":
        return classify(front_pose(vis=0.1), front, BASELINE)
    raise ValueError(f"no reading fixture {kind!r}")


# ---------- retained payloads ----------

def state(posture: str, *, bad_for_s: float = 0.0, seq: int = 1, camera: str | None = None,
          until: float | None = None, since: float | None = None, now: float | None = None,
          reading_: Reading | None = None, **view: Any) -> dict[str, Any]:
    """The state payload for `posture`, as the agent builds it."""
    now = time.time() if now is None else now
    if reading_ is None and posture in ("good", "bad", "unknown"):
        reading_ = reading(posture)
    defaults: dict[str, Any] = {
        "view": "front", "calibrated": True, "pose_fps": 2.0 if posture == "good" else 10.0,
        "mode": "paused" if posture == "paused" else ("idle" if posture == "absent" else "steady"),
    }
    return state_payload(StateView(
        posture=posture, since=now - max(bad_for_s, 600.0) if since is None else since, reading=reading_,
        bad_for_s=bad_for_s, camera=camera or ("released" if posture == "paused" else "ok"),
        until=until, ts=now, seq=seq, **{**defaults, **view}))


def health(now: float | None = None, **over: Any) -> dict[str, Any]:
    """A health report of an agent two hours up and streaming."""
    fields: dict[str, Any] = dict(
        fps=9.8, inference_ms=21.3, dropped_frames=12, frames_processed=72_000, frames_encoded=300,
        snapshots_encoded=720, frames_dropped_offline=0, camera="ok", camera_error=None, source="demo",
        cpu_temp_c=51.0, rss_mb=180.0, uptime_s=7380.0, version=__version__, streaming=True,
        threads={"pipeline": True, "requests": True, "capture": True}, pipeline_errors=0, callback_errors=0,
        ts=time.time() if now is None else now, pose_fps=10.0, mode="streaming")
    fields.update(over)
    return health_payload(HealthView(**fields))


# A day at the desk from 08:00, one letter per 5-minute bucket (g good, b bad, a absent,
# u unknown, p paused): every posture, two slouches long enough for an alert.
DESK_DAY = "aaggggggbbggggggggaagggggbbbgggggpppppggggggbggggggggggggg"
_LETTERS = {"g": "good", "b": "bad", "a": "absent", "u": "unknown", "p": "paused"}


def _zone_at(now: float, hour: int) -> tzinfo:
    """A fixed UTC offset (whole minutes) under which `now` is about `hour`:00 local time."""
    utc = datetime.fromtimestamp(now, timezone.utc)
    seconds = utc.hour * 3600 + utc.minute * 60 + utc.second
    offset = round((hour * 3600 - seconds) / 60) * 60
    if offset >= 14 * 3600:
        offset -= 24 * 3600
    return timezone(timedelta(seconds=offset))


def desk_day(now: float | None = None, *, local_hour: int = 13, script: str = DESK_DAY, start_hour: int = 8,
             alerts: AlertsConfig | None = None) -> tuple[Tracker, list[dict[str, Any]], float]:
    """A real Tracker fed `script` from `start_hour`, then the last posture up to `now`, in a
    zone where `now` is `local_hour`:00. Returns the tracker, its alert payloads and `now`."""
    now = time.time() if now is None else now
    tz = _zone_at(now, local_hour)
    midnight = DayTotals.empty(datetime.fromtimestamp(now, tz).date(), tz).start
    tracker = Tracker(alerts or AlertsConfig(), tz, max_gap_s=2 * BUCKET_S)
    events = []
    t = midnight + start_hour * 3600
    for letter in script:
        events += tracker.update(_LETTERS[letter], t)
        t += BUCKET_S
    end = max(t, now)
    while t < end:  # the last posture goes on until now
        t = min(t + BUCKET_S, end)
        events += tracker.update(_LETTERS[script[-1]], t)
    return tracker, [e.payload for e in events if e.kind == "alert"], end


def stats(now: float | None = None, **kw: Any) -> dict[str, Any]:
    """The retained stats payload after `desk_day` (Tracker.stats)."""
    tracker, _, end = desk_day(now, **kw)
    return tracker.stats(end)


def alert(kind: str = "bad_posture", now: float | None = None) -> dict[str, Any]:
    """An alert payload of `kind` (bad_posture, recovered, break_reminder) from a real Tracker."""
    now = time.time() if now is None else now
    script = "gg" + "b" * 3 + "g" * 2  # 15 slouching minutes, then good again
    cfg = AlertsConfig(break_minutes=20)
    _, events, _ = desk_day(now, local_hour=12, script=script, start_hour=11, alerts=cfg)
    found = [e for e in events if e["type"] == kind]
    if not found:
        raise ValueError(f"the scripted day raised no {kind!r} alert: {[e['type'] for e in events]}")
    return found[0]


# ---------- history days and request answers ----------

def day(d: date, good_s: float, bad_s: float, alerts: int = 0, *, absent_s: float = 1200.0,
        unknown_s: float = 30.0, tz: tzinfo = timezone.utc) -> dict[str, Any]:
    """One `history` day (DayTotals.summary), folded from intervals from 08:00 local time."""
    totals = DayTotals.empty(d, tz)
    t = totals.start + 8 * 3600
    for posture, seconds in (("good", good_s), ("bad", bad_s), ("absent", absent_s), ("unknown", unknown_s)):
        totals.fold(posture, t, t + seconds)
        t += seconds
    totals.alerts = alerts
    return totals.summary()


def data(verb: str, **fields: Any) -> Any:
    """The data of an ok answer to `verb`, checked against its schema model (aliases: from)."""
    adapter: TypeAdapter[Any] = TypeAdapter(RESPONSES[verb])
    return adapter.dump_python(adapter.validate_python(fields), mode="json", by_alias=True, exclude_unset=True)


def answer(request: dict[str, Any], data_: Any = None, *, final: bool = True) -> dict[str, Any]:
    """An ok answer to `request` (its transaction echoed), as requests.Router sends it."""
    return ok(data_, request.get("transaction"), final=final)


def refusal(request: dict[str, Any], message: str) -> dict[str, Any]:
    """An error answer to `request`, as requests.Router sends it."""
    return error(message, request.get("transaction"))
