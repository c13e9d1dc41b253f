"""The request/response router for .../request/<verb> -> .../response/<verb>.

Zigbee2MQTT's pattern: the answer is {"status": "ok"|"error", "data": ..., "error": ...,
"transaction": <echoed>}. This module parses and validates payloads, dispatches to the
registered handlers and shapes the answers; it knows no MQTT and no agent internals.
Bad input of any kind becomes an `error` answer naming the problem; nothing raises out.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import RequestError

log = logging.getLogger(__name__)

MAX_PAYLOAD = 64 * 1024
MAX_DEPTH = 16


class Pending:
    """Returned by a handler whose final answer comes later (e.g. calibrate)."""


PENDING = Pending()


class Silent:
    """Returned by a handler that carried out a request but sends no answer (quiet renewals)."""


SILENT = Silent()


@dataclass
class Reply:
    """What a handler may use to send progress (and, for PENDING handlers, the final answer)."""

    verb: str
    transaction: Any
    send: Callable[[dict[str, Any]], None]

    def progress(self, data: Any) -> None:
        self.send(ok(data, self.transaction, final=False))

    def done(self, data: Any) -> None:
        self.send(ok(data, self.transaction))

    def fail(self, message: str) -> None:
        self.send(error(message, self.transaction))


Handler = Callable[[Any, Reply], Any]


@dataclass
class Route:
    handler: Handler
    raw: bool = False  # raw handlers get the payload text (e.g. Home Assistant's "ON"/"OFF")
    description: str = ""
    quiet: bool = False  # routine renewals (stream) succeed at debug level: every page sends them


def ok(data: Any, transaction: Any, final: bool = True) -> dict[str, Any]:
    answer: dict[str, Any] = {"status": "ok", "data": data}
    if not final:
        answer["final"] = False
    if transaction is not None:
        answer["transaction"] = transaction
    return answer


def error(message: str, transaction: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {"status": "error", "data": None, "error": message}
    if transaction is not None:
        answer["transaction"] = transaction
    return answer


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def _no_constant(name: str) -> Any:
    # Python accepts NaN/Infinity, JSON does not, and the answer (which may echo them) couldn't carry them.
    raise RequestError(f"payload is not valid JSON: {name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise RequestError(f"payload has a number out of range: {text[:40]}")
    return value


def parse_payload(raw: bytes) -> dict[str, Any]:
    """A request body: empty means {}; otherwise a JSON object. Raises RequestError."""
    if len(raw) > MAX_PAYLOAD:
        raise RequestError(f"payload too large ({len(raw)} bytes, limit {MAX_PAYLOAD})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError("payload is not valid UTF-8") from None
    if not text.strip():
        return {}
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise RequestError("payload JSON is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise RequestError(f"payload is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except ValueError:  # Python's int conversion limit (4300 digits): not a JSONDecodeError
        raise RequestError("payload JSON has a number too long to read") from None
    if not isinstance(value, dict):
        raise RequestError(f"payload must be a JSON object, got {type(value).__name__}")
    if _depth(value) > MAX_DEPTH:
        raise RequestError("payload JSON is nested too deeply")
    return value


def best_effort_transaction(raw: bytes) -> Any:
    """The top-level "transaction" of a payload that was refused, if it has a sane one."""
    if len(raw) > MAX_PAYLOAD:
        return None
    try:
        value = json.loads(raw.decode("utf-8"))
        if not isinstance(value, dict) or _depth(value.get("transaction")) > MAX_DEPTH:
            return None
        json.dumps(value.get("transaction"), allow_nan=False)  # the answer must be able to carry it
    except (ValueError, RecursionError):
        return None
    return value.get("transaction")


@dataclass
class Router:
    routes: dict[str, Route] = field(default_factory=dict)

    def add(self, verb: str, handler: Handler, *, raw: bool = False, description: str = "",
            quiet: bool = False) -> None:
        self.routes[verb] = Route(handler, raw, description, quiet)

    def handle(self, verb: str, raw: bytes, send: Callable[[dict[str, Any]], None], origin: str = "?") -> None:
        """Dispatch one request and send its answer(s) through `send`."""
        route = self.routes.get(verb)
        transaction: Any = None
        try:
            if route is None:
                raise RequestError(f"unknown verb {verb!r}; known: {', '.join(sorted(self.routes))}")
            if route.raw:
                body: Any = raw.decode("utf-8", errors="replace").strip()
            else:
                body = parse_payload(raw)
                transaction = body.pop("transaction", None)
            reply = Reply(verb, transaction, send)
            data = route.handler(body, reply)
        except RequestError as exc:
            if transaction is None and (route is None or not route.raw):
                # Still echo it (unknown verb, nested too deeply), so the caller can tell which
                # request was refused.
                transaction = best_effort_transaction(raw)
            log.info("request %s from %s -> error: %s", verb, origin, exc)
            send(error(str(exc), transaction))
            return
        except Exception as exc:  # a bug in a handler answers with an error, never kills the agent
            log.exception("request %s from %s -> internal error", verb, origin)
            send(error(f"internal error: {exc.__class__.__name__}", transaction))
            return
        if data is SILENT:
            return
        if data is PENDING:
            log.info("request %s from %s -> started", verb, origin)
            return
        assert route is not None
        log.log(logging.DEBUG if route.quiet else logging.INFO, "request %s from %s -> ok", verb, origin)
        send(ok(data, transaction))


def get_number(body: dict[str, Any], key: str, *, default: float | None = None,
               low: float | None = None, high: float | None = None) -> float | None:
    """A numeric field with a clear error for wrong types and out-of-range values."""
    if key not in body or body[key] is None:
        return default
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{key} must be a number, got {type(value).__name__}")
    if value != value or value in (float("inf"), float("-inf")):
        raise RequestError(f"{key} must be a finite number")
    if (low is not None and value < low) or (high is not None and value > high):
        raise RequestError(f"{key} must be between {low:g} and {high:g}, got {value:g}")
    return float(value)


def reject_unknown(body: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise RequestError(f"unknown field(s): {', '.join(map(shown, extra))}; "
                           f"allowed: {', '.join(sorted(allowed)) or 'none'}")


def shown(name: str, limit: int = 40) -> str:
    """A user-supplied name for an error line: quoted if odd (newlines must not forge log lines)."""
    if len(name) > limit:
        return repr(name[:limit]) + "..."
    return name if name.isprintable() and name.strip() == name and name else repr(name)
