"""Fixtures for the Home Assistant core tests (tests/ha/, run in tests/ha/.venv by ./test.sh).

`agent` is the real DeskPulse agent on the embedded broker, driven through
tests/ha/agent_harness.py in DeskPulse's own venv (.venv): this venv has Home Assistant,
that one has DeskPulse and MediaPipe, and the two talk over the harness's stdin/stdout. The
main suite's pytest sees this directory too and skips it: Home Assistant is not there.
"""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

try:
    import homeassistant  # noqa: F401
except ImportError:  # DeskPulse's own venv: these tests belong to tests/ha/.venv's run
    collect_ignore_glob = ["*"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
HARNESS = HERE / "agent_harness.py"
# DeskPulse's venv, which runs the real agent (override: DESKPULSE_TEST_PYTHON).
MAIN_PYTHON = Path(os.environ.get("DESKPULSE_TEST_PYTHON", ROOT / ".venv" / "bin" / "python"))
READY_TIMEOUT_S = 240.0
REQUEST_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Message:
    """One message as the broker delivered it from the real agent."""

    topic: str
    payload: bytes
    qos: int
    retain: bool

    @staticmethod
    def decode(d: dict[str, Any]) -> "Message":
        return Message(d["topic"], base64.b64decode(d["payload_b64"]), d["qos"], d["retain"])

    def json(self) -> Any:
        return json.loads(self.payload)


class Harness:
    """The running agent_harness.py: the agent's recorded messages, and requests to it."""

    def __init__(self, birth: dict[str, Any]) -> None:
        if not MAIN_PYTHON.is_file():
            pytest.fail(f"{MAIN_PYTHON} is missing: run ./test.sh (it creates .venv) first", pytrace=False)
        self.proc = subprocess.Popen([str(MAIN_PYTHON), str(HARNESS), json.dumps(birth)], cwd=str(ROOT),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        first = self._read(READY_TIMEOUT_S)
        if not first.get("ready"):
            self.close()
            pytest.fail(f"the agent harness failed: {first.get('error')}\n{first.get('log', '')}", pytrace=False)
        self.device: str = first["device"]
        self.messages = [Message.decode(m) for m in first["messages"]]

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the agent harness said nothing in {timeout:.0f} s")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                line = self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"the agent harness exited ({self.proc.wait(10)})")
                return json.loads(line)

    def request(self, **req: Any) -> tuple[bool, list[Message], str]:
        """Send one request; (ok, the agent's messages since, the agent's log tail)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        answer = self._read(REQUEST_TIMEOUT_S)
        return answer["ok"], [Message.decode(m) for m in answer["messages"]], answer["log"]

    def publish(self, topic: str, payload: str | bytes, qos: int, retain: bool,
                until: dict[str, Any]) -> tuple[bool, list[Message], str]:
        """Publish exactly this message to the agent's broker, then wait for `until`."""
        raw = payload.encode() if isinstance(payload, str) else payload
        return self.request(op="publish", topic=topic, payload_b64=base64.b64encode(raw).decode(),
                            qos=qos, retain=retain, until=until)

    def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(scope="session")
def agent() -> Iterator[Harness]:
    """The real agent, started once; Home Assistant's birth message comes from HA itself."""
    from homeassistant.components.mqtt.const import DEFAULT_BIRTH

    harness = Harness(dict(DEFAULT_BIRTH))
    try:
        yield harness
    finally:
        harness.close()
    assert harness.proc.returncode == 0, f"the agent harness exited with {harness.proc.returncode}"

