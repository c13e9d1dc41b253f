"""Presence benchmark (issue 12): what each way of not trusting MediaPipe's tracker costs,
and how soon it reports a person who left.

    .venv/bin/python bench/presence.py [--rounds 3] [--only delay|cost|parts|agent] [--options a,b]

- delay: per option, from the person gone to estimate() returning None;
- cost: per option, CPU ms per frame of estimate() against video mode, and for the chosen
  design its checks and overhead per scene, at 10 and 2 fps (includes parts);
- parts: each part's CPU alone, and the resident memory the checks add (fresh processes);
- agent: the real agent at its default config, from the person gone to the retained state
  `absent`, with and without the checks.
Without --only it runs them all (about 30 minutes on a 2-core machine).

Real MediaPipe on scikit-image's public-domain photos (tests/presence_photos.py) and on
the built-in demo scene. Time is simulated for delay and cost (frames stamped at the pose
rate), so delays are exact in scene time whatever the machine's load; CPU is
`time.process_time()` around `estimate()` only (the process's CPU, MediaPipe's threads
included), interleaved over rounds and reported as the median round.

Options:
- video: video (tracking) mode alone, as before issue 12;
- static: static_image_mode on every frame (detector + landmarks each time);
- video+static/1s: a static-mode pose every second confirms or drops the tracked person;
- video+reset/1s: the tracker re-initialised every second (graph restarted);
- video+detector/1s: MediaPipe's pose detector (a graph of its own) every second;
- guard(detector): presence.py's schedule (on a change of the picture, and every
  max_interval_s, within a CPU budget), checked by the pose detector alone;
- guard: the chosen design, the same schedule, checked by the face detector first and the
  pose detector only when no face is where the landmarks put the head (what MediaPipePose
  does by default).

Departure delay: from the first frame without the person (the person fully out of the
frame in the demo) to the first frame estimate() returns None, and whether it then stays
None. A one-second schedule's worst case is a second plus a frame; the photo departures
fall at a few phases of it only. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deskpulse.demo import DemoScene  # noqa: E402
from deskpulse.pose import (NOSE, Detectors, MediaPipePose, Pose, _load_pose_solution,  # noqa: E402
                            detector_graph, upper_body_box)
from deskpulse.presence import View, change  # noqa: E402
from tests.presence_photos import alternating, letterbox, rgb, with_noise  # noqa: E402
from skimage import data  # noqa: E402

Frame = tuple[float, np.ndarray]  # (scene time s, RGB)


class SimClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Estimator:
    """What every option offers the bench: estimate(rgb) at the clock's time, close()."""

    clock: SimClock

    def estimate(self, rgb_: np.ndarray) -> Pose | None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class Guarded(Estimator):
    def __init__(self, check: bool, face: bool = True) -> None:
        self.clock = SimClock()
        self.pose = MediaPipePose(clock=self.clock, check_presence=check, face_check=face)

    def estimate(self, rgb_: np.ndarray) -> Pose | None:
        return self.pose.estimate(rgb_)

    def close(self) -> None:
        self.pose.close()


class Static(Estimator):
    def __init__(self) -> None:
        self.clock = SimClock()
        mp_pose = _load_pose_solution()
        self.static = mp_pose.Pose(static_image_mode=True, model_complexity=1)

    def estimate(self, rgb_: np.ndarray) -> Pose | None:
        return to_pose(self.static.process(rgb_), rgb_)

    def close(self) -> None:
        self.static.close()


class Scheduled(Estimator):
    """Video mode, and every `every_s` a check that confirms the person or makes the tracker let go."""

    def __init__(self, kind: str, every_s: float = 1.0) -> None:
        self.clock = SimClock()
        self.kind = kind
        self.every_s = every_s
        self.video = MediaPipePose(clock=self.clock, check_presence=False)
        mp_pose = _load_pose_solution()
        self.static = mp_pose.Pose(static_image_mode=True, model_complexity=1) if kind == "static" else None
        self.detector = Detectors(mp_pose, face=False) if kind == "detector" else None
        self.last = -1e9

    def estimate(self, rgb_: np.ndarray) -> Pose | None:
        now = self.clock()
        due = now - self.last >= self.every_s
        if due:
            self.last = now
        if due and self.kind == "reset":
            self.video._pose.reset()
        pose = self.video.estimate(rgb_)
        if pose is None or not due or self.kind == "reset":
            return pose
        h, w = rgb_.shape[:2]
        if self.static is not None:
            there = self.static.process(rgb_).pose_landmarks is not None
        else:
            assert self.detector is not None
            there = self.detector.find(rgb_, (pose[NOSE].x / w, pose[NOSE].y / h)) is not None
        if there:
            return pose
        self.video._let_go(rgb_)
        return None

    def close(self) -> None:
        self.video.close()
        for part in (self.static, self.detector):
            if part is not None:
                part.close()


def to_pose(result: object, rgb_: np.ndarray) -> Pose | None:
    from deskpulse.pose import Landmark

    marks = getattr(result, "pose_landmarks", None)
    if marks is None:
        return None
    h, w = rgb_.shape[:2]
    return Pose(tuple(Landmark(m.x * w, m.y * h, m.visibility) for m in marks.landmark), w, h)


OPTIONS: dict[str, Callable[[], Estimator]] = {
    "video": lambda: Guarded(check=False),
    "static": Static,
    "video+static/1s": lambda: Scheduled("static"),
    "video+reset/1s": lambda: Scheduled("reset"),
    "video+detector/1s": lambda: Scheduled("detector"),
    "guard(detector)": lambda: Guarded(check=True, face=False),
    "guard": lambda: Guarded(check=True),
}
CHOSEN = "guard"


# --- scenes ---------------------------------------------------------------------------------
def frames_at(fps: float, seconds: float, start: float = 0.0) -> Iterable[float]:
    n = int(round(seconds * fps))
    return (start + k / fps for k in range(n))


def steady_person(fps: float, seconds: float) -> list[Frame]:
    """The letterboxed astronaut sitting still, with a camera's sensor noise."""
    base = letterbox(rgb(data.astronaut()))
    noisy = [with_noise(base, seed) for seed in range(8)]
    return [(t, noisy[k % len(noisy)]) for k, t in enumerate(frames_at(fps, seconds))]


def moving_person(fps: float, start: float, seconds: float) -> list[Frame]:
    """The demo scene: the astronaut sways, slouches, leans in and tilts (no departure)."""
    scene = DemoScene()
    return [(t, cv2.cvtColor(scene.frame(t), cv2.COLOR_BGR2RGB)) for t in frames_at(fps, seconds, start)]


def busy_picture(fps: float, seconds: float) -> list[Frame]:
    """The worst case for the schedule: a slouched person whose face the face detector
    misses, in a picture whose brightness flickers on every frame (every frame "changed")."""
    scene = DemoScene()
    base = cv2.cvtColor(scene.frame(20.0), cv2.COLOR_BGR2RGB)
    bright = [np.clip(base.astype(np.int16) + d, 0, 255).astype(np.uint8) for d in (-40, 40)]
    return [(t, bright[k % 2]) for k, t in enumerate(frames_at(fps, seconds))]


@dataclass
class Departure:
    name: str
    frames: list[Frame]
    lefts: list[float]  # scene times at which the person is gone


def photo_departures(fps: float, letterboxed: bool, person_s: float = 2.25, empty_s: float = 3.0) -> Departure:
    frames: list[Frame] = []
    lefts: list[float] = []
    t = 0.0
    for _name, image, person in alternating(letterboxed):
        span = person_s if person else empty_s
        if not person:
            lefts.append(t)
        frames += [(t + k / fps, image) for k in range(int(round(span * fps)))]
        t += span
    return Departure("letterboxed photos" if letterboxed else "native photos", frames, lefts)


DEMO_AWAY_AT = 65.0  # the demo's "away" segment starts here and slides the person out
DEMO_GONE_AT = DEMO_AWAY_AT + 1.19  # fully out of the 640-pixel frame (shift 704 px x weight > 560 px)


def demo_departure(fps: float) -> Departure:
    scene = DemoScene()
    frames = [(t, cv2.cvtColor(scene.frame(t), cv2.COLOR_BGR2RGB)) for t in frames_at(fps, 15.0, 59.0)]
    return Departure("demo, slides out", frames, [DEMO_GONE_AT])


def demo_fade_departure(fps: float, fade_s: float = 1.0) -> Departure:
    """The moving demo person dissolves, over fade_s, into the letterboxed coffee cup: a
    person who gets up in front of a cluttered desk (gone when the dissolve ends)."""
    scene = DemoScene()
    empty = cv2.cvtColor(letterbox(rgb(data.coffee())), cv2.COLOR_RGB2BGR)
    frames: list[Frame] = []
    gone = 56.0 + 4.0 + fade_s
    for t in frames_at(fps, 4.0 + fade_s + 4.0, 56.0):
        a = float(np.clip((t - 60.0) / fade_s, 0.0, 1.0))
        image = cv2.addWeighted(scene.frame(t), 1.0 - a, empty, a, 0.0)
        frames.append((t, cv2.cvtColor(image, cv2.COLOR_BGR2RGB)))
    return Departure("demo, dissolves into a cup", frames, [gone])


# --- measuring --------------------------------------------------------------------------------
def run(est: Estimator, frames: list[Frame], skip: int = 0) -> tuple[list[bool], float]:
    """Present per frame, and the CPU ms per frame of estimate() after the first `skip` frames
    (a model's first run prepares its interpreter: several times a normal frame)."""
    present: list[bool] = []
    cpu = 0.0
    for k, (t, image) in enumerate(frames):
        est.clock.t = t
        c0 = time.process_time()
        found = est.estimate(image)
        if k >= skip:
            cpu += time.process_time() - c0
        present.append(found is not None)
    return present, cpu / max(1, len(frames) - skip) * 1000


def delays(dep: Departure, present: list[bool], window_s: float) -> list[tuple[float | None, bool]]:
    """Per departure: (seconds to the first None, or None if never in the window; stayed None after)."""
    out = []
    times = [t for t, _ in dep.frames]
    for left in dep.lefts:
        idx = [i for i, t in enumerate(times) if left <= t < left + window_s]
        first = next((i for i in idx if not present[i]), None)
        if first is None:
            out.append((None, False))
            continue
        held = all(not present[i] for i in idx if i >= first)
        out.append((times[first] - left, held))
    return out


def say(text: str) -> None:
    print(text, flush=True)


def fmt_delay(ds: list[tuple[float | None, bool]]) -> str:
    missed = sum(1 for d, _ in ds if d is None)
    got = [d for d, _ in ds if d is not None]
    flaps = sum(1 for d, held in ds if d is not None and not held)
    worst = "never" if missed else f"{max(got):.2f} s"
    mean = f"{statistics.mean(got):.2f} s" if got else "-"
    return f"worst {worst:>7}  mean {mean:>7}  missed {missed}/{len(ds)}  flapped {flaps}"


def components(reps: int = 30) -> dict[str, float]:
    """Median CPU ms of each part, measured alone: the terms of the chosen design's cost."""
    person = letterbox(rgb(data.astronaut()))
    slouched = cv2.cvtColor(DemoScene().frame(20.0), cv2.COLOR_BGR2RGB)  # no face found there
    mp_pose = _load_pose_solution()
    video = mp_pose.Pose(static_image_mode=False, model_complexity=1)
    static = mp_pose.Pose(static_image_mode=True, model_complexity=1)
    tracker = MediaPipePose(check_presence=False)
    pose, slouch = tracker.estimate(person), tracker.estimate(slouched)
    assert pose is not None and slouch is not None
    ref = View.of(person, upper_body_box(pose).grown(0.25))
    nose = (pose[NOSE].x / pose.width, pose[NOSE].y / pose.height)
    slouch_nose = (slouch[NOSE].x / slouch.width, slouch[NOSE].y / slouch.height)
    detectors = Detectors(mp_pose)
    fast = mp_pose.SolutionBase(graph_config=detector_graph("PoseDetectionCpu"))
    assert detectors.find(person, nose) == "face" and detectors.find(slouched, slouch_nose) == "pose"

    parts: dict[str, Callable[[], object]] = {
        "video frame (tracking)": lambda: video.process(person),
        "static-mode frame": lambda: static.process(person),
        "tracker reset + frame": lambda: (video.reset(), video.process(person)),
        "pose detector, XNNPACK": lambda: fast.process(person),
        "presence bookkeeping per frame": lambda: change(ref, View.of(person, upper_body_box(pose).grown(0.25)), 24),
        "check, face found": lambda: detectors.find(person, nose),
        "check, no face: pose detector": lambda: detectors.find(slouched, slouch_nose),
    }
    out: dict[str, float] = {}
    try:
        for name, fn in parts.items():
            fn()
            fn()
            times = []
            for _ in range(reps):
                c0 = time.process_time()
                fn()
                times.append((time.process_time() - c0) * 1000)
            out[name] = statistics.median(times)
    finally:
        for closable in (video, static, detectors, fast, tracker):
            closable.close()
    say("\nCPU ms of each part, alone (median of %d)" % reps)
    for name, ms in out.items():
        say(f"  {name:34s} {ms:6.1f} ms")
    return out


MEMORY_PROBE = """
import sys, cv2, psutil
from deskpulse.demo import DemoScene
from deskpulse.pose import MediaPipePose, _load_pose_solution, detector_graph
kind = sys.argv[1]
frames = [cv2.cvtColor(DemoScene().frame(t), cv2.COLOR_BGR2RGB) for t in (5.0, 20.0)]
pose = MediaPipePose(check_presence=kind == "checks")
extra = None
if kind == "xnnpack":
    extra = _load_pose_solution().SolutionBase(graph_config=detector_graph("PoseDetectionCpu"))
for k in range(20):
    pose.estimate(frames[k % 2])
    if extra is not None:
        extra.process(frames[k % 2])
if kind == "checks":
    pose._detectors.find(frames[1], (0.02, 0.98))  # both detectors have run
print(psutil.Process().memory_info().rss / 2**20)
"""


def memory() -> None:
    """Resident memory of a fresh process: the tracker alone, with the checks, and with a
    pose detector on XNNPACK (what a faster check would have needed)."""
    import subprocess

    rss = {}
    for kind in ("tracker", "checks", "xnnpack"):
        out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, kind], capture_output=True, text=True,
                             cwd=str(ROOT), check=True)
        rss[kind] = float(out.stdout.strip().splitlines()[-1])
    say(f"\nResident memory, fresh process after 20 frames: tracker alone {rss['tracker']:.0f} MB; "
        f"with the checks' detectors (face; pose on TFLite kernels) {rss['checks'] - rss['tracker']:+.0f} MB; "
        f"a pose detector on XNNPACK instead {rss['xnnpack'] - rss['tracker']:+.0f} MB")


def cost(options: list[str], rounds: int) -> None:
    scenes = {
        "steady person @ 2 fps": steady_person(2.0, 40.0),
        "steady person @ 10 fps": steady_person(10.0, 10.0),
        "moving person (demo) @ 2 fps": moving_person(2.0, 0.0, 64.0),
        "moving person (demo) @ 10 fps": moving_person(10.0, 12.0, 12.0),
        "busy picture @ 2 fps": busy_picture(2.0, 120.0),
        "busy picture @ 10 fps": busy_picture(10.0, 30.0),
    }
    # Every option on two scenes; the schedules (and video, the reference) on all of them.
    everyone = ("steady person @ 2 fps", "moving person (demo) @ 10 fps")
    results: dict[tuple[str, str], list[float]] = {}
    counted: dict[tuple[str, str], tuple[int, int, int]] = {}  # checks, of them by face, frames
    for r in range(rounds):
        for scene, frames in scenes.items():
            names = [n for n in options if scene in everyone or n == "video" or n.startswith("guard")]
            for name in (names if r % 2 == 0 else list(reversed(names))):
                est = OPTIONS[name]()
                try:
                    _, ms = run(est, frames, skip=3)
                    if isinstance(est, Guarded):
                        st = est.pose.stats
                        counted[(name, scene)] = (st.checks, st.by_face, len(frames))
                finally:
                    est.close()
                results.setdefault((name, scene), []).append(ms)
    med = {k: statistics.median(v) for k, v in results.items()}
    say("\nCPU ms per frame of estimate(), measured (median of %d rounds; this machine is shared, "
          "so +-5%% is noise), and against video mode" % rounds)
    for scene in scenes:
        base = med[("video", scene)]
        say(f"  {scene}")
        for name in options:
            if (name, scene) in med:
                say(f"    {name:20s} {med[(name, scene)]:6.1f} ms  ({(med[(name, scene)] / base - 1) * 100:+4.0f}%)")
    parts = components()
    memory()
    if CHOSEN not in options:
        return
    say(f"\nChosen design ({CHOSEN}): checks and overhead against video mode at the same pose rate")
    say("  model = (bookkeeping + checks per frame x their cost) / video frame, from the parts above")
    video_ms = parts["video frame (tracking)"]
    for scene in scenes:
        checks, by_face, n = counted[(CHOSEN, scene)]
        check_ms = by_face * parts["check, face found"] + (checks - by_face) * parts["check, no face: pose detector"]
        model = (parts["presence bookkeeping per frame"] + check_ms / n) / video_ms * 100
        measured = (med[(CHOSEN, scene)] / med[("video", scene)] - 1) * 100
        span = scenes[scene][-1][0] - scenes[scene][0][0] + 1e-9
        say(f"  {scene:30s} {checks / span:5.2f} checks/s ({by_face} of {checks} by face)   "
              f"overhead: model {model:+5.1f}%   measured {measured:+5.1f}%")


def delay(options: list[str], fps_list: Iterable[float]) -> None:
    say("\nDeparture: time from the person gone to estimate() returning None (scene time)")
    for fps in fps_list:
        deps = [photo_departures(fps, False), photo_departures(fps, True), demo_departure(fps),
                demo_fade_departure(fps)]
        for name in options:
            parts = []
            for dep in deps:
                est = OPTIONS[name]()
                try:
                    present, _ = run(est, dep.frames)
                finally:
                    est.close()
                parts.append(f"  {dep.name:28s} {fmt_delay(delays(dep, present, 3.0))}")
            say(f"@{fps:g} fps {name}\n" + "\n".join(parts))


class PhasedSource:
    """A camera whose picture follows a timetable: each pair is a person for `person_s`, then
    an empty scene for `empty_s`. It notes when each empty phase began (the departure)."""

    live = True
    stream = False

    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]], person_s: float, empty_s: float) -> None:
        self.pairs = [(cv2.cvtColor(p, cv2.COLOR_RGB2BGR), cv2.cvtColor(e, cv2.COLOR_RGB2BGR)) for p, e in pairs]
        self.person_s, self.empty_s = person_s, empty_s
        self.t0 = time.monotonic()
        self.departures = [self.t0 + i * (person_s + empty_s) + person_s for i in range(len(pairs))]
        self.end = self.t0 + len(pairs) * (person_s + empty_s)

    def read(self) -> np.ndarray:
        t = (time.monotonic() - self.t0) % (len(self.pairs) * (self.person_s + self.empty_s))
        i, into = divmod(t, self.person_s + self.empty_s)
        person, empty = self.pairs[int(i)]
        return person if into < self.person_s else empty

    def close(self) -> None:
        pass


def agent_run(pairs: list[tuple[np.ndarray, np.ndarray]], check: bool, person_s: float,
              empty_s: float) -> list[tuple[float | None, str]]:
    """One run of the real agent on a PhasedSource: per departure, seconds to `absent`, and
    the pose rate (health's mode and pose_fps) just before the person left."""
    import tempfile

    from deskpulse.agent import Agent
    from deskpulse.broker import EmbeddedBroker
    from deskpulse.config import load_config
    from tests.support import Recorder

    with EmbeddedBroker("127.0.0.1", 0, ws_port=None) as broker, tempfile.TemporaryDirectory() as tmp:
        source = PhasedSource(pairs, person_s, empty_s)
        config = load_config(None, {"mqtt.broker": f"mqtt://127.0.0.1:{broker.port}", "device_id": "benchpresence",
                                    "data_dir": tmp, "homeassistant.enabled": False, "camera.source": "demo",
                                    "mqtt.health_interval_s": 0.5}, env={})  # to see the pose rate
        rec = Recorder(broker.port, ["deskpulse/benchpresence/state", "deskpulse/benchpresence/health"])
        agent = Agent(config, estimator=MediaPipePose(check_presence=check), opener=lambda: source).start()
        try:
            while time.monotonic() < source.end + 1.0:
                time.sleep(0.2)
        finally:
            agent.stop()
            rec.close()
    states = [(m.at, m.json()["posture"]) for m in rec.messages if m.topic.endswith("/state")]
    health = [(m.at, m.json()) for m in rec.messages if m.topic.endswith("/health")]
    out: list[tuple[float | None, str]] = []
    for gone in source.departures:
        absent = next((at for at, posture in states if at >= gone and posture == "absent"), None)
        before = [h for at, h in health if at < gone]
        pace = f"{before[-1].get('mode', '?')} {before[-1].get('pose_fps', '?')} fps" if before else "?"
        out.append((None if absent is None or absent > gone + empty_s else absent - gone, pace))
    return out


def agent_departures(person_s: float = 8.0, empty_s: float = 5.0) -> None:
    """The real agent (in this process, default config, embedded broker): from the moment
    the person is gone to the retained state saying absent, at the agent's own pose rate."""
    from tests.presence_photos import EMPTY, PEOPLE_LETTERBOXED, PEOPLE_NATIVE

    say(f"\nThe real agent, default config: person {person_s:g} s then empty {empty_s:g} s, four pairs; "
        "seconds from the person gone to the retained state `absent`")
    for letterboxed, people in ((False, PEOPLE_NATIVE), (True, PEOPLE_LETTERBOXED)):
        fit = letterbox if letterboxed else (lambda image: image)
        pairs = [(make(), fit(make_empty())) for make, make_empty in zip(people.values(), EMPTY.values())]
        names = [f"{p} -> {e}" for p, e in zip(people, EMPTY)]
        for check in (False, True):
            delays = agent_run(pairs, check, person_s, empty_s)
            cells = ", ".join(f"{n}: {'never' if x is None else f'{x:.2f} s'} (at {pace})"
                              for n, (x, pace) in zip(names, delays))
            say(f"  {'letterboxed' if letterboxed else 'native':11s} "
                f"{'with presence checks' if check else 'tracker alone':20s}  {cells}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", choices=("cost", "delay", "parts", "agent"))
    ap.add_argument("--options", default=",".join(OPTIONS), help="comma-separated, from: " + ", ".join(OPTIONS))
    args = ap.parse_args()
    options = [o for o in args.options.split(",") if o]
    unknown = [o for o in options if o not in OPTIONS]
    if unknown:
        ap.error(f"unknown option(s): {', '.join(unknown)}")
    if "video" not in options:
        options.insert(0, "video")
    if args.only == "parts":
        components()
        memory()
        return
    if args.only == "agent":
        agent_departures()
        return
    if args.only in (None, "delay"):
        delay(options, (10.0, 2.0))
    if args.only in (None, "cost"):
        cost(options, args.rounds)
    if args.only is None:
        agent_departures()


if __name__ == "__main__":
    main()
