"""Presence (issue 12): nobody is reported where MediaPipe's tracker keeps a ghost.

- presence.py's schedule on plain thumbnails (no model): when a check is due and why;
- MediaPipePose on real photos with an injected monotonic clock: every empty stretch of an
  alternating person/empty sequence gives None within the time budget, every person
  stretch gives a pose, at 10 and 2 frames a second, native and letterboxed; a moving
  person who dissolves into a cluttered desk is dropped in time; a person who sits still
  for minutes is never dropped; the same scenes do fool the tracker alone;
- the real agent on a directory of those photos: the retained state goes absent on every
  empty stretch and back to a person on every person stretch.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

from deskpulse.pose import MediaPipePose
from deskpulse.presence import THUMB_SIZE, Box, PresenceConfig, PresenceGuard, View, change
from deskpulse.topics import Topics

from .presence_photos import EMPTY, alternating, letterbox, rgb, with_noise
from .support import AgentProcess, Recorder

# The agent reports absent within 2 s of a departure: its filter needs posture.absent_s
# (1.0 s by default) of frames without a person, so estimate() has the rest.
ABSENT_S = 1.0
ESTIMATE_BUDGET_S = 2.0 - ABSENT_S
PERSON = ("good", "bad", "unknown")


class SimClock:
    """Monotonic seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# --- the schedule alone -----------------------------------------------------------------------
def view(image: np.ndarray, box: Box = Box(0.25, 0.2, 0.75, 0.9)) -> View:
    return View.of(image, box)


@functools.cache
def scene(seed: int = 0) -> np.ndarray:
    """An empty scene as a camera sees it twice: the same picture, new sensor noise."""
    return with_noise(letterbox(rgb(EMPTY["cat"]())), seed)


def test_change_is_what_moved_inside_the_confirmed_box() -> None:
    before = view(scene(0))
    assert change(before, view(scene(1)), 24) == 0.0  # sensor noise is no change
    moved = scene(0).copy()
    moved[:, :160] = 255 - moved[:, :160]  # outside the box (x < 0.25): not the person
    assert change(before, view(moved), 24) < 0.05
    gone = scene(0).copy()
    gone[96:432, 160:480] = letterbox(rgb(EMPTY["coffee"]()))[96:432, 160:480]  # what was behind them
    assert change(before, view(gone), 24) > 0.5
    assert change(before, view(cv2.resize(scene(0), (512, 512))), 24) == 1.0  # another frame size


def test_a_still_picture_is_checked_only_on_schedule() -> None:
    cfg = PresenceConfig()
    guard = PresenceGuard(cfg)
    guard.confirm(view(scene(0)), 0.0)
    assert [guard.due(view(scene(k)), t) for k, t in enumerate((0.5, 3.0, cfg.max_interval_s - 0.01))] == [None] * 3
    assert guard.due(view(scene(9)), cfg.max_interval_s) == "scheduled"


def test_a_changed_picture_is_checked_but_not_more_often_than_min_gap() -> None:
    cfg = PresenceConfig()
    guard = PresenceGuard(cfg)
    guard.confirm(view(scene(0)), 0.0)
    gone = scene(0).copy()
    gone[96:432, 160:480] = 0
    assert guard.due(view(gone), cfg.min_gap_s / 2) is None
    assert guard.due(view(gone), cfg.min_gap_s) == "changed"


def test_checks_keep_to_the_cpu_budget_and_routine_ones_never_hold_up_a_departure() -> None:
    cfg = PresenceConfig(budget=0.1, overdraft_frames=3.0)  # 100 ms tracker frames earn 10 ms each
    guard = PresenceGuard(cfg)
    guard.confirm(view(scene(0)), 0.0)
    busy_a, busy_b = scene(0).copy(), scene(0).copy()
    busy_a[96:432, 160:480] = 0
    busy_b[96:432, 160:480] = 255
    guard.tracked(0.1)
    assert guard.due(view(busy_a), 1.0) == "changed"
    guard.checked(0.35)  # a re-detection that found the person: -340 ms, past one of 300 ms
    guard.confirm(view(scene(0)), 1.0)
    guard.tracked(0.1)
    assert guard.due(view(busy_b), 2.0) is None  # still changing: waits for the budget
    assert guard.due(view(busy_b), 2.0) == "changed"  # came to rest (a departure's look): may overdraw 600 ms
    guard.checked(0.3)
    guard.confirm(view(scene(0)), 2.0)
    still = view(scene(1))
    assert guard.due(still, 2.0 + cfg.max_interval_s) is None  # a routine check waits for credit
    for _ in range(64):
        guard.tracked(0.1)
    assert guard.due(still, 2.0 + cfg.max_interval_s) == "scheduled"
    for _ in range(1000):
        guard.tracked(0.1)
    guard.checked(cfg.burst_frames * 0.1 + 0.001)  # saved up to burst_frames of tracker time, no more
    assert guard.due(view(scene(2)), 100.0) is None


def test_the_tracked_person_must_be_confirmed_before_it_is_checked() -> None:
    guard = PresenceGuard()
    assert not guard.tracking
    with pytest.raises(RuntimeError):
        guard.due(view(scene(0)), 0.0)
    guard.confirm(view(scene(0)), 0.0)
    assert guard.tracking
    guard.lost()
    assert not guard.tracking


def test_thumbnails_are_small_and_grey() -> None:
    assert view(scene(0)).thumb.shape == (THUMB_SIZE[1], THUMB_SIZE[0])


# --- real MediaPipe on real photos --------------------------------------------------------------
@pytest.fixture(scope="module")
def sequences() -> dict[bool, list[tuple[str, np.ndarray, bool]]]:
    return {letterboxed: alternating(letterboxed) for letterboxed in (False, True)}


def play(est: MediaPipePose, clock: SimClock, stretches: list[tuple[str, np.ndarray, bool]], fps: float,
         person_s: float, empty_s: float) -> list[tuple[str, bool, list[tuple[float, bool]]]]:
    """Each stretch as (name, is_person, [(seconds into the stretch, pose found), ...])."""
    out = []
    for name, image, person in stretches:
        frames = []
        for k in range(int(round((person_s if person else empty_s) * fps))):
            frames.append((k / fps, est.estimate(image) is not None))
            clock.t += 1.0 / fps
        out.append((name, person, frames))
    return out


def describe(played: list[tuple[str, bool, list[tuple[float, bool]]]]) -> str:
    return "  ".join(f"{name}:{''.join('P' if found else '.' for _, found in frames)}"
                     for name, _, frames in played)


@pytest.mark.slow
@pytest.mark.parametrize("fps", [10.0, 2.0])
@pytest.mark.parametrize("letterboxed", [False, True], ids=["native", "letterboxed"])
def test_every_empty_stretch_gives_none_in_time_and_every_person_a_pose(
        sequences, letterboxed: bool, fps: float) -> None:
    clock = SimClock()
    est = MediaPipePose(clock=clock)
    try:
        played = play(est, clock, sequences[letterboxed], fps, person_s=1.5, empty_s=2.0)
    finally:
        est.close()
    for name, person, frames in played:
        if person:
            assert all(found for _, found in frames), f"{name}: a person stretch lost the person\n{describe(played)}"
        else:
            gone = [t for t, found in frames if not found]
            assert gone and gone[0] < ESTIMATE_BUDGET_S, f"{name}: still a pose after {ESTIMATE_BUDGET_S}s\n{describe(played)}"
            assert all(not found for t, found in frames if t >= gone[0]), \
                f"{name}: the pose came back on an empty scene\n{describe(played)}"
    assert est.stats.ghosts >= 1  # the scenes did need the checks (the tracker alone keeps ghosts)


DISSOLVE_FROM, DISSOLVE_S = 60.0, 1.0


def dissolve(est: MediaPipePose, clock: SimClock, fps: float = 10.0) -> list[tuple[float, bool]]:
    """The demo scene's person, tilting back and swaying (54..60 s of the scene), dissolves
    over one second into the letterboxed coffee cup: someone getting up at a cluttered desk."""
    from deskpulse.demo import DemoScene

    scene_ = DemoScene()
    empty = cv2.cvtColor(letterbox(rgb(EMPTY["coffee"]())), cv2.COLOR_RGB2BGR)
    found = []
    for k in range(int(9.0 * fps)):
        t = 54.0 + k / fps
        a = float(np.clip((t - DISSOLVE_FROM) / DISSOLVE_S, 0.0, 1.0))
        frame = cv2.addWeighted(scene_.frame(t), 1.0 - a, empty, a, 0.0)
        clock.t = 1000.0 + t
        found.append((t, est.estimate(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)) is not None))
    return found


@pytest.mark.slow
def test_the_same_scenes_fool_the_tracker_alone(sequences) -> None:
    """Without presence checks, empty scenes keep a pose to their end: the tests here can fail."""
    fooled = []
    for letterboxed in (False, True):
        clock = SimClock()
        est = MediaPipePose(clock=clock, check_presence=False)
        try:
            played = play(est, clock, sequences[letterboxed], 10.0, person_s=1.0, empty_s=1.0)
        finally:
            est.close()
        fooled += [name for name, person, frames in played if not person and frames[-1][1]]
    assert len(fooled) >= 2, fooled
    clock = SimClock()
    est = MediaPipePose(clock=clock, check_presence=False)
    try:
        assert dissolve(est, clock)[-1][1], "the tracker alone let go of the dissolved person"
    finally:
        est.close()


@pytest.mark.slow
def test_a_moving_person_who_dissolves_into_a_cluttered_desk_is_dropped_in_time() -> None:
    clock = SimClock()
    est = MediaPipePose(clock=clock)
    try:
        found = dissolve(est, clock)
    finally:
        est.close()
    gone_at = DISSOLVE_FROM + DISSOLVE_S
    trace = "".join("P" if f else "." for _, f in found)
    assert all(f for t, f in found if t < DISSOLVE_FROM), trace
    assert all(not f for t, f in found if t >= gone_at + ESTIMATE_BUDGET_S - 1e-9), trace
    assert est.stats.checks > est.stats.ghosts  # the moving person was checked and confirmed


@pytest.mark.slow
@pytest.mark.parametrize("person", ["astronaut", "cameraman"])
def test_a_person_sitting_still_for_minutes_is_never_dropped(person: str) -> None:
    from skimage import data

    image = rgb(data.astronaut() if person == "astronaut" else data.camera())
    noisy = [with_noise(image, seed) for seed in range(6)]
    clock = SimClock()
    est = MediaPipePose(clock=clock)
    minutes, fps = 3.0, 1.0
    try:
        missing = []
        for k in range(int(minutes * 60 * fps)):
            if est.estimate(noisy[k % len(noisy)]) is None:
                missing.append(k / fps)
            clock.t += 1.0 / fps
    finally:
        est.close()
    assert missing == [], f"dropped at {missing[:10]} s"
    stats = est.stats
    # The schedule did check the still person, every max_interval_s, and always found them.
    assert stats.checks >= minutes * 60 / PresenceConfig().max_interval_s - 1
    assert stats.ghosts == 0 and stats.by_face + stats.by_pose_detector == stats.checks
    assert stats.acquired == 1


@pytest.mark.slow
def test_the_pose_detector_is_loaded_only_while_checks_need_it() -> None:
    """Memory (issue 14): the second detector (about 20 MB) is loaded for the checks the
    face detector can't settle, kept while they go on, and let go after BODY_HOLD_S without
    one, or at once when it found nobody."""
    from skimage import data

    from deskpulse.demo import DemoScene
    from deskpulse.pose import BODY_HOLD_S

    face = [with_noise(rgb(data.astronaut()), seed) for seed in range(4)]
    faceless = [with_noise(cv2.cvtColor(DemoScene().frame(20.0), cv2.COLOR_BGR2RGB), seed) for seed in range(4)]
    empty = letterbox(rgb(EMPTY["coffee"]()))
    clock = SimClock()
    est = MediaPipePose(clock=clock)
    detectors = est._detectors
    assert detectors is not None

    def play(frames: list[np.ndarray], seconds: float, fps: float = 2.0) -> None:
        for k in range(int(seconds * fps)):
            est.estimate(frames[k % len(frames)])
            clock.t += 1.0 / fps

    try:
        play(face, 60)
        stats = est.stats
        assert stats.checks >= 5 and stats.by_face == stats.checks, stats
        assert detectors.body_loads == 0 and not detectors.body_loaded
        play(faceless, 40)
        assert stats.by_pose_detector >= 3, stats  # the checks went on, every max_interval_s
        assert detectors.body_loads == 1 and detectors.body_loaded  # loaded once, kept meanwhile
        play(face, BODY_HOLD_S + 15)
        assert not detectors.body_loaded, "the pose detector stayed loaded with nothing to do"
        ghosts = stats.ghosts
        play([empty], 3.0, fps=10.0)
        assert stats.ghosts > ghosts, stats  # the departure was checked ...
        assert detectors.body_loads == 2 and not detectors.body_loaded  # ... and it let go at once
    finally:
        est.close()


# --- the real agent on a directory of photos ----------------------------------------------------
FRAMES_PER_STRETCH = 24


def write_stretches(folder: Path, stretches: list[tuple[str, np.ndarray, bool]]) -> None:
    """One image file per frame, in play order: FRAMES_PER_STRETCH copies of each stretch."""
    folder.mkdir()
    for i, (name, image, _) in enumerate(stretches):
        first = folder / f"{i:02d}-000-{name}.png"
        cv2.imwrite(str(first), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        for k in range(1, FRAMES_PER_STRETCH):
            os.link(first, folder / f"{i:02d}-{k:03d}-{name}.png")


def thumb(bgr: np.ndarray) -> np.ndarray:
    return cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), (48, 36), interpolation=cv2.INTER_AREA).astype(np.int16)


def which_stretch(jpeg: bytes, stretches: list[tuple[str, np.ndarray, bool]]) -> int:
    """The stretch whose image a snapshot shows (the overlay's thin skeleton aside)."""
    shot = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert shot is not None, "the snapshot is not a JPEG"
    scores = [float(np.mean(np.abs(thumb(shot) - thumb(cv2.cvtColor(image, cv2.COLOR_RGB2BGR)))))
              if image.shape[:2] == shot.shape[:2] else np.inf for _, image, _ in stretches]
    best = int(np.argmin(scores))
    assert scores[best] < 12, f"the snapshot matches no stretch: {scores}"
    return best


@pytest.fixture
def ha_online(broker) -> Iterator[None]:
    """Home Assistant's retained birth message: the agent then sends snapshots on changes."""
    birth = Recorder(broker.port, "nothing/at/all")
    try:
        birth.publish("homeassistant/status", "online", retain=True)
        yield
    finally:
        birth.close()


@pytest.mark.slow
@pytest.mark.parametrize("letterboxed", [False, True], ids=["native", "letterboxed"])
def test_agent_goes_absent_on_every_empty_stretch_and_back_on_every_person(
        broker, recorder, ha_online, sequences, tmp_path: Path, letterboxed: bool) -> None:
    """Each posture change comes with a Home Assistant snapshot of the frame that made it
    (snapshot_interval_s = 0: on changes only), which says which stretch it happened in."""
    stretches = sequences[letterboxed]
    folder = tmp_path / "frames"
    write_stretches(folder, stretches)
    device = "presence-lb" if letterboxed else "presence"
    t = Topics("deskpulse", device)
    config = "[posture]\nonset_s = 0.5\n[homeassistant]\nsnapshot_interval_s = 0\nsnapshot_on_change = true\n"
    seen: dict[int, set[str]] = {i: set() for i in range(len(stretches))}  # postures entered per stretch

    def shown(i: int) -> bool:
        return bool(seen[i] & set(PERSON)) if stretches[i][2] else "absent" in seen[i]

    with AgentProcess(broker.port, str(folder), device, tmp_path / "d", config=config) as agent:
        deadline = time.monotonic() + 240
        start, posture = 0, None
        while not all(shown(i) for i in seen):
            try:
                m = recorder.wait_for(lambda m: m.topic in (t.state, t.snapshot),
                                      timeout=max(0.0, deadline - time.monotonic()), start=start)
            except TimeoutError:
                pytest.fail(f"not every stretch was shown in its state: "
                            f"{ {stretches[i][0]: sorted(p) for i, p in seen.items()} }\n{agent.log()[-3000:]}")
            start = next(k for k in range(start, len(recorder.messages)) if recorder.messages[k] is m) + 1
            if m.topic == t.state:
                posture = m.json()["posture"]
            elif posture is not None:  # the snapshot of the frame that changed the posture
                seen[which_stretch(m.payload, stretches)].add(posture)
    for i, postures in seen.items():
        name, _, person = stretches[i]
        wrong = postures - set(PERSON) if person else postures - {"absent"}
        assert not wrong, f"{name} ({'a person' if person else 'empty'}) went {sorted(wrong)}: {seen}"
    assert "Traceback" not in agent.log()
