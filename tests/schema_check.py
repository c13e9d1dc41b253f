"""Every payload an agent publishes in a test is checked against the committed docs/schema files.

support.Recorder hands each message it receives to `observe`; the autouse fixture in
conftest.py clears `PROBLEMS` before a test and fails the test if anything was recorded.
Checked: deskpulse-style `<prefix>/<device>/{availability,state,stats,health,alert}` and
`.../response/<verb>`. Requests are the sender's (tests send garbage on purpose), frames are
JPEG, and an empty payload clears a retained topic. Validation uses the JSON Schema files,
not the pydantic models, so what is checked is exactly what the contract publishes.
`js_reasons` reads the page's reason hints (render.js) for the tests that compare them with
the classifier's codes.
"""

from __future__ import annotations

import json
import re
import threading
from functools import lru_cache
from typing import Any

import jsonschema

from .support import ROOT

SCHEMA_DIR = ROOT / "docs" / "schema"
RENDER_JS = ROOT / "web" / "static" / "render.js"
TOPIC_RE = re.compile(r"^[^/$]+/[^/]+/(availability|state|stats|health|alert|response/(.+))$")


@lru_cache(maxsize=None)
def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def schema_name(topic: str) -> str | None:
    """The docs/schema file (without .json) for a topic, or None when the topic is not checked."""
    match = TOPIC_RE.match(topic)
    if match is None:
        return None
    verb = match.group(2)
    if verb is None:
        return match.group(1)
    name = f"response-{verb.replace('/', '-')}"
    return name if (SCHEMA_DIR / f"{name}.json").is_file() else "response"


def check(topic: str, payload: bytes) -> str | None:
    """None if the payload is fine (or not checked); else one line naming topic and problem."""
    name = schema_name(topic)
    if name is None or payload == b"":
        return None
    checker = validator(name)
    try:
        text = payload.decode("utf-8")
        instance: Any = text if checker.schema.get("contentMediaType") == "text/plain" else json.loads(text)
    except ValueError as exc:
        return f"{topic}: not JSON ({exc}): {payload[:80]!r}"
    found = jsonschema.exceptions.best_match(checker.iter_errors(instance))
    if found is None:
        return None
    where = "/".join(str(p) for p in found.absolute_path) or "(top)"
    return f"{topic}: {found.message} at {where} (docs/schema/{name}.json): {payload[:160]!r}"


class Problems:
    """Invalid payloads seen since the last `clear`, each distinct line once (many recorders)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, None] = {}

    def add(self, line: str) -> None:
        with self._lock:
            self._seen.setdefault(line, None)

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()

    def take(self) -> list[str]:
        with self._lock:
            lines = list(self._seen)
            self._seen.clear()
            return lines


PROBLEMS = Problems()


def observe(topic: str, payload: bytes) -> None:
    """Called for every message a test recorder receives (from paho's thread: never raises)."""
    try:
        problem = check(topic, payload)
    except Exception as exc:  # a broken check must show up as a failure, not kill paho's thread
        problem = f"{topic}: the schema check itself failed: {exc!r}"
    if problem is not None:
        PROBLEMS.add(problem)


def js_reasons(text: str | None = None) -> dict[str, str]:
    """The page's reason hints: the `export const REASONS = {...}` literal of render.js, read
    strictly (one `code: "hint",` per line), so a test can compare it with posture.REASONS."""
    if text is None:
        text = RENDER_JS.read_text(encoding="utf-8")
    match = re.search(r"^export const REASONS = \{\n(.*?)^\};", text, re.S | re.M)
    assert match, "render.js has no `export const REASONS = {` ... `};` block"
    table: dict[str, str] = {}
    for line in match.group(1).splitlines():
        if not line.strip() or line.strip().startswith("//"):
            continue
        entry = re.fullmatch(r'\s*([a-z_]+): "([^"\\]+)",', line)
        assert entry, f"render.js REASONS: cannot read the line {line!r} (expected `code: \"hint\",`)"
        assert entry.group(1) not in table, f"render.js REASONS: {entry.group(1)} twice"
        table[entry.group(1)] = entry.group(2)
    return table
