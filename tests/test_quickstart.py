"""The README's quick start on a fresh clone: `git clone` of this repository, `./run.sh` once,
and the page is live (served by the package installed into the clone's own .venv, with its
mqtt.js) and shows the real agent's posture in headless Chromium.

The clone sets up its own .venv with the real pip (its cache makes a second run quick) and
fetches mqtt.js with npm, exactly as a user's first run does; `HEAD` is what is cloned, so
uncommitted work is not in it. Ports, the data directory and the device id come in through
DESKPULSE_* variables, so nothing here uses a fixed port. The page is opened at the address
the run printed, login link included when there is one.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest

from deskpulse.broker import broker_answers

from .photos import astronaut
from .support import ROOT, agent_env, free_port
from .test_dashboard_browser import browser, expect, page  # noqa: F401  (Debian chromium, Playwright)

pytestmark = pytest.mark.slow

# A first run downloads and installs the pinned packages; a loaded 2-core machine is slow.
SETUP_TIMEOUT_S = 1200.0
DEVICE = "quickstart"
# The lines a user needs on the first screen: the setup scripts' one-line steps, DeskPulse's
# own log lines and where the dashboard is. Anything else (pip, npm, apt, MediaPipe's C++
# logging, amqtt's warnings) is noise that makes a first run look broken.
SETUP_LINE = re.compile(r"^(setup_venv|fetch_mqttjs|installing Debian packages)\b")
OWN_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING)\s+(deskpulse|web)[\w.]*: ")
URL = re.compile(r"http://\S+")


@dataclass
class Quickstart:
    clone: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    url: str  # the dashboard's address exactly as the run printed it

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def browser_session() -> urllib.request.OpenerDirector:
    """An HTTP client that keeps cookies, as a browser does after opening the login link."""
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def get(url: str, session: urllib.request.OpenerDirector | None = None,
        timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with (session or browser_session()).open(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def dashboard_urls(text: str) -> list[str]:
    """The addresses printed on a line about the dashboard (or on the line after it)."""
    lines = text.splitlines()
    found: list[str] = []
    for i, line in enumerate(lines):
        if "dashboard" in line.lower():
            for near in lines[i:i + 2]:
                found += [u.rstrip(".,;)") for u in URL.findall(near)]
    return list(dict.fromkeys(found))


def page_url(text: str) -> str | None:
    """The address that opens the page, as printed: the login link (?token=...) when there is
    one, else the plain address once it serves the page's assets without a login. None until
    the run has printed it."""
    urls = dashboard_urls(text)
    with_token = [u for u in urls if "token=" in u]
    if with_token:
        return with_token[-1]
    if urls and get(origin(urls[-1]) + "/static/app.js")[0] == 200:
        return urls[-1]
    return None


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the agent stops cleanly); the whole group if a setup step is still running."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Quickstart]:
    base = tmp_path_factory.mktemp("quickstart")
    clone = base / "deskpulse"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120,
                   stdin=subprocess.DEVNULL)
    photo = astronaut(base / "astronaut.jpg")
    env = agent_env(
        DESKPULSE_WEB_HOST="127.0.0.1", DESKPULSE_WEB_PORT=str(free_port()),
        DESKPULSE_WEB_WS_HOST="127.0.0.1", DESKPULSE_WEB_WS_PORT=str(free_port()),
        DESKPULSE_MQTT_EMBEDDED_PORT=str(free_port()), DESKPULSE_MQTT_EMBEDDED_WS_PORT=str(free_port()),
        DESKPULSE_DATA_DIR=str(base / "data"), DESKPULSE_DEVICE_ID=DEVICE,
    )
    log_path = base / "run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["./run.sh", "--source", str(photo)], cwd=str(clone), env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + SETUP_TIMEOUT_S
        while (url := page_url(log_path.read_text(errors="replace"))) is None:
            if proc.poll() is not None:
                pytest.fail(f"./run.sh exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"./run.sh printed no dashboard address in {SETUP_TIMEOUT_S:.0f} s:\n"
                            f"{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        yield Quickstart(clone, proc, log_path, url)
    finally:
        stop(proc)
        shutil.rmtree(clone, ignore_errors=True)  # its .venv is about 1 GB


@pytest.mark.browser
def test_first_run_serves_a_live_page(quickstart: Quickstart, page: Any) -> None:
    status, body = get(origin(quickstart.url) + "/healthz")
    assert status == 200, body
    assert json.loads(body)["mqtt_js"] is True
    page.goto(quickstart.url)
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=30_000)
    # The real agent, real MediaPipe, on the astronaut photo: a frontal, upright portrait.
    expect(page.locator("#posture-title")).to_have_text("Good posture", timeout=90_000)


def test_first_screen_says_where_the_page_is_and_nothing_else(quickstart: Quickstart) -> None:
    text = quickstart.log()
    lines = [line for line in text.splitlines() if line.strip()]
    printed = set(dashboard_urls(text))
    noise = [line for line in lines if not (SETUP_LINE.match(line) or OWN_LOG_LINE.match(line)
                                            or "dashboard" in line.lower() or line.strip() in printed)]
    assert not noise, "\n".join(noise)
    assert quickstart.url in text
    assert any("source image" in line and "astronaut.jpg" in line for line in lines)  # which source
    if not broker_answers("127.0.0.1", 1883):  # else `auto` rightly uses the broker found there
        assert any("embedded MQTT broker listening" in line for line in lines)  # which broker


def test_installed_console_script_serves_the_page_and_mqttjs(quickstart: Quickstart, tmp_path: Path) -> None:
    venv = quickstart.clone / ".venv"
    # The package in .venv, not the checkout: that copy must carry the vendored mqtt.js.
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import web.app as a; print(a.MQTT_JS)"],
                           cwd=str(tmp_path), capture_output=True, text=True, check=True, timeout=60)
    installed = Path(where.stdout.strip())
    assert installed.is_relative_to(venv) and installed.is_file(), installed
    env = agent_env(DESKPULSE_WEB_HOST="127.0.0.1", DESKPULSE_WEB_PORT=str(free_port()),
                    DESKPULSE_WEB_WS_HOST="127.0.0.1", DESKPULSE_WEB_WS_PORT=str(free_port()),
                    DESKPULSE_DATA_DIR=str(tmp_path / "data"), DESKPULSE_DEVICE_ID=DEVICE)
    log_path = tmp_path / "web.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(venv / "bin" / "deskpulse"), "web"], cwd=str(tmp_path), env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while (url := page_url(log_path.read_text(errors="replace"))) is None:
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        session = browser_session()
        status, body = get(url, session)  # the page (and the login, when the link carries one)
        assert status == 200, body
        assert b"/static/vendor/mqtt.min.js" in body
        status, body = get(origin(url) + "/healthz", session)
        assert status == 200, body
        status, bundle = get(origin(url) + "/static/vendor/mqtt.min.js", session)
        assert status == 200
        assert bundle == installed.read_bytes() == (quickstart.clone / "web" / "node_modules" / "mqtt" / "dist"
                                                    / "mqtt.min.js").read_bytes()
    finally:
        stop(proc)
