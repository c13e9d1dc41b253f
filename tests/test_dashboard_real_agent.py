"""The page against the real agent: real MediaPipe on a real photo, the shipped mosquitto
config and ACL, the relay, headless Debian chromium. The other browser tests play the agent
with paho to reach every state; this one checks the real thing end to end."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any, Iterator

import pytest

from deskpulse.config import Config
from web.server import WebServer

from .photos import astronaut
from .support import AgentProcess, Mosquitto, free_port
from .test_dashboard_browser import (AGENT, DEVICE, LOGIN_TOKEN, VIEWER, WAIT_MS, browser,  # noqa: F401
                                     connected, expect, frame_shown, page, render_mosquitto)

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto, pytest.mark.slow]


@pytest.fixture
def real_stack(tmp_path: Path) -> Iterator[tuple[Mosquitto, WebServer, AgentProcess]]:
    mosq = Mosquitto()
    render_mosquitto(mosq, free_port())
    mosq.start()
    config = Config.model_validate({
        "device_id": DEVICE, "mqtt": {"broker": f"mqtt://127.0.0.1:{mosq.port}"},
        "web": {"host": "127.0.0.1", "port": 0, "ws_host": "127.0.0.1", "ws_port": 0,
                "viewer_username": VIEWER[0], "viewer_password": VIEWER[1], "token": LOGIN_TOKEN},
    })
    server = WebServer(config).start()
    agent = AgentProcess(mosq.port, str(astronaut(tmp_path / "a.jpg")), DEVICE, tmp_path / "d",
                         env={"DESKPULSE_MQTT_USERNAME": AGENT[0], "DESKPULSE_MQTT_PASSWORD": AGENT[1]})
    agent.start()
    try:
        yield mosq, server, agent
    finally:
        agent.stop()
        server.stop()
        mosq.stop()
        shutil.rmtree(mosq.dir, ignore_errors=True)


def test_real_agent_state_frames_and_death(real_stack, page: Any) -> None:
    mosq, server, agent = real_stack
    page.goto(server.login_url("127.0.0.1"))  # the token link logs the browser in
    connected(page)
    expect(page.locator("#posture-title")).to_have_text("Good posture", timeout=60_000)
    expect(page.locator("#health")).to_contain_text("fps", timeout=WAIT_MS * 2)
    page.locator("#stream-toggle").check(force=True)  # asks the agent for a frame lease
    frame_shown(page)
    # The astronaut photo (512 wide), with the pose overlay, straight from the agent; the
    # agent keeps streaming, so wait rather than read once between two pictures.
    page.wait_for_function("() => document.getElementById('feed-img').naturalWidth === 512", timeout=WAIT_MS)
    agent.signal(signal.SIGKILL)
    expect(page.locator("#posture-title")).to_have_text("Agent offline", timeout=60_000)
