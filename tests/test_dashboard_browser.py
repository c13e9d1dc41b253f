"""The dashboard in Debian's headless chromium, against Debian mosquitto with the project's own
ACL and accounts, through `WebServer` (Flask + the WebSocket relay).

The agent is played by the test with paho, following topic contract v1 exactly; the page is
only ever observed through its DOM. Waits are Playwright expectations with timeouts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from deskpulse.config import Config
from deskpulse.topics import Topics
from web.app import MQTT_JS
from web.server import WebServer

from . import fixtures
from .schema_check import js_reasons
from .support import ROOT, Mosquitto, Recorder, free_port

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"]
DEVICE = "desk1"
T = Topics("deskpulse", DEVICE)
AGENT = ("agent", "agent-test-pw")
VIEWER = ("viewer", "viewer-test-pw")
# The dashboard's login token (web.token); Stack.url is the token link `deskpulse up` prints.
LOGIN_TOKEN = "browser-test-login-token-0123456789"
# A second desk with its own agent account (the shipped ACL grants one device per agent).
SECOND = ("study", "agent-study", "study-test-pw")
WAIT_MS = 10_000
# The README's screenshots are refreshed only on request (DESKPULSE_SCREENSHOTS=1): a test run
# leaves the checkout as it found it.
SCREENSHOTS = ROOT / "docs" / "screenshots"


def screenshot(page: Any, name: str, tmp: Path) -> None:
    target = SCREENSHOTS if os.environ.get("DESKPULSE_SCREENSHOTS") == "1" else tmp
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / name), full_page=True)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_jpeg() -> bytes:
    """A real 640x480 JPEG of a person (public-domain NASA portrait), as the agent sends."""
    import cv2
    from skimage import data

    img = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (640, 480))
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 70])
    assert ok
    return buf.tobytes()


test_jpeg.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


# ---------- the broker, configured as the project ships it ----------

def render_mosquitto(m: Mosquitto, lan_port: int) -> None:
    """The shipped mosquitto.conf and config/acl with their placeholders filled in for loopback."""
    template = next((p for p in (ROOT / "mosquitto.conf", ROOT / "config" / "mosquitto.conf") if p.is_file()), None)
    acl_template = ROOT / "config" / "acl"
    if template is None or not acl_template.is_file():
        pytest.fail("the project's mosquitto.conf / config/acl templates are missing")
    os.chmod(m.dir, 0o755)  # mosquitto drops root; it must reach these files
    passwd, acl, db = m.dir / "passwd", m.dir / "acl", m.dir / "db"
    passwd.write_text("")
    for user, pw in (AGENT, VIEWER, SECOND[1:]):
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, pw], check=True, capture_output=True)
    acl.write_text(acl_template.read_text().replace("@PREFIX@", T.prefix).replace("@DEVICE_ID@", DEVICE)
                   .replace("@HA_PREFIX@", "homeassistant")
                   + f"\nuser {SECOND[1]}\ntopic readwrite {T.prefix}/{SECOND[0]}/#\n")
    db.mkdir()
    os.chmod(db, 0o777)
    for f in (passwd, acl):
        os.chmod(f, 0o644)
    conf = template.read_text()
    for key, value in {"PASSWORD_FILE": passwd, "ACL_FILE": acl, "MQTT_PORT": lan_port, "MQTT_BIND": "127.0.0.1",
                       "MQTT_LOCAL_PORT": m.port}.items():
        conf = conf.replace(f"@{key}@", str(value))
    left = re.findall(r"@[A-Z_]+@", conf)
    assert not left, f"mosquitto.conf has placeholders this test does not know: {left}"
    # Debian's stock mosquitto.conf sets these; the drop-in deliberately does not.
    m.conf_body = conf + f"\npersistence_location {db}/\nlog_dest stderr\n"


# ---------- the agent, played by the test ----------

class FakeAgent:
    """Publishes what the agent would, on contract v1 topics, as the `agent` account."""

    def __init__(self, port: int, device: str = DEVICE, account: tuple[str, str] = AGENT) -> None:
        self.t = Topics("deskpulse", device)
        self.rec = Recorder(port, topics=f"{self.t.base}/#", username=account[0], password=account[1])
        self.seq = 0

    def online(self, value: str = "online") -> None:
        self.rec.publish(self.t.availability, value, qos=1, retain=True)

    def state(self, posture: str, bad_for_s: float = 0.0, **over: Any) -> dict[str, Any]:
        """The agent's own state payload (tests/fixtures.py: payloads.state_payload)."""
        self.seq += 1
        body = fixtures.state(posture, bad_for_s=bad_for_s, seq=self.seq, **over)
        self.rec.publish(self.t.state, json.dumps(body), qos=1, retain=True)
        return body

    def stats(self) -> None:
        """Today's stats from a real Tracker (tests/fixtures.py), laid out as if it were 13:00
        local time now, whatever the clock says, so the screenshots look the same at any hour:
        desk time from 08:00 with every posture."""
        self.rec.publish(self.t.stats, json.dumps(fixtures.stats(local_hour=13)), qos=1, retain=True)

    def health(self) -> None:
        self.rec.publish(self.t.health, json.dumps(fixtures.health()), qos=0, retain=True)

    def alert(self, kind: str = "bad_posture") -> dict[str, Any]:
        body = fixtures.alert(kind)
        self.rec.publish(self.t.alert, json.dumps(body), qos=1)
        return body

    def wait_request(self, verb: str, start: int = 0) -> dict[str, Any]:
        msg = self.rec.wait_topic(self.t.request(verb), timeout=WAIT_MS / 1000, start=start)
        assert not msg.retain
        body = msg.json()
        assert isinstance(body, dict) and body.get("transaction"), body
        return body

    def answer(self, verb: str, request: dict[str, Any], status: str = "ok", data: Any = None,
               error: str | None = None, final: bool = True) -> None:
        """Answer with deskpulse/requests.py's own envelope: progress answers carry "final": false."""
        body = fixtures.answer(request, data, final=final) if status == "ok" else fixtures.refusal(request, error or "")
        self.rec.publish(self.t.response(verb), json.dumps(body), qos=1)

    def close(self) -> None:
        self.rec.close()


class FramePump:
    """Sends JPEG frames at ~10 fps while running, as the agent does while a lease is held."""

    def __init__(self, agent: FakeAgent, jpeg: bytes) -> None:
        self.agent, self.jpeg = agent, jpeg
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-frame-pump", daemon=True)

    def start(self) -> "FramePump":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.agent.rec.client.publish(self.agent.t.frame, self.jpeg, qos=0, retain=False)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


# ---------- fixtures ----------

@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian chromium is not installed")
    if not MQTT_JS.is_file():
        pytest.fail(f"{MQTT_JS} is missing: run scripts/fetch_mqttjs.sh")
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Stack:
    def __init__(self) -> None:
        self.mosquitto = Mosquitto()
        render_mosquitto(self.mosquitto, free_port())
        self.mosquitto.start()
        config = Config.model_validate({
            "device_id": DEVICE,
            "mqtt": {"broker": f"mqtt://127.0.0.1:{self.mosquitto.port}"},
            "web": {"host": "127.0.0.1", "port": 0, "ws_host": "127.0.0.1", "ws_port": 0,
                    "viewer_username": VIEWER[0], "viewer_password": VIEWER[1], "token": LOGIN_TOKEN},
        })
        self.server = WebServer(config).start()
        self.url = self.server.login_url("127.0.0.1")  # logs the browser in, then sends it on to /
        self.agent = FakeAgent(self.mosquitto.port)

    def stop_broker(self) -> None:
        self.mosquitto.stop()
        # support.Mosquitto leaves its log file open; close it (filterwarnings=error).
        log = getattr(self.mosquitto, "log", None)
        if log is not None and not log.closed:
            log.close()

    def close(self) -> None:
        self.agent.close()
        self.server.stop()
        self.stop_broker()
        shutil.rmtree(self.mosquitto.dir, ignore_errors=True)


@pytest.fixture
def stack() -> Iterator[Stack]:
    s = Stack()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    pg.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        yield pg
    finally:
        context.close()
    assert not problems, problems


def connected(page: Any) -> None:
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=WAIT_MS)


def card_colour(page: Any, rgb: str) -> None:
    """The posture card has finished its colour transition to `rgb` (the palette colour)."""
    page.wait_for_function(
        "rgb => getComputedStyle(document.getElementById('posture')).backgroundColor === rgb", arg=rgb,
        timeout=WAIT_MS)


GOOD_RGB, BAD_RGB, GRAY_RGB = "rgb(16, 185, 129)", "rgb(245, 158, 11)", "rgb(107, 114, 128)"


def frame_shown(page: Any) -> None:
    page.wait_for_function(
        "() => { const i = document.getElementById('feed-img');"
        " return !i.hidden && i.complete && i.naturalWidth > 0 && i.src.startsWith('blob:'); }",
        timeout=WAIT_MS)


# ---------- tests ----------

def test_retained_state_then_live_change_frames_and_screenshots(stack: Stack, page: Any, tmp_path: Path) -> None:
    agent = stack.agent
    agent.online()
    agent.state("good")
    agent.stats()
    agent.health()

    mark = agent.rec.mark()
    page.goto(stack.url)
    connected(page)
    # Retained state published before the page loaded.
    expect(page.locator("#posture-title")).to_have_text("Good posture", timeout=WAIT_MS)
    expect(page.locator("#posture")).to_have_attribute("data-state", "good")
    expect(page.locator("#good-pct")).not_to_have_text("–", timeout=WAIT_MS)
    expect(page.locator("#timeline-bar .seg-bad").first).to_be_attached(timeout=WAIT_MS)
    expect(page.locator("#health")).to_contain_text("9.8 fps", timeout=WAIT_MS)

    # The visible page asks for frames with a lease; the agent answers and starts sending.
    lease = agent.wait_request("stream", start=mark)
    assert lease["lease_s"] == 45 and lease["viewer"]  # this page's own lease (test_lease_browser.py)
    agent.answer("stream", lease, data=fixtures.data("stream", streaming=True, lease_s=45, fps=10.0))
    pump = FramePump(agent, test_jpeg()).start()
    try:
        frame_shown(page)
        # The pump keeps sending: between two frames the next picture may still be decoding.
        page.wait_for_function("() => document.getElementById('feed-img').naturalWidth === 640",
                               timeout=WAIT_MS)
        expect(page.locator("#live")).to_be_visible()
        expect(page.locator("#feed-placeholder")).to_be_hidden()
        card_colour(page, GOOD_RGB)
        screenshot(page, "dashboard-good.png", tmp_path)

        # A state change appears without a reload.
        page.evaluate("window.__sameDocument = true")
        bad = agent.state("bad", bad_for_s=42.0)
        agent.alert()
        expect(page.locator("#posture-title")).to_have_text("Bad posture", timeout=WAIT_MS)
        expect(page.locator("#posture")).to_have_attribute("data-state", "bad")
        expect(page.locator("#streak")).to_be_visible()
        # The hint for the first reason the classifier gave (render.js REASONS, keyed by posture.REASONS).
        expect(page.locator("#posture-message")).to_have_text(js_reasons()[bad["metrics"]["reasons"][0]])
        assert int(page.locator("#streak-value").inner_text()) >= 42
        expect(page.locator("#alert-banner")).to_contain_text("slouching for 10 minutes", timeout=WAIT_MS)
        assert page.evaluate("window.__sameDocument") is True
        frame_shown(page)
        card_colour(page, BAD_RGB)
        screenshot(page, "dashboard-bad.png", tmp_path)
        page.set_viewport_size({"width": 390, "height": 844})
        frame_shown(page)
        screenshot(page, "dashboard-phone.png", tmp_path)
        page.set_viewport_size({"width": 1280, "height": 900})
        page.click("#alert-dismiss")
        expect(page.locator("#alert-banner")).to_be_hidden()
    finally:
        pump.stop()
    # Frames stopped: the recording indicator goes away and the placeholder returns.
    expect(page.locator("#live")).to_be_hidden(timeout=WAIT_MS)
    expect(page.locator("#feed-placeholder")).to_be_visible()
    assert page.get_attribute("#feed-img", "src") is None


def test_stream_toggle_off_stops_showing_and_renewing(stack: Stack, page: Any) -> None:
    stack.agent.online()
    stack.agent.state("good")
    page.goto(stack.url)
    connected(page)
    page.click(".switch")
    expect(page.locator("#feed-placeholder-text")).to_have_text("Live view is off", timeout=WAIT_MS)
    mark = stack.agent.rec.mark()
    stack.agent.rec.publish(T.frame, test_jpeg(), qos=0)
    # The toggle persists across a reload, and with it off the page asks for no frames.
    page.reload()
    connected(page)
    expect(page.locator("#stream-toggle")).not_to_be_checked()
    stack.agent.rec.publish(T.frame, test_jpeg(), qos=0)
    expect(page.locator("#feed-img")).to_be_hidden()
    assert not [m for m in stack.agent.rec.messages[mark:]
                if m.topic == T.request("stream") and m.json().get("enable") is not False]  # releases are fine


AGENT_SCRIPT = r"""
import sys, time
import paho.mqtt.client as mqtt
port, base, user, pw, state = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="deskpulse-desk1")
c.username_pw_set(user, pw)
c.will_set(base + "/availability", "offline", qos=1, retain=True)
c.connect("127.0.0.1", port, keepalive=30)
c.loop_start()
c.publish(base + "/availability", "online", qos=1, retain=True).wait_for_publish(10)
c.publish(base + "/state", state, qos=1, retain=True).wait_for_publish(10)
print("ready", flush=True)
time.sleep(600)
"""


def test_killed_agent_shows_offline(stack: Stack, page: Any) -> None:
    state = json.dumps(fixtures.state("good", calibrated=False))
    proc = subprocess.Popen([sys.executable, "-c", AGENT_SCRIPT, str(stack.mosquitto.port), T.base, *AGENT, state],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        page.goto(stack.url)
        connected(page)
        expect(page.locator("#posture-title")).to_have_text("Good posture", timeout=WAIT_MS)
        proc.kill()  # no clean disconnect: mosquitto publishes the last will
        expect(page.locator("#posture-title")).to_have_text("Agent offline", timeout=WAIT_MS)
        expect(page.locator("#posture")).to_have_attribute("data-state", "offline")
        card_colour(page, GRAY_RGB)
        expect(page.locator("#feed-placeholder-text")).to_have_text("Agent offline")
        expect(page.locator("#pause-btn")).to_be_disabled()
        expect(page.locator("#device-select option")).to_have_text(f"{DEVICE} · offline")
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def test_broker_restart_shows_reconnecting_then_recovers(stack: Stack, page: Any) -> None:
    stack.agent.online()
    stack.agent.state("good")
    page.goto(stack.url)
    connected(page)
    expect(page.locator("#posture-title")).to_have_text("Good posture", timeout=WAIT_MS)
    page.evaluate("window.__sameDocument = true")

    stack.agent.close()
    stack.stop_broker()
    expect(page.locator("#conn-text")).to_have_text(re.compile("reconnecting", re.I), timeout=WAIT_MS)
    # Never a stale "good posture" while the broker is gone.
    expect(page.locator("#posture-title")).to_have_text("Connection lost")

    stack.mosquitto.start()  # same port, same persistence
    connected(page)
    expect(page.locator("#posture-title")).to_have_text("Good posture", timeout=WAIT_MS)
    stack.agent = FakeAgent(stack.mosquitto.port)
    stack.agent.state("bad", bad_for_s=5.0)
    expect(page.locator("#posture-title")).to_have_text("Bad posture", timeout=WAIT_MS)
    assert page.evaluate("window.__sameDocument") is True


def test_pause_and_calibrate_requests_show_the_responses(stack: Stack, page: Any) -> None:
    agent = stack.agent
    agent.online()
    agent.state("good")
    page.goto(stack.url)
    connected(page)
    expect(page.locator("#pause-btn")).to_be_enabled(timeout=WAIT_MS)

    mark = agent.rec.mark()
    page.select_option("#pause-minutes", "15")
    page.click("#pause-btn")
    request = agent.wait_request("pause", start=mark)
    assert request["minutes"] == 15
    until = datetime.now(timezone.utc) + timedelta(minutes=15)
    answer = fixtures.data("pause", paused=True, until=iso(until.timestamp()))
    agent.answer("pause", {"transaction": "another-page-1"}, data=answer)  # not ours: ignored
    agent.answer("pause", request, data=answer)
    expect(page.locator("#result")).to_have_text(re.compile(r"Paused until \d"), timeout=WAIT_MS)
    expect(page.locator("#result")).to_have_attribute("data-kind", "ok")
    agent.state("paused", until=until.timestamp())
    expect(page.locator("#posture-title")).to_have_text("Paused", timeout=WAIT_MS)
    expect(page.locator("#pause-label")).to_have_text("Resume")

    mark = agent.rec.mark()
    page.click("#pause-btn")
    request = agent.wait_request("resume", start=mark)
    agent.answer("resume", request, status="error", error="not paused")
    expect(page.locator("#result")).to_have_text("Resume failed: not paused", timeout=WAIT_MS)
    expect(page.locator("#result")).to_have_attribute("data-kind", "error")

    mark = agent.rec.mark()
    page.click("#calibrate-btn")
    request = agent.wait_request("calibrate", start=mark)
    agent.answer("calibrate", request, data=fixtures.data("calibrate", stage="collecting", percent=40), final=False)
    expect(page.locator("#calibrate-text")).to_contain_text("40%", timeout=WAIT_MS)
    expect(page.locator("#calibrate-progress")).to_be_visible()
    agent.answer("calibrate", request, status="error", error="no person visible: sit in front of the camera")
    expect(page.locator("#result")).to_have_text(
        "Calibrate failed: no person visible: sit in front of the camera", timeout=WAIT_MS)
    expect(page.locator("#calibrate-progress")).to_be_hidden()

    mark = agent.rec.mark()
    page.click("#calibrate-btn")
    request = agent.wait_request("calibrate", start=mark)
    agent.answer("calibrate", request, data=fixtures.data("calibrate", stage="collecting", percent=99), final=False)
    expect(page.locator("#calibrate-text")).to_contain_text("99%", timeout=WAIT_MS)
    agent.answer("calibrate", request, data=fixtures.data("calibrate", stage="done", percent=100,
                                                           baseline=fixtures.BASELINE.to_json()))
    expect(page.locator("#result")).to_have_text(re.compile("^Calibrated"), timeout=WAIT_MS)
    expect(page.locator("#calibrate-progress")).to_be_hidden()


def test_many_devices_are_listed_and_the_choice_is_remembered(stack: Stack, page: Any) -> None:
    stack.agent.online()
    stack.agent.state("good")
    other = FakeAgent(stack.mosquitto.port, device=SECOND[0], account=SECOND[1:])
    try:
        other.online()
        other.state("bad", bad_for_s=12.0)
        page.goto(stack.url)
        connected(page)
        select = page.locator("#device-select")
        expect(select).to_have_value(DEVICE, timeout=WAIT_MS)
        expect(page.locator("#device-select option")).to_have_text(
            [f"{DEVICE} · good", f"{SECOND[0]} · bad"], timeout=WAIT_MS)
        expect(page.locator("#posture-title")).to_have_text("Good posture")

        page.select_option("#device-select", SECOND[0])
        expect(page.locator("#posture-title")).to_have_text("Bad posture", timeout=WAIT_MS)
        page.reload()
        connected(page)
        expect(select).to_have_value(SECOND[0], timeout=WAIT_MS)
        expect(page.locator("#posture-title")).to_have_text("Bad posture", timeout=WAIT_MS)

        # Requests go to the chosen desk.
        mark = other.rec.mark()
        page.click("#pause-btn")
        other.answer("pause", other.wait_request("pause", start=mark), data=fixtures.data("pause", paused=True, until=None))
        expect(page.locator("#result")).to_have_text("Paused until you resume.", timeout=WAIT_MS)
    finally:
        other.close()
