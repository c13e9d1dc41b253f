"""Soak: the real agent (subprocess, demo source, real MediaPipe) on Debian mosquitto with 10
simulated viewers, for N minutes. A benchmark, not a test: it prints figures, asserts nothing.

Every viewer subscribes to state and frames and renews the frame lease (request/stream) like
the dashboard does, so frames flow for the whole run. Every --interval seconds it prints the
agent's RSS, open file descriptors and thread count (from /proc/<pid>), fps (from its health
topic), publish latency (receive time minus the state's `ts`, across all viewers) and frames
received per viewer; at the end, the growth of each from the first sample to the last.

  .venv/bin/python bench/soak.py --minutes 5
  .venv/bin/python bench/soak.py --minutes 60 --viewers 10

Loopback only. The agent's log is kept in the printed temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from needs import need

need(modules=("paho", "psutil", "mediapipe"), tools=("mosquitto",))

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402

from deskpulse.topics import Topics  # noqa: E402
from tests.support import Mosquitto, agent_env  # noqa: E402

DEVICE = "soak"
LEASE_S = 10.0
RENEW_S = 4.0  # the dashboard renews well before the lease ends


def parse_ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Viewer:
    """One simulated dashboard: state + frames, renewing the frame lease."""

    def __init__(self, port: int, topics: Topics, index: int) -> None:
        self.topics = topics
        self.lock = threading.Lock()
        self.latencies_ms: list[float] = []
        self.frames = 0
        self.health: dict[str, Any] | None = None
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"soak-viewer-{index}")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, u: Any, f: Any, rc: Any, p: Any = None) -> None:
        t = self.topics
        client.subscribe([(t.state, 1), (t.frame, 0), (t.health, 0)])
        self.connected.set()

    def _on_message(self, client: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        now = time.time()
        if m.topic == self.topics.frame:
            with self.lock:
                self.frames += 1
        elif m.topic == self.topics.state and not m.retain:
            try:
                ts = parse_ts(json.loads(m.payload)["ts"])
            except (ValueError, KeyError, TypeError):
                return
            with self.lock:
                self.latencies_ms.append((now - ts) * 1000)
        elif m.topic == self.topics.health:
            try:
                self.health = json.loads(m.payload)
            except ValueError:
                pass

    def renew(self) -> None:
        self.client.publish(self.topics.request("stream"), json.dumps({"lease_s": LEASE_S}), qos=1)

    def take(self) -> tuple[list[float], int]:
        with self.lock:
            lat, frames = self.latencies_ms, self.frames
            self.latencies_ms, self.frames = [], 0
        return lat, frames

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def proc_figures(pid: int) -> tuple[float, int, int]:
    """RSS (MiB), open fds, threads of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_mb = int(fields["VmRSS"].split()[0]) / 1024
    threads = int(fields["Threads"])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss_mb, fds, threads


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--viewers", type=int, default=10)
    ap.add_argument("--interval", type=float, default=60.0, help="seconds between samples")
    ap.add_argument("--fps", type=float, default=10.0, help="camera.fps and frames.fps")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dp-soak-"))
    mosq = Mosquitto(workdir=work).start()
    data = work / "data"
    data.mkdir()
    cfg = data / "deskpulse.toml"
    cfg.write_text(f'data_dir = "{data}"\n[camera]\nfps = {args.fps}\n[frames]\nfps = {args.fps}\n'
                   f"lease_s = {LEASE_S}\n[mqtt]\nstate_refresh_s = 5\nhealth_interval_s = 5\n")
    log_path = work / "agent.log"
    log = open(log_path, "ab")
    agent = subprocess.Popen([sys.executable, "-m", "deskpulse", "run", "--config", str(cfg), "--source", "demo",
                              "--broker", f"mqtt://127.0.0.1:{mosq.port}", "--device-id", DEVICE],
                             stdout=log, stderr=subprocess.STDOUT, env=agent_env(), cwd=str(ROOT))
    topics = Topics("deskpulse", DEVICE)
    viewers = [Viewer(mosq.port, topics, i) for i in range(args.viewers)]
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    print(f"soak: agent pid {agent.pid}, mosquitto :{mosq.port}, {args.viewers} viewers, "
          f"{args.minutes:g} min, work dir {work}", flush=True)
    print(f"{'min':>5} {'rss_mb':>8} {'fds':>5} {'threads':>7} {'fps':>6} {'lat_p50_ms':>10} {'lat_p95_ms':>10} "
          f"{'lat_max_ms':>10} {'n_lat':>6} {'frames/viewer/s':>15}", flush=True)
    samples: list[tuple[float, float, int, int, float]] = []
    t0 = time.monotonic()
    end = t0 + args.minutes * 60
    next_sample = t0 + args.interval
    try:
        for v in viewers:
            v.connected.wait(10)
        while not stop.is_set() and time.monotonic() < end:
            if agent.poll() is not None:
                print(f"agent exited with {agent.returncode}; see {log_path}", flush=True)
                return 1
            for v in viewers:
                v.renew()
            stop.wait(min(RENEW_S, max(0.0, next_sample - time.monotonic())))
            if time.monotonic() < next_sample:
                continue
            since_last = args.interval
            next_sample += args.interval
            lat: list[float] = []
            frames = 0
            for v in viewers:
                vl, vf = v.take()
                lat += vl
                frames += vf
            rss, fds, threads = proc_figures(agent.pid)
            health = viewers[0].health or {}
            fps = float(health.get("fps", float("nan")))
            minute = (time.monotonic() - t0) / 60
            samples.append((minute, rss, fds, threads, fps))
            print(f"{minute:5.1f} {rss:8.1f} {fds:5d} {threads:7d} {fps:6.2f} {pct(lat, 0.5):10.1f} "
                  f"{pct(lat, 0.95):10.1f} {max(lat, default=float('nan')):10.1f} {len(lat):6d} "
                  f"{frames / max(1, len(viewers)) / since_last:15.2f}", flush=True)
    finally:
        for v in viewers:
            v.close()
        if agent.poll() is None:
            agent.terminate()
            try:
                agent.wait(20)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait(5)
        log.close()
        mosq.stop()
    if len(samples) >= 2:
        (m0, r0, f0, t0_, _), (m1, r1, f1, t1, _) = samples[0], samples[-1]
        fps_all = [s[4] for s in samples if s[4] == s[4]]
        print(f"growth from minute {m0:.1f} to {m1:.1f}: RSS {r0:.1f} -> {r1:.1f} MiB ({(r1 - r0) / r0:+.1%}), "
              f"fds {f0} -> {f1} ({f1 - f0:+d}), threads {t0_} -> {t1} ({t1 - t0_:+d}), "
              f"fps mean {statistics.mean(fps_all) if fps_all else float('nan'):.2f}", flush=True)
    tracebacks = log_path.read_text(errors="replace").count("Traceback")
    print(f"agent exit code {agent.returncode}, tracebacks in its log: {tracebacks}", flush=True)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
