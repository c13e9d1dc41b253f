"""Shared parts of the frame-path benchmarks (frame_latency.py, fanout.py) and the relay tests.

Owns: a stock Debian mosquitto on loopback (optionally with accounts and an ACL like production),
the synthetic publisher and the relay as subprocesses (so each one's CPU can be measured on its
own), node subscriber processes (bench/node/frame_sub.mjs, mqtt.js), a TCP reference subscriber
and the start/end markers that bound a counting window. Loopback only; every wait is bounded.

Run as a script it is one of those subprocesses:
  benchkit.py publish --port P [--fps 10 --frame-bytes 38000 --state-hz 2 ...]
  benchkit.py relay --target-port P [--listen-port 0]
Both print "READY ..." on stdout once working and run until SIGTERM or stdin closes.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shlex
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from needs import need

need(modules=("paho", "psutil"))

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
import psutil  # noqa: E402

from deskpulse.topics import Topics  # noqa: E402
from tests.support import Mosquitto, free_port  # noqa: E402

PYTHON = sys.executable
NODE_SUB = ROOT / "bench" / "node" / "frame_sub.mjs"
WEB_NODE_MODULES = ROOT / "web" / "node_modules" / "mqtt"
MAGIC = b"DPF1"
HEADER = struct.Struct(">4sdII")  # magic, send time (ms since epoch), seq, total length
DEVICE = "bench"
AGENT_USER, AGENT_PASS = "agent", "agent-bench-pw"
VIEWER_USER, VIEWER_PASS = "viewer", "viewer-bench-pw"


def topics(prefix: str = "deskpulse", device: str = DEVICE) -> Topics:
    return Topics(prefix, device)


def control_topic(t: Topics) -> str:
    """Bench-only markers; under the device so a production-like viewer ACL can read them."""
    return f"{t.base}/bench/control"


def now_ms() -> float:
    return time.time_ns() / 1e6


def stamped_frame(seq: int, body: bytes) -> bytes:
    total = HEADER.size + len(body)
    return HEADER.pack(MAGIC, now_ms(), seq, total) + body


def frame_sent_ms(payload: bytes) -> float | None:
    if len(payload) < HEADER.size or payload[:4] != MAGIC:
        return None
    return HEADER.unpack_from(payload)[1]


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    i = min(len(s) - 1, max(0, int(-(-p * len(s) // 100)) - 1))
    return s[i]


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.1f}" if v < 1000 else f"{v / 1000:.2f} s"


# --- mosquitto --------------------------------------------------------------------------------

def mosquitto_conf(port: int, ws_port: int | None = None, auth: bool = False, workdir: Path | None = None,
                   prefix: str = "deskpulse") -> str:
    """Stock settings, a loopback TCP listener and, optionally, mosquitto's own websockets one."""
    lines = ["per_listener_settings false", f"listener {port} 127.0.0.1"]
    if ws_port is not None:
        lines += [f"listener {ws_port} 127.0.0.1", "protocol websockets"]
    if auth:
        assert workdir is not None
        lines += ["allow_anonymous false", f"password_file {workdir / 'passwd'}", f"acl_file {workdir / 'acl'}"]
    else:
        lines += ["allow_anonymous true"]
    return "\n".join(lines) + "\n"


def write_auth_files(workdir: Path, prefix: str = "deskpulse") -> None:
    """Production-like accounts: the agent writes its prefix; the viewer reads it and may only
    write request topics (constraint 3 of ARCHITECTURE.md)."""
    passwd = workdir / "passwd"
    passwd.write_text("")
    for user, pw in ((AGENT_USER, AGENT_PASS), (VIEWER_USER, VIEWER_PASS)):
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, pw], check=True, capture_output=True)
    (workdir / "acl").write_text(
        f"user {AGENT_USER}\ntopic readwrite {prefix}/#\ntopic readwrite homeassistant/#\n\n"
        f"user {VIEWER_USER}\ntopic read {prefix}/#\ntopic write {prefix}/+/request/#\n")
    # mosquitto drops root and runs as user `mosquitto`, which must be able to read these.
    os.chmod(workdir, 0o755)
    for f in (passwd, workdir / "acl"):
        os.chmod(f, 0o644)


def start_mosquitto(ws: bool = False, auth: bool = False) -> Mosquitto:
    m = Mosquitto()
    ws_port = free_port() if ws else None
    if auth:
        write_auth_files(m.dir)
    m.conf_body = mosquitto_conf(m.port, ws_port, auth, m.dir)
    m.ws_port = ws_port  # type: ignore[attr-defined]
    return m.start()


# --- subprocesses -----------------------------------------------------------------------------


def cpu_of(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds of these processes (ones that are gone count 0)."""
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def teardown(harness: "Harness | None", procs: list["Proc"], mosq: Any) -> None:
    """Stop what a benchmark started, newest first, and close mosquitto's log."""
    if harness is not None:
        harness.close()
    for p in reversed(procs):
        p.stop()
    mosq.stop()
    mosq.log.close()

class Proc:
    """A subprocess that prints a READY line; its CPU time is measured with psutil."""

    def __init__(self, argv: Sequence[str], name: str, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.lines: "queue.Queue[str | None]" = queue.Queue()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=sys.stderr, env={**os.environ, **(env or {})}, text=True)
        self.ps = psutil.Process(self.proc.pid)
        self._reader = threading.Thread(target=self._read, name=f"bench-{name}-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, timeout: float) -> str | None:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{self.name}: no output within {timeout:g}s") from None

    def wait_for(self, pred: Any, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: expected line not seen within {timeout:g}s")
            line = self.next_line(left)
            if line is None:
                raise RuntimeError(f"{self.name} exited (rc={self.proc.wait()}) before the expected line")
            if pred(line):
                return line

    def wait_ready(self, timeout: float = 30.0) -> str:
        return self.wait_for(lambda s: s.startswith("READY") or '"event": "ready"' in s
                             or '"event":"ready"' in s, timeout)

    def cpu_seconds(self) -> float:
        """User+system CPU of the process and its children (a wrapper command may fork the agent)."""
        try:
            procs = [self.ps, *self.ps.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        return cpu_of(procs)

    def cpu_seconds_precise(self) -> float:
        """Scheduler run time (ns resolution, Linux /proc/<pid>/task/*/schedstat) of the process
        and its children: clock-tick CPU times are too coarse for a 5% ratio on a light process."""
        return sched_cpu_seconds(self.ps)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
            except OSError:
                pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def sched_cpu_seconds(ps: psutil.Process) -> float:
    try:
        procs = [ps, *ps.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total_ns = 0
    for p in procs:
        for stat in Path(f"/proc/{p.pid}/task").glob("*/schedstat"):
            try:
                total_ns += int(stat.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass  # the thread exited meanwhile
    return total_ns / 1e9


def publisher_proc(port: int, fps: float, frame_bytes: int, state_hz: float, auth: bool,
                   cmd_template: str | None = None, prefix: str = "deskpulse") -> Proc:
    """The default synthetic publisher, or a user command (e.g. the real agent) with {host},
    {port}, {prefix}, {device}, {username}, {password} filled in. A custom command need not
    print READY; it gets a few seconds to start instead."""
    fields = {"host": "127.0.0.1", "port": port, "prefix": prefix, "device": DEVICE,
              "username": AGENT_USER if auth else "", "password": AGENT_PASS if auth else ""}
    if cmd_template:
        return Proc(shlex.split(cmd_template.format(**fields)), "publisher")
    argv = [PYTHON, str(Path(__file__).resolve()), "publish", "--port", str(port), "--fps", str(fps),
            "--frame-bytes", str(frame_bytes), "--state-hz", str(state_hz), "--prefix", prefix]
    if auth:
        argv += ["--username", AGENT_USER, "--password", AGENT_PASS]
    return Proc(argv, "publisher")


def relay_proc(target_port: int) -> tuple[Proc, int]:
    p = Proc([PYTHON, str(Path(__file__).resolve()), "relay", "--target-port", str(target_port)], "relay")
    line = p.wait_ready(15)
    return p, int(line.split()[1])


def node_subscribers(url: str, clients: int, t: Topics, auth: bool, timeout_s: float,
                     extra: Sequence[str] = ()) -> Proc:
    argv = ["node", str(NODE_SUB), "--url", url, "--clients", str(clients), "--frame-topic", t.frame,
            "--state-topic", t.state, "--control-topic", control_topic(t), "--timeout", str(int(timeout_s)),
            *extra]
    if auth:
        argv += ["--username", VIEWER_USER, "--password", VIEWER_PASS]
    return Proc(argv, f"node-subs-{clients}")


def node_result(p: Proc, timeout: float) -> dict[str, Any]:
    line = p.wait_for(lambda s: '"event":"result"' in s, timeout)
    p.stop()
    return json.loads(line)


# --- TCP side of the harness ------------------------------------------------------------------

@dataclass
class Window:
    frames: int = 0
    state_seqs: list[int] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    ended: threading.Event = field(default_factory=threading.Event)


class Harness:
    """One paho TCP connection: publishes the start/end markers and, as the reference
    subscriber, counts what the broker actually forwarded in the window ("sent")."""

    def __init__(self, port: int, t: Topics, auth: bool) -> None:
        self.t = t
        self.window = Window()
        self._counting = False
        self._connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-harness-{os.getpid()}")
        if auth:
            self.client.username_pw_set(AGENT_USER, AGENT_PASS)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise TimeoutError("harness could not connect to mosquitto")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if rc.is_failure:
            return
        client.subscribe([(self.t.frame, 0), (self.t.state, 1), (control_topic(self.t), 1)])
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, m: mqtt.MQTTMessage) -> None:
        at = now_ms()
        w = self.window
        if m.topic == control_topic(self.t):
            if m.payload == b"start":
                self._counting = True
            elif m.payload == b"end":
                self._counting = False
                w.ended.set()
            return
        if not self._counting:
            return
        if m.topic == self.t.frame:
            w.frames += 1
            sent = frame_sent_ms(m.payload)
            if sent is not None:
                w.latency_ms.append(at - sent)
        elif m.topic == self.t.state and not m.retain:
            try:
                seq = json.loads(m.payload).get("seq")
            except ValueError:
                return
            if seq is not None:
                w.state_seqs.append(seq)

    def mark(self, what: str) -> None:
        if what == "start":
            self.window = Window()
        self.client.publish(control_topic(self.t), what, qos=1).wait_for_publish(10)

    def run_window(self, seconds: float) -> Window:
        """start marker, `seconds` of traffic, end marker; returns the reference counts."""
        self.mark("start")
        time.sleep(seconds)  # the measurement window itself, not a synchronisation
        self.mark("end")
        if not self.window.ended.wait(30):
            raise TimeoutError("reference subscriber did not see the end marker")
        return self.window

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- subprocess entry points ------------------------------------------------------------------

def _stop_event() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def watch_stdin() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, name="bench-stdin-watch", daemon=True).start()
    return stop


def publish_main(a: argparse.Namespace) -> int:
    """A stand-in for the agent: retained availability + state (QoS1), stamped frames (QoS0)."""
    t = topics(a.prefix)
    stop = _stop_event()
    connected = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-publisher-{os.getpid()}")
    if a.username:
        client.username_pw_set(a.username, a.password)
    client.will_set(t.availability, "offline", qos=1, retain=True)
    client.on_connect = lambda c, u, f, rc, p=None: (not rc.is_failure) and connected.set()
    client.connect("127.0.0.1", a.port, keepalive=30)
    client.loop_start()
    if not connected.wait(10):
        print("publisher: cannot connect", file=sys.stderr)
        return 1
    client.publish(t.availability, "online", qos=1, retain=True)
    body = os.urandom(max(0, a.frame_bytes - HEADER.size))  # JPEG-like: incompressible
    print("READY", flush=True)
    period = 1.0 / a.fps
    state_every = max(1, round(a.fps / a.state_hz)) if a.state_hz > 0 else 0
    seq = 0
    next_at = time.monotonic()
    while not stop.is_set():
        client.publish(t.frame, stamped_frame(seq, body), qos=0)
        if state_every and seq % state_every == 0:
            state = {"posture": "good" if (seq // state_every) % 2 else "bad", "seq": seq // state_every,
                     "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            client.publish(t.state, json.dumps(state), qos=1, retain=True)
        seq += 1
        next_at += period
        stop.wait(max(0.0, next_at - time.monotonic()))
    client.publish(t.availability, "offline", qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()
    return 0


def relay_main(a: argparse.Namespace) -> int:
    """The relay alone in a process, as it would sit in `deskpulse web`."""
    from deskpulse.wsrelay import WsRelay

    stop = _stop_event()
    # As `deskpulse web` runs it, minus the login: the relay logs in with the viewer account
    # (whatever the node viewers send), and is sized for the benchmark's viewers.
    relay = WsRelay("127.0.0.1", a.listen_port, "127.0.0.1", a.target_port, username=VIEWER_USER,
                    password=VIEWER_PASS, max_connections=a.max_connections).start()
    print(f"READY {relay.port}", flush=True)
    stop.wait()
    relay.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("publish")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--frame-bytes", type=int, default=38_000)
    p.add_argument("--state-hz", type=float, default=2.0)
    p.add_argument("--prefix", default="deskpulse")
    p.add_argument("--username")
    p.add_argument("--password")
    r = sub.add_parser("relay")
    r.add_argument("--target-port", type=int, required=True)
    r.add_argument("--listen-port", type=int, default=0)
    r.add_argument("--max-connections", type=int, default=1000)
    a = ap.parse_args(argv)
    return publish_main(a) if a.cmd == "publish" else relay_main(a)


if __name__ == "__main__":
    sys.exit(main())
