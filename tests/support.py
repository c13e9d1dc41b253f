"""Test helpers shared by the suites: an MQTT recorder, a mosquitto runner, free ports.

Everything here talks to loopback only. Waits are on events with timeouts, never sleeps
used as assertions.
"""

from __future__ import annotations

import json
import os
import sys
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parent.parent
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def wait_until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll pred until it holds (for state with no event to wait on); TimeoutError naming what."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Msg:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    at: float = field(default_factory=time.monotonic)
    at_wall: float = field(default_factory=time.time)

    def json(self) -> Any:
        return json.loads(self.payload)


class Recorder:
    """An MQTT client that records every message it receives and lets tests wait on them."""

    # tests/conftest.py sets this to schema_check.observe: every payload received is checked
    # against docs/schema (bench scripts leave it unset).
    observer: Callable[[str, bytes], None] | None = None

    def __init__(self, port: int, topics: str | list[str] = "#", host: str = "127.0.0.1",
                 username: str | None = None, password: str | None = None,
                 protocol: int = mqtt.MQTTv311, client_id: str = "") -> None:
        self.messages: list[Msg] = []
        self._cond = threading.Condition()
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        if username:
            self.client.username_pw_set(username, password)
        self._topics = [topics] if isinstance(topics, str) else topics
        self._unacked_subs: set[int] = set()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect_async(host, port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(10):
            self.close()
            raise TimeoutError(f"recorder could not connect to {host}:{port}")

    def _on_connect(self, client, userdata, flags, rc, props=None) -> None:
        if rc.is_failure:
            return
        # Ready once the broker has acknowledged every subscription: a message another client
        # publishes right after the constructor returns must not race our SUBSCRIBE.
        self._unacked_subs = {client.subscribe(t, qos=1)[1] for t in self._topics}
        if not self._unacked_subs:
            self.connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, props=None) -> None:
        self._unacked_subs.discard(mid)
        if not self._unacked_subs:
            self.connected.set()

    def _on_message(self, client, userdata, m) -> None:
        if Recorder.observer is not None:
            Recorder.observer(m.topic, bytes(m.payload))
        with self._cond:
            self.messages.append(Msg(m.topic, bytes(m.payload), bool(m.retain), m.qos))
            self._cond.notify_all()

    def wait_for(self, pred: Callable[[Msg], bool], timeout: float = 10.0, start: int = 0) -> Msg:
        """The first message (from index `start`) matching pred; TimeoutError if none arrives."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages[start:]:
                    if pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(m.topic, m.payload[:80]) for m in self.messages[-10:]]
                    raise TimeoutError(f"no matching message in {timeout}s; last seen: {seen}")
                self._cond.wait(left)

    def wait_topic(self, topic: str, pred: Callable[[Msg], bool] = lambda m: True,
                   timeout: float = 10.0, start: int = 0) -> Msg:
        return self.wait_for(lambda m: m.topic == topic and pred(m), timeout, start)

    def on(self, topic: str) -> list[Msg]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def mark(self) -> int:
        with self._cond:
            return len(self.messages)

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False,
                properties: Any = None) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Mosquitto:
    """Debian's mosquitto on loopback with a given config body; the port is picked free."""

    def __init__(self, conf: str = "", port: int | None = None, workdir: Path | None = None) -> None:
        self.port = port or free_port()
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="dp-mosq-"))
        self.conf_body = conf
        self.proc: subprocess.Popen[bytes] | None = None

    def config_text(self) -> str:
        if "listener" in self.conf_body:
            return self.conf_body
        return f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{self.conf_body}\n"

    def start(self, timeout: float = 10.0) -> "Mosquitto":
        conf = self.dir / "mosquitto.conf"
        conf.write_text(self.config_text())
        self.log = open(self.dir / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.dir / 'mosquitto.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._close_log()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._close_log()

    def _close_log(self) -> None:
        self.proc = None
        log = getattr(self, "log", None)
        if log is not None and not log.closed:
            log.close()

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def agent_env(**extra: str) -> dict[str, str]:
    """The environment for an agent subprocess: no DESKPULSE_* leaking in from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESKPULSE_")}
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class TcpProxy:
    """A loopback TCP proxy whose link can be cut and restored: a broker outage for one
    client while everyone else stays connected."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.port = free_port()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> "TcpProxy":
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(16)
        self._server = srv
        self._thread = threading.Thread(target=self._accept, args=(srv,), name="test-proxy", daemon=True)
        self._thread.start()
        return self

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        if self._server is not None:
            try:
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
            except OSError:
                pass
            self._server.close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            for s in self._conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self._conns.clear()

    def restore(self) -> None:
        self.start()

    def stop(self) -> None:
        self.cut()


class AgentProcess:
    """`python -m deskpulse run ...` as a subprocess, with its stderr captured to a file."""

    def __init__(self, broker_port: int, source: str, device: str, data_dir: Path,
                 extra_args: tuple[str, ...] = (), config: str = "", env: dict[str, str] | None = None) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        cfg = data_dir / "deskpulse.toml"
        cfg.write_text(f'data_dir = "{data_dir}"\n{config}')
        self.log_path = data_dir / "agent.log"
        self.args = [sys.executable, "-m", "deskpulse", "run", "--config", str(cfg), "--source", source,
                     "--broker", f"mqtt://127.0.0.1:{broker_port}", "--device-id", device, *extra_args]
        self.env = agent_env(**(env or {}))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "AgentProcess":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=str(ROOT))
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None:
            self._log.close()

    def __enter__(self) -> "AgentProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
