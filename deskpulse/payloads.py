"""Builders for the retained state and health payloads (topic contract v1).

Pure functions over plain data: the pipeline fills a `StateView`/`HealthView` and these
turn it into the JSON object that goes on the wire. Tests and fixtures use the same
builders, so no payload shape is ever written by hand. The models that validate them
live in deskpulse/schema.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .clock import iso
from .posture import Reading
from .tracker import POSTURES  # the one list of postures (stats keys and timeline letters follow it)

__all__ = ["POSTURES", "HealthView", "StateView", "health_payload", "state_payload"]


@dataclass(frozen=True)
class StateView:
    """Everything the state payload shows, as the pipeline knows it at one instant."""

    posture: str                 # good | bad | absent | unknown | paused
    since: float                 # wall time the posture began
    reading: Reading | None      # the latest frame's reading (None: no person / none yet)
    bad_for_s: float             # seconds of the current slouch (monotonic), 0 unless bad
    camera: str                  # starting | ok | disconnected | released
    view: str                    # front | side
    calibrated: bool
    until: float | None          # wall time a timed pause ends
    ts: float                    # wall time of this message
    seq: int                     # strictly increasing in publish order
    pose_fps: float | None = None   # the pose rate in force
    mode: str | None = None         # steady | active | streaming | idle | paused


def state_payload(v: StateView) -> dict[str, Any]:
    reading = v.reading
    metrics: dict[str, Any] = dict(reading.metrics) if reading else {}
    metrics["reasons"] = list(reading.reasons) if reading else []
    if v.posture in ("good", "bad"):
        confidence = reading.confidence if reading else 0.0
    else:
        confidence = 1.0 if v.posture in ("absent", "paused") else 0.0
    payload: dict[str, Any] = {
        "posture": v.posture,
        "confidence": confidence,
        "since": iso(v.since),
        "bad_for_s": round(v.bad_for_s, 1) if v.posture == "bad" else 0.0,
        "metrics": metrics,
        "camera": v.camera,
        "view": v.view,
        "calibrated": v.calibrated,
        "until": iso(v.until) if v.posture == "paused" else None,
        "pose_fps": v.pose_fps,
        "mode": v.mode,
        "ts": iso(v.ts),
        "seq": v.seq,
    }
    return payload


@dataclass(frozen=True)
class HealthView:
    fps: float
    inference_ms: float
    dropped_frames: int
    frames_processed: int
    frames_encoded: int
    snapshots_encoded: int
    frames_dropped_offline: int
    camera: str
    camera_error: str | None
    source: str | None
    cpu_temp_c: float | None
    rss_mb: float
    uptime_s: float
    version: str
    streaming: bool
    threads: dict[str, bool]
    pipeline_errors: int
    callback_errors: int
    ts: float
    pose_fps: float | None = None
    mode: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def health_payload(v: HealthView) -> dict[str, Any]:
    return {
        "fps": round(v.fps, 2),
        "inference_ms": round(v.inference_ms, 1),
        "pose_fps": v.pose_fps,
        "mode": v.mode,
        "dropped_frames": v.dropped_frames,
        "frames_processed": v.frames_processed,
        "frames_encoded": v.frames_encoded,
        "snapshots_encoded": v.snapshots_encoded,
        "frames_dropped_offline": v.frames_dropped_offline,
        "camera": v.camera,
        "camera_error": v.camera_error,
        "source": v.source,
        "cpu_temp_c": v.cpu_temp_c,
        "rss_mb": v.rss_mb,
        "uptime_s": round(v.uptime_s),
        "version": v.version,
        "streaming": v.streaming,
        "threads": dict(v.threads),
        "pipeline_errors": v.pipeline_errors,
        "callback_errors": v.callback_errors,
        **v.extra,
        "ts": iso(v.ts),
    }
