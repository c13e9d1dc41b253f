"""The payload schema of topic contract v1: one pydantic model per payload, in one place.

Owns the shape of everything the agent publishes (availability, state, stats, health,
alert, every response) and of every request body it accepts, the JSON Schema files
generated from them into docs/schema/ (`python -m deskpulse.schema --write`), and
`parse_request`, which validates a request body with the same models and turns the first
problem into one RequestError line naming the field.

Enumerations come from the code that produces the values, never copied: postures from
payloads.POSTURES, reason codes from posture.REASONS, views from PostureConfig, runtime
settings (and their ranges) from settings.RUNTIME_KEYS and the typed config, baseline
fields from posture.Baseline. It builds no payload, knows no MQTT and no agent.
"""

import argparse
import json
import math
import sys
import typing
from datetime import date
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, RootModel, TypeAdapter,
                      ValidationError, WithJsonSchema, create_model)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from .config import Config, PostureConfig, Source
from .errors import RequestError
from .payloads import POSTURES
from .posture import REASONS, Baseline
from .requests import reject_unknown, shown
from .settings import RUNTIME_KEYS
from .tracker import _CODE as TIMELINE_CODES

__all__ = [
    "Alert", "CalibrationDone", "CalibrationProgress", "DaySummary", "ErrorAnswer", "Health", "PAYLOADS",
    "REGENERATE", "REQUESTS", "RESPONSES", "SCHEMA_DIR", "State", "Stats", "json_schemas", "parse_request",
    "schema_file", "settings_changes", "write_schemas",
]

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "docs" / "schema"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
REGENERATE = "python -m deskpulse.schema --write"

# ---------- value types ----------------------------------------------------------------------

Posture = Literal[POSTURES]  # type: ignore[valid-type]
Reason = Literal[REASONS]  # type: ignore[valid-type]
View = PostureConfig.model_fields["view"].annotation
Camera = Literal["starting", "ok", "disconnected", "released"]
# The pose rate in force (issue 14): steady at the low rate, active at camera.fps, streaming
# while a lease is held, idle with nobody present, paused.
Mode = Literal["steady", "active", "streaming", "idle", "paused"]
AlertType = Literal["bad_posture", "recovered", "break_reminder"]
RuntimeKey = Literal[tuple(RUNTIME_KEYS)]  # type: ignore[valid-type]

_ISO_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
IsoTime = Annotated[str, Field(pattern=_ISO_TIME, json_schema_extra={"format": "date-time"})]
IsoDate = Annotated[str, Field(pattern=_ISO_DATE, json_schema_extra={"format": "date"})]
NonNegative = Annotated[float, Field(ge=0)]
Seconds = NonNegative
Count = Annotated[int, Field(ge=0)]
Percent = Annotated[float, Field(ge=0, le=100)]


class _Payload(BaseModel):
    """What the agent publishes: strict types, no field that is not declared here."""

    model_config = ConfigDict(extra="forbid", strict=True)


# ---------- state ----------------------------------------------------------------------------

_Measured = SkipJsonSchema[None] | float  # present only when measured, never null


class Metrics(_Payload):
    """The numbers the decision used (front or side view, none while nobody is judged)."""

    head_height: _Measured = Field(None, description="Front: ears above the shoulder line / shoulder width.")
    nose_height: _Measured = Field(None, description="Front: nose above the shoulder line / shoulder width.")
    shoulder_tilt_deg: _Measured = Field(None, description="Front: tilt of the shoulder line, degrees.")
    shoulder_width: _Measured = Field(
        None, description="Front: shoulder width / frame width (closeness to the screen).")
    torso_height: _Measured = Field(
        None, description="Front: hips below the shoulder line / shoulder width (only with both hips in the frame).")
    head_drop: _Measured = Field(
        None, description="Front: how far the head sank from the baseline (positive: lower).")
    lean_in: _Measured = Field(None, description="Front: shoulder_width / baseline (above 1: leaning in).")
    head_pitch_deg: _Measured = Field(
        None, description="Side: the ear-to-nose line below horizontal, degrees (positive: head tipped down).")
    neck_deg: _Measured = Field(None, description="Side: ear-shoulder inclination from vertical, degrees.")
    torso_deg: _Measured = Field(
        None, description="Side: shoulder-hip inclination from vertical, degrees (when the hip is visible).")
    reasons: list[Reason] = Field(
        description="Why the latest frame was judged bad (or unknown: low_visibility); empty when good.")


class State(_Payload):
    """deskpulse/<device>/state (retained, QoS 1): the debounced posture, on every change and refreshed."""

    posture: Posture = Field(
        description="good | bad | absent (nobody there) | unknown (not classifiable, or no camera) | paused.")
    confidence: Annotated[float, Field(ge=0, le=1)] = Field(
        description="The classifier's confidence for good/bad; 1 for absent and paused; 0 for unknown.")
    since: IsoTime = Field(description="When this posture began (UTC).")
    bad_for_s: Seconds = Field(description="The current slouch in seconds (monotonic time); 0 unless bad.")
    metrics: Metrics
    camera: Camera = Field(description="starting | ok | disconnected | released (while paused).")
    view: View = Field(  # type: ignore[valid-type]
        description="Camera placement the classifier uses: front | side.")
    calibrated: bool = Field(description="Whether a personal baseline is in use.")
    until: Optional[IsoTime] = Field(description="End of a timed pause (UTC); null otherwise.")
    pose_fps: Optional[NonNegative] = Field(
        description="The pose rate in force, frames per second; null before it is known.")
    mode: Optional[Mode] = Field(
        description="Why that rate: steady | active | streaming | idle | paused; null before it is known.")
    ts: IsoTime = Field(description="When this message was built (UTC).")
    seq: Count = Field(description="Strictly increasing in publish order within one agent run.")


# ---------- stats and history ----------------------------------------------------------------

class DaySummary(_Payload):
    """One local day's totals (tracker.DayTotals.summary): a `history` day, and the head of stats."""

    date: IsoDate = Field(description="The local date (history.timezone).")
    good_s: Seconds
    bad_s: Seconds
    absent_s: Seconds
    unknown_s: Seconds
    paused_s: Seconds
    good_pct: Optional[Percent] = Field(
        description="good / (good + bad) time in percent; null before any monitored time.")
    alerts: Count = Field(description="bad_posture alerts raised that day.")
    break_reminders: Count
    longest_good_streak_s: Seconds


class Timeline(_Payload):
    """Today in BUCKET_S buckets from local midnight (tracker.DayTotals.timeline)."""

    bucket_s: Annotated[int, Field(gt=0)]
    start: IsoTime = Field(description="Local midnight, with its UTC offset.")
    good: list[Count] = Field(description="Whole good seconds per bucket.")
    bad: list[Count] = Field(description="Whole bad seconds per bucket.")
    postures: Annotated[str, Field(pattern=f"^[{TIMELINE_CODES}-]*$")] = Field(
        description="The dominant posture per bucket, one letter each (g b a u p, in POSTURES order); - for none.")


class Stats(DaySummary):
    """deskpulse/<device>/stats (retained, QoS 1): today's totals, folded from the history intervals."""

    current_good_streak_s: Seconds
    bad_for_s: Seconds = Field(description="The current slouch, as in state.")
    timeline: Timeline
    ts: IsoTime


# ---------- health and alert -----------------------------------------------------------------

class Health(_Payload):
    """deskpulse/<device>/health (retained, QoS 0): how the agent is doing, every mqtt.health_interval_s."""

    fps: NonNegative = Field(description="Frames processed per second (pose runs).")
    inference_ms: NonNegative = Field(description="Mean pose inference time, milliseconds.")
    pose_fps: Optional[NonNegative] = Field(description="The pose rate in force; null before it is known.")
    mode: Optional[Mode] = Field(
        description="steady | active | streaming | idle | paused; null before it is known.")
    dropped_frames: Count = Field(description="Camera frames replaced before the pipeline took them.")
    frames_processed: Count
    frames_encoded: Count = Field(description="Stream JPEGs encoded (only while someone holds a lease).")
    snapshots_encoded: Count = Field(description="Home Assistant camera JPEGs encoded.")
    frames_dropped_offline: Count = Field(description="Frames not sent because the broker was unreachable.")
    camera: Camera
    camera_error: Optional[str]
    source: Optional[str] = Field(description="What --source resolved to.")
    cpu_temp_c: Optional[float] = Field(description="null where the machine has no thermal zone.")
    rss_mb: NonNegative = Field(description="Resident memory, MiB.")
    uptime_s: Count
    version: str
    streaming: bool
    threads: dict[str, bool] = Field(description="Thread name -> alive.")
    pipeline_errors: Count
    callback_errors: Count = Field(description="Exceptions caught in MQTT callbacks and in the live stream's thread (logged, never fatal).")
    ts: IsoTime


class Alert(_Payload):
    """deskpulse/<device>/alert (not retained, QoS 1): an event from the tracker."""

    type: AlertType = Field(
        description="bad_posture (sustained slouch), recovered (good again after an alert), break_reminder.")
    duration_s: Seconds = Field(
        description="Slouch seconds (bad_posture, recovered) or seconds at the desk (break_reminder).")
    started: IsoTime = Field(description="When the slouch (or the sitting) began.")
    message: Annotated[str, Field(min_length=1)] = Field(description="A sentence for a notification.")
    ts: IsoTime


Availability = Annotated[Literal["online", "offline"], WithJsonSchema({
    "type": "string", "enum": ["online", "offline"], "contentMediaType": "text/plain",
    "description": "deskpulse/<device>/availability (retained, QoS 1), plain text; the last will is offline.",
})]

# ---------- requests -------------------------------------------------------------------------


def _number_problem(low: float, high: float, value: Any) -> Any:
    """Today's request wording: "<field> must be a number / finite / between low and high"."""
    if value is None:
        return None  # null means "not given"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("deskpulse", "must be a number, got {got}", {"got": type(value).__name__})
    if not math.isfinite(value):
        raise PydanticCustomError("deskpulse", "must be a finite number")
    if not low <= value <= high:
        raise PydanticCustomError("deskpulse", f"must be between {low:g} and {high:g}, got {value:g}")
    return float(value)


def _number(low: float, high: float) -> Any:
    """An optional number in [low, high]; null or absent means the default."""
    return Annotated[Optional[Annotated[float, Field(ge=low, le=high)]],
                     BeforeValidator(partial(_number_problem, low, high))]


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise PydanticCustomError("deskpulse", "must be true or false")
    return value


def _date_text(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PydanticCustomError("deskpulse_colon", 'expected a date like "2026-11-21", got {got}',
                                  {"got": type(value).__name__})
    try:
        if len(value) != 10:
            raise ValueError
        date.fromisoformat(value)
    except ValueError:
        text = value if len(value) <= 40 else value[:37] + "..."
        raise PydanticCustomError("deskpulse_colon", 'not a date like "2026-11-21": {text}',
                                  {"text": repr(text)}) from None
    return value


_HistoryDate = Annotated[Optional[IsoDate], BeforeValidator(_date_text)]


class _Request(BaseModel):
    """A JSON request body. Unknown fields are refused; `transaction` is echoed in the answer."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    transaction: Any = Field(
        None, description="Any JSON value; echoed in every answer to this request (the router takes it out).")


class PauseRequest(_Request):
    """request/pause: stop monitoring and release the camera, until resumed or for `minutes`."""

    minutes: _number(0.1, 7 * 24 * 60) = Field(  # type: ignore[valid-type]
        None, description="A snooze: resume by itself after this many minutes. Absent or null: until resumed.")


class ResumeRequest(_Request):
    """request/resume: resume monitoring (harmless when not paused)."""


class MonitoringRequest(RootModel[str]):
    """request/monitoring: Home Assistant's switch, plain text ON (resume) or OFF (pause), any case."""

    root: Annotated[str, WithJsonSchema({
        "type": "string", "pattern": r"^\s*([Oo][Nn]|[Oo][Ff][Ff])\s*$", "contentMediaType": "text/plain",
        "description": "request/monitoring, plain text (not JSON): ON resumes, OFF pauses; case and "
                       "surrounding white space are ignored.",
    })]

    @property
    def on(self) -> bool:
        return self.root == "ON"


class CalibrateRequest(_Request):
    """request/calibrate: record `seconds` of good posture as the personal baseline."""

    seconds: _number(1, 120) = Field(  # type: ignore[valid-type]
        None, description="How long to record; absent or null: posture.calibration_s.")


class StreamRequest(_Request):
    """request/stream: renew a frame lease, or end it with {"enable": false}."""

    lease_s: _number(1, 600) = Field(  # type: ignore[valid-type]
        None, description="Send frames for this long; absent or null: frames.lease_s. Leases only ever extend.")
    enable: Annotated[bool, BeforeValidator(_boolean)] = Field(
        True, description="false ends this viewer's lease (without `viewer`: every lease) at once.")
    viewer: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] | None = Field(
        None, description="The page's own lease id: each page holds and releases its own lease; "
                          "frames flow while any lease is live.")
    quiet: Annotated[bool, BeforeValidator(_boolean)] = Field(
        False, description="true: a routine renewal that gets no answer (every open page sends them).")


class ConfigGetRequest(_Request):
    """request/config/get: the runtime settings and what each one means."""


class HistoryRequest(_Request):
    """request/history: per-day totals for a range of local dates (both ends included)."""

    from_: _HistoryDate = Field(
        None, alias="from", description="First day, YYYY-MM-DD; default: 6 days before `to`.")
    to: _HistoryDate = Field(None, description="Last day, YYYY-MM-DD; default: today.")


def _setting_problem(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("deskpulse", "must be a number, got {got}", {"got": type(value).__name__})
    return value


def _runtime_field(key: str) -> tuple[Any, Any]:
    """The config/set field for one runtime key: the typed config field's own type and range."""
    section, name = key.split(".")
    info = Config.model_fields[section].annotation.model_fields[name]  # type: ignore[union-attr]
    ranged = Annotated[info.annotation, *info.metadata]  # type: ignore[name-defined]
    kind = Annotated[ranged, BeforeValidator(_setting_problem)]
    return kind, Field(None, alias=key, description=RUNTIME_KEYS[key])


class _Settings(_Request):
    # At least one setting: a body with nothing (but a transaction) is refused.
    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": [key]} for key in RUNTIME_KEYS]})


ConfigSetRequest: type[_Request] = create_model(  # type: ignore[call-overload]
    "ConfigSetRequest", __base__=_Settings,
    __doc__="request/config/set: change runtime settings; all or nothing, applied live and persisted.",
    **{key.replace(".", "__"): _runtime_field(key) for key in RUNTIME_KEYS},
)

# verb -> the model of its body
REQUESTS: dict[str, type[BaseModel]] = {
    "pause": PauseRequest,
    "resume": ResumeRequest,
    "monitoring": MonitoringRequest,
    "calibrate": CalibrateRequest,
    "stream": StreamRequest,
    "config/get": ConfigGetRequest,
    "config/set": ConfigSetRequest,
    "history": HistoryRequest,
}


def _message(exc: ValidationError) -> str:
    """The first problem as today's handlers word it: "minutes must be a number, got str" for
    our own checks (error type "deskpulse"), "<key>: <problem>" for the rest (dates, config ranges)."""
    first = exc.errors(include_url=False)[0]
    key = ".".join(str(part) for part in first["loc"]) or "payload"
    if first["type"] == "deskpulse":
        return f"{key} {first['msg']}"
    return f"{key}: {first['msg']}"


def parse_request(verb: str, body: Any) -> Any:
    """The validated request model for `verb`, or RequestError with one line naming the problem.

    `body` is what requests.Router hands a handler: the parsed JSON object (its transaction
    already taken out), or the text for raw verbs (monitoring). Checks that depend on the
    agent (frames disabled, a calibration already running, dates relative to today) stay in
    the handlers.
    """
    model = REQUESTS.get(verb)
    if model is None:
        raise RequestError(f"unknown verb {verb!r}; known: {', '.join(sorted(REQUESTS))}")
    if model is MonitoringRequest:
        command = body.strip().upper() if isinstance(body, str) and body.isascii() else None
        if command not in ("ON", "OFF"):
            raise RequestError(f"monitoring expects ON or OFF, got {str(body)[:40]!r}")
        return MonitoringRequest(command)
    if not isinstance(body, dict):
        raise RequestError(f"payload must be a JSON object, got {type(body).__name__}")
    fields = {k: v for k, v in body.items() if k != "transaction"}
    allowed = {f.alias or name for name, f in model.model_fields.items() if name != "transaction"}
    if model is ConfigSetRequest:
        if not fields:
            raise RequestError("expected a JSON object of settings, e.g. {\"alerts.bad_posture_minutes\": 15}")
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise RequestError(f"not a runtime setting: {', '.join(map(shown, unknown))}; "
                               f"settable: {', '.join(RUNTIME_KEYS)}")
    else:
        reject_unknown(fields, allowed)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise RequestError(_message(exc)) from None


def settings_changes(request: BaseModel) -> dict[str, float]:
    """A parsed config/set request as {runtime key: value}, only the keys it set."""
    return {k: v for k, v in request.model_dump(by_alias=True, exclude_unset=True).items() if k != "transaction"}


# ---------- responses ------------------------------------------------------------------------

class _Data(_Payload):
    pass


class PauseData(_Data):
    """pause (and monitoring OFF)."""

    paused: Literal[True]
    until: Optional[IsoTime] = Field(description="When a snooze ends (UTC); null: until resumed.")


class ResumeData(_Data):
    """resume (and monitoring ON)."""

    paused: Literal[False]


class CalibrationProgress(_Data):
    """A progress answer ("final": false) while a calibration records."""

    stage: Literal["starting", "collecting"]
    percent: Annotated[int, Field(ge=0, le=100)]
    seconds: SkipJsonSchema[None] | Annotated[float, Field(gt=0)] = Field(
        None, description="On the first answer: how long it records.")


_BaselineModel = create_model(  # posture.Baseline.to_json(), field for field
    "Baseline", __base__=_Data, __doc__="The personal baseline (posture.Baseline.to_json()).",
    **{name: (hint, ...) for name, hint in typing.get_type_hints(Baseline).items()},
)


class CalibrationDone(_Data):
    """The final answer of a calibration that succeeded."""

    stage: Literal["done"]
    percent: Literal[100]
    baseline: _BaselineModel  # type: ignore[valid-type]


class StreamData(_Data):
    """stream: whether frames flow, and the lease now held."""

    streaming: bool
    lease_s: Seconds = Field(description="The lease asked for; 0 after {\"enable\": false}.")
    fps: SkipJsonSchema[None] | Annotated[float, Field(gt=0)] = Field(
        None, description="Frames per second while the lease lasts (absent after {\"enable\": false}).")


class ConfigGetData(_Data):
    """config/get: every runtime setting's value, meaning, and the layer its value came from."""

    settings: dict[RuntimeKey, float]
    descriptions: dict[RuntimeKey, str]
    sources: dict[RuntimeKey, Source] = Field(  # type: ignore[valid-type]
        description="Where each value came from; precedence default < file < settings (config/set) < env < flag.")


class ConfigSetData(_Data):
    """config/set: the runtime settings after the change."""

    settings: dict[RuntimeKey, float]


class HistoryData(_Data):
    """history: one entry per day of the range, oldest first."""

    from_: IsoDate = Field(alias="from")
    to: IsoDate
    days: list[DaySummary]


RESPONSES: dict[str, Any] = {  # verb -> the data of its ok answers
    "pause": PauseData,
    "resume": ResumeData,
    "monitoring": Union[PauseData, ResumeData],
    "calibrate": Union[CalibrationProgress, CalibrationDone],
    "stream": StreamData,
    "config/get": ConfigGetData,
    "config/set": ConfigSetData,
    "history": HistoryData,
}


class ErrorAnswer(_Payload):
    """An error answer: the request changed nothing (or a calibration failed)."""

    status: Literal["error"]
    data: None
    error: Annotated[str, Field(min_length=1)] = Field(description="One line naming the problem.")
    transaction: Any = Field(None, description="The request's transaction, when it had one.")


class _OkAnswer(_Payload):
    status: Literal["ok"]
    data: Any
    transaction: Any = Field(None, description="The request's transaction, when it had one.")
    final: SkipJsonSchema[None] | Literal[False] = Field(
        None, description="false on progress answers (calibrate); absent on the final answer.")


def _answer(verb: str | None, data: Any) -> Any:
    name = "".join(part.capitalize() for part in (verb or "any").replace("/", "_").split("_"))
    ok = create_model(f"{name}Ok", __base__=_OkAnswer, __doc__="An ok answer.", data=(data, ...))
    doc = (f"deskpulse/<device>/response/{verb} (not retained, QoS 1)" if verb
           else "deskpulse/<device>/response/<verb> (not retained, QoS 1): any verb, known or not")
    return Annotated[Union[ok, ErrorAnswer], Field(discriminator="status", description=doc)]


# ---------- the files in docs/schema -----------------------------------------------------------

def schema_file(kind: str, verb: str | None = None) -> str:
    """The docs/schema file name (without .json) of a payload: "state", "request-config-get"…"""
    return kind if verb is None else f"{kind}-{verb.replace('/', '-')}"


PAYLOADS: dict[str, Any] = {
    "availability": Availability,
    "state": State,
    "stats": Stats,
    "health": Health,
    "alert": Alert,
    **{schema_file("request", verb): model for verb, model in REQUESTS.items()},
    "response": _answer(None, Any),
    **{schema_file("response", verb): _answer(verb, data) for verb, data in RESPONSES.items()},
}


def _tidy(node: Any) -> Any:
    """Drop pydantic's generated titles and defaults (the descriptions say it), keep the rest."""
    if isinstance(node, list):
        return [_tidy(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "default"):
            continue
        if key in ("properties", "$defs"):
            out[key] = {name: _tidy(sub) for name, sub in value.items()}
        elif key in ("enum", "const", "required", "examples"):
            out[key] = value
        else:
            out[key] = _tidy(value)
    return out


def json_schemas() -> dict[str, dict[str, Any]]:
    """Every payload's JSON Schema, by file name (without .json)."""
    out: dict[str, dict[str, Any]] = {}
    for name, kind in PAYLOADS.items():
        schema = _tidy(TypeAdapter(kind).json_schema(by_alias=True))
        out[name] = {"$schema": DRAFT, "title": name, **schema}
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write_schemas(directory: Path = SCHEMA_DIR) -> list[str]:
    """Write docs/schema/*.json and remove files no payload has any more; returns what changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    wanted = {f"{name}.json": render(schema) for name, schema in json_schemas().items()}
    for path in sorted(directory.glob("*.json")):
        if path.name not in wanted:
            path.unlink()
            changed.append(f"removed {path.name}")
    for filename, text in wanted.items():
        path = directory / filename
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(f"wrote {filename}")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deskpulse.schema",
                                     description="Generate docs/schema/*.json from the payload models.")
    parser.add_argument("--write", action="store_true", help="write the files (default: print the names)")
    parser.add_argument("--dir", type=Path, default=SCHEMA_DIR, help=f"target directory (default {SCHEMA_DIR})")
    args = parser.parse_args(argv)
    if not args.write:
        sys.stdout.write("".join(f"{name}.json\n" for name in json_schemas()))
        return 0
    changed = write_schemas(args.dir)
    sys.stdout.write("".join(f"{line}\n" for line in changed) or "docs/schema is up to date\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
