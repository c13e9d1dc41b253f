"""Agent pipeline benchmark (issue 2): overhead vs bare MediaPipe, CPU, publish latency,
the cost of frames when nobody watches, and resident memory.

    .venv/bin/python bench/pipeline.py [--frames 200] [--rounds 3] [--rss-minutes 5]

Prints figures and ratios; asserts nothing. Everything runs on loopback with the
embedded broker. Figures for the README come from this script.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from needs import need

need(modules=("cv2", "numpy", "psutil", "paho", "mediapipe", "skimage"))

import cv2  # noqa: E402
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deskpulse.agent import Agent  # noqa: E402
from deskpulse.broker import EmbeddedBroker  # noqa: E402
from deskpulse.config import load_config  # noqa: E402
from deskpulse.demo import DemoScene  # noqa: E402
from deskpulse.pose import MediaPipePose  # noqa: E402
from tests.support import Recorder  # noqa: E402


def demo_frames(n: int) -> list[np.ndarray]:
    scene = DemoScene()
    return [scene.frame(i * 0.1) for i in range(n)]


class ListSource:
    """Hands the same frames out as fast as they are asked for (a camera that never waits)."""

    live = True
    stream = False

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames = frames
        self.i = 0

    def read(self) -> np.ndarray:
        self.i += 1
        return self.frames[self.i % len(self.frames)]

    def close(self) -> None:
        pass


def bare_fps(frames: list[np.ndarray]) -> float:
    pose = MediaPipePose()
    try:
        pose.estimate(cv2.cvtColor(frames[0], cv2.COLOR_BGR2RGB))
        t0 = time.perf_counter()
        for f in frames:
            # The agent converts BGR->RGB too; bare process() gets RGB frames ready-made.
            pose._pose.process(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
        return len(frames) / (time.perf_counter() - t0)
    finally:
        pose.close()


def agent_fps(frames: list[np.ndarray], port: int, data: Path, stream: bool, target_fps: float) -> tuple[float, int]:
    over = {
        "device_id": "bench", "data_dir": str(data), "mqtt.broker": f"mqtt://127.0.0.1:{port}",
        "camera.fps": 120.0, "frames.mode": "always" if stream else "never", "frames.fps": target_fps,
        "homeassistant.enabled": False, "camera.source": "demo",
    }
    config = load_config(None, over, {})
    agent = Agent(config, opener=lambda: ListSource(frames))
    agent.start()
    try:
        while agent.frames_processed < 5:  # warm up: model loaded, first frames through
            time.sleep(0.01)
        n0, enc0, t0 = agent.frames_processed, agent.frames_encoded, time.perf_counter()
        while agent.frames_processed - n0 < len(frames):
            time.sleep(0.005)
        elapsed = time.perf_counter() - t0
        return (agent.frames_processed - n0) / elapsed, agent.frames_encoded - enc0
    finally:
        agent.stop()


def overhead(args: argparse.Namespace) -> None:
    frames = demo_frames(args.frames)
    with EmbeddedBroker("127.0.0.1", 0, ws_port=None) as broker, tempfile.TemporaryDirectory() as tmp:
        rows: dict[str, list[float]] = {"bare": [], "agent (frames off)": [], "agent (frames on, 10 fps)": []}
        encoded = 0
        for _ in range(args.rounds):  # interleaved so drift hits all three alike
            rows["bare"].append(bare_fps(frames))
            rows["agent (frames off)"].append(agent_fps(frames, broker.port, Path(tmp), False, 10)[0])
            fps, encoded = agent_fps(frames, broker.port, Path(tmp), True, 10)
            rows["agent (frames on, 10 fps)"].append(fps)
        bare = statistics.median(rows["bare"])
        print(f"\n## Pipeline overhead ({args.frames} demo frames x {args.rounds} rounds, median fps)\n")
        print("| run | fps | ratio to bare MediaPipe |\n|---|---|---|")
        for name, values in rows.items():
            med = statistics.median(values)
            print(f"| {name} | {med:.1f} | {med / bare:.3f} |")
        print(f"\nJPEGs encoded in the last frames-on run: {encoded}")


def run_agent(source: str, seconds: float, extra: dict[str, str], port: int, data: Path) -> dict[str, float]:
    data.mkdir(parents=True, exist_ok=True)
    cfg = data / "bench.toml"
    cfg.write_text(f'data_dir = "{data}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESKPULSE_")} | extra
    proc = subprocess.Popen([sys.executable, "-m", "deskpulse", "run", "--config", str(cfg), "--source", source,
                             "--broker", f"mqtt://127.0.0.1:{port}", "--device-id", "benchcpu"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    p = psutil.Process(proc.pid)
    rec = Recorder(port, "deskpulse/benchcpu/health")
    try:
        rec.wait_topic("deskpulse/benchcpu/health", lambda m: m.json()["frames_processed"] > 5, timeout=60)
        time.sleep(extra.get("_warm", 0) and float(extra["_warm"]) or 3)
        c0, t0 = sum(p.cpu_times()[:2]), time.monotonic()
        mark = rec.mark()
        time.sleep(seconds)
        c1, t1 = sum(p.cpu_times()[:2]), time.monotonic()
        health = rec.wait_topic("deskpulse/benchcpu/health", start=mark, timeout=30).json()
        rss = p.memory_info().rss / 2**20
        return {"cpu": (c1 - c0) / (t1 - t0), "fps": health["fps"], "frames": health["frames_processed"],
                "encoded": health["frames_encoded"], "rss": rss, "cpu_s": c1 - c0, "wall": t1 - t0}
    finally:
        rec.close()
        proc.terminate()
        proc.wait(20)


def cpu(args: argparse.Namespace) -> None:
    with EmbeddedBroker("127.0.0.1", 0, ws_port=None) as broker, tempfile.TemporaryDirectory() as tmp:
        black = Path(tmp) / "black.png"
        cv2.imwrite(str(black), np.zeros((480, 640, 3), np.uint8))
        noha = {"DESKPULSE_HOMEASSISTANT_ENABLED": "false"}
        active = run_agent("demo", args.seconds, noha, broker.port, Path(tmp) / "a")
        idle = run_agent(str(black), args.seconds, noha | {"DESKPULSE_CAMERA_IDLE_AFTER_S": "2", "_warm": "4"},
                         broker.port, Path(tmp) / "b")
        streaming = run_agent("demo", args.seconds, noha | {"DESKPULSE_FRAMES_MODE": "always"}, broker.port,
                              Path(tmp) / "c")
    print(f"\n## CPU (agent process, {args.seconds:.0f} s each, 640x480 demo)\n")
    print("| setting | fps | CPU s per wall s | CPU ms per frame | JPEGs encoded |\n|---|---|---|---|---|")
    for name, r in (("default (10 fps, frames off)", active), ("nobody present (idle 2 fps)", idle),
                    ("frames on (10 fps stream)", streaming)):
        per_frame = 1000 * r["cpu_s"] / max(1, r["fps"] * r["wall"])
        print(f"| {name} | {r['fps']:.1f} | {r['cpu']:.3f} | {per_frame:.1f} | {r['encoded']} |")


def latency(args: argparse.Namespace) -> None:
    """Posture change -> retained state on a loopback subscriber, beyond inference."""
    with EmbeddedBroker("127.0.0.1", 0, ws_port=None) as broker, tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "imgs"
        d.mkdir()
        from skimage import data as skdata

        person = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
        for i in range(10):
            cv2.imwrite(str(d / f"a{i:02d}.png"), person)
            cv2.imwrite(str(d / f"b{i:02d}.png"), np.zeros_like(person))
        rec = Recorder(broker.port, "deskpulse/benchlat/state")
        cfg = Path(tmp) / "c.toml"
        cfg.write_text(f'data_dir = "{tmp}"\n[posture]\nonset_s = 0.0\nabsent_frames = 1\n'
                       '[homeassistant]\nenabled = false\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("DESKPULSE_")}
        proc = subprocess.Popen([sys.executable, "-m", "deskpulse", "run", "--config", str(cfg), "--source", str(d),
                                 "--broker", f"mqtt://127.0.0.1:{broker.port}", "--device-id", "benchlat"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            lat: list[float] = []
            seen = 0
            last = None
            deadline = time.monotonic() + 180
            while len(lat) < args.changes and time.monotonic() < deadline:
                time.sleep(0.2)
                with rec._cond:
                    msgs = rec.messages[seen:]
                    seen = len(rec.messages)
                for m in msgs:
                    s = json.loads(m.payload)
                    if last is not None and s["posture"] != last and s["posture"] in ("good", "absent"):
                        lat.append((m.at_wall - _parse_iso(s["ts"])) * 1000)
                    last = s["posture"]
        finally:
            rec.close()
            proc.terminate()
            proc.wait(20)
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]  # noqa: E731
    print(f"\n## Publish latency: posture change -> loopback subscriber ({len(lat)} changes)\n")
    print("Measured from the state's `ts` (taken right after classification of the changing frame)")
    print("to the subscriber's receive time, so inference time is excluded.\n")
    print(f"| p50 | p99 | max |\n|---|---|---|\n| {q(0.5):.2f} ms | {q(0.99):.2f} ms | {lat[-1]:.2f} ms |")


def _parse_iso(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def rss(args: argparse.Namespace) -> None:
    with EmbeddedBroker("127.0.0.1", 0, ws_port=None) as broker, tempfile.TemporaryDirectory() as tmp:
        r = run_agent("demo", args.rss_minutes * 60, {}, broker.port, Path(tmp))
    print(f"\n## Resident memory after {args.rss_minutes:.0f} min (demo, default settings)\n")
    print(f"| DeskPulse agent | upstream DeskPulse (Flask-SocketIO, on a Pi) |\n|---|---|\n"
          f"| {r['rss']:.0f} MB | about 240 MB |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--changes", type=int, default=200)
    ap.add_argument("--rss-minutes", type=float, default=0, help="also measure RSS after N minutes")
    ap.add_argument("--only", choices=["overhead", "cpu", "latency", "rss"])
    args = ap.parse_args()
    steps = {"overhead": overhead, "cpu": cpu, "latency": latency}
    if args.rss_minutes:
        steps["rss"] = rss
    for name, step in steps.items():
        if args.only in (None, name):
            step(args)


if __name__ == "__main__":
    main()
