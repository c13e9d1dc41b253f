"""The live view never waits for pose (issue 14).

On a Pi a pose frame takes several times the 100 ms a 10 frames/s live view allows, and on
a busy machine some do. The stream has its own thread that takes camera frames as they
arrive, so a slow (here: stuck) pose leaves the picture flowing and only the skeleton
stale. The in-process agent runs real MediaPipe on the demo scene against the real (amqtt)
broker; the gate in front of the estimator is what stands for a slow CPU: it holds the
pipeline thread inside estimate() for as long as the test wants.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from deskpulse.agent import Agent
from deskpulse.config import load_config
from deskpulse.pose import MediaPipePose, Pose
from deskpulse.topics import Topics

from .support import Recorder, wait_until

pytestmark = pytest.mark.slow


class Gate:
    """The real estimator behind a gate the test can close: a pose that takes forever."""

    def __init__(self) -> None:
        self.real = MediaPipePose()
        self.open = threading.Event()
        self.open.set()
        self.stuck = threading.Event()  # the pipeline is inside estimate(), held

    def estimate(self, rgb: np.ndarray) -> Pose | None:
        if not self.open.is_set():
            self.stuck.set()
            self.open.wait(120)
        return self.real.estimate(rgb)

    def close(self) -> None:
        self.open.set()
        self.real.close()


@pytest.fixture
def gated(broker, tmp_path: Path) -> Iterator[tuple[Agent, Gate]]:
    gate = Gate()
    agent = Agent(load_config(None, {"camera.source": "demo", "mqtt.broker": f"mqtt://127.0.0.1:{broker.port}",
                                     "device_id": "live1", "data_dir": str(tmp_path / "d"),
                                     "homeassistant.enabled": False}, env={}), estimator=gate)
    agent.start()
    try:
        yield agent, gate
    finally:
        gate.open.set()
        agent.stop()


def watching(recorder: Recorder) -> Topics:
    """A page opens the live view (its own lease) and its first picture arrives."""
    t = Topics("deskpulse", "live1")
    recorder.wait_topic(t.state, lambda m: m.json()["camera"] == "ok", timeout=60)
    recorder.publish(t.request("stream"), json.dumps({"lease_s": 60, "viewer": "page-1"}))
    recorder.wait_topic(t.frame, timeout=30)
    return t


def test_the_live_view_keeps_its_pictures_coming_while_pose_is_stuck(gated, recorder) -> None:
    agent, gate = gated
    t = watching(recorder)
    gate.open.clear()
    assert gate.stuck.wait(30), "the pipeline never reached the closed gate"
    mark = recorder.mark()
    # Ten pictures while pose is held: the picture flows, and it moves (the demo sways).
    recorder.wait_for(lambda m: sum(1 for x in recorder.messages[mark:] if x.topic == t.frame) >= 10,
                      timeout=30, start=mark)
    pictures = [m.payload for m in recorder.messages[mark:] if m.topic == t.frame]
    assert all(p[:2] == b"\xff\xd8" for p in pictures)
    assert len(set(pictures)) >= 5, "the live view repeated one picture instead of the camera's"
    assert agent.pipeline is not None and agent.pipeline.alive()
    gate.open.set()
    # Pose runs again and the pipeline goes on: its next health message follows.
    after = recorder.mark()
    recorder.wait_topic(t.health, timeout=30, start=after)


def test_a_released_lease_stops_the_pictures_even_while_pose_is_stuck(gated, recorder) -> None:
    agent, gate = gated
    t = watching(recorder)
    stream, capture = agent.pipeline.stream, agent.capture  # type: ignore[union-attr]
    assert capture is not None
    # The page closes its live view; the release is a pipeline command, carried out
    # before the gate closes (pose then holds the pipeline thread).
    recorder.publish(t.request("stream"), json.dumps({"enable": False, "viewer": "page-1"}))
    wait_until(lambda: not stream.wanted(stream.mono()), timeout=30, what="the lease released")
    gate.open.clear()
    assert gate.stuck.wait(30)
    frame = capture.newer(0, 10)
    assert frame is not None
    encoded = stream.encoded
    # The camera goes on delivering frames; none of them is encoded.
    for _ in range(5):
        later = capture.newer(frame.seq, 10)
        assert later is not None, "the camera stopped"
        frame = later
    assert stream.encoded == encoded
