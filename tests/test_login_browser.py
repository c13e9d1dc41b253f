"""The dashboard's login in Debian's headless chromium, against Debian mosquitto with the shipped
ACL, through `WebServer`: the printed token link, the password form, logout, and what a browser
without a session (or a page from another origin with one) can reach. Waits are Playwright
expectations with timeouts.
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from deskpulse.config import Config
from web.auth import COOKIE, hash_password
from web.server import WebServer

from . import fixtures
from .test_dashboard_browser import (  # noqa: F401  (fixtures: browser, stack)
    DEVICE, LOGIN_TOKEN, VIEWER, WAIT_MS, FramePump, Stack, browser, connected, expect, frame_shown, stack,
    test_jpeg)

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto]

PASSWORD = "chromium typed this"

# What a page can find out about a WebSocket from JavaScript: whether it opened.
TRY_WS = """url => new Promise(done => {
  const ws = new WebSocket(url, "mqtt");
  ws.onopen = () => { ws.close(); done("open"); };
  ws.onerror = () => done("refused");
})"""


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield ctx
    finally:
        ctx.close()


def good_agent(stack: Stack) -> None:
    stack.agent.online()
    stack.agent.state("good")
    stack.agent.stats()
    stack.agent.health()


def test_token_link_logs_in_and_leaves_the_address_bar(stack: Stack, context: Any) -> None:
    good_agent(stack)
    page = context.new_page()
    page.goto(stack.url)
    root = f"http://127.0.0.1:{stack.server.port}/"
    assert page.url == root  # the token is gone from the address bar
    connected(page)
    expect(page.locator("#posture-title")).to_have_text("Good posture", timeout=WAIT_MS)
    cookie = next(c for c in context.cookies() if c["name"] == COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
    assert cookie["expires"] > 0  # not a session-only cookie: web.session_hours
    assert page.evaluate("document.cookie") == ""  # HttpOnly: the page's scripts cannot read it
    assert LOGIN_TOKEN not in page.content()
    # A reload keeps the login.
    page.reload()
    connected(page)


def test_a_browser_without_a_session_sees_the_login_page_and_no_frame(stack: Stack, context: Any,
                                                                       browser: Any) -> None:
    good_agent(stack)
    viewer = context.new_page()
    viewer.goto(stack.url)
    connected(viewer)
    lease = stack.agent.wait_request("stream")
    stack.agent.answer("stream", lease, data=fixtures.data("stream", streaming=True, lease_s=30, fps=10.0))
    pump = FramePump(stack.agent, test_jpeg()).start()
    stranger_ctx = browser.new_context()
    try:
        frame_shown(viewer)  # frames are flowing to the logged-in page
        stranger = stranger_ctx.new_page()
        sockets: list[str] = []
        stranger.on("websocket", lambda ws: sockets.append(ws.url))
        stranger.goto(f"http://127.0.0.1:{stack.server.port}/")
        assert stranger.url == f"http://127.0.0.1:{stack.server.port}/login"
        expect(stranger.locator("#password")).to_be_visible()
        assert stranger.locator("#feed-img").count() == 0 and stranger.locator("#posture").count() == 0
        assert sockets == []
        # Trying the way in by hand gets nothing either.
        assert stranger.evaluate("() => fetch('config.json').then(r => r.status)") == 401
        assert stranger.evaluate("() => fetch('static/app.js').then(r => r.status)") == 401
        ws_url = f"ws://127.0.0.1:{stack.server.ws_port}/mqtt"
        assert stranger.evaluate(TRY_WS, ws_url) == "refused"
        assert viewer.evaluate(TRY_WS, ws_url) == "open"  # the control: the logged-in page may
    finally:
        pump.stop()
        stranger_ctx.close()


class _ElsewherePage(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>a page elsewhere</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def elsewhere() -> Iterator[str]:
    """Another web site: another origin on the same host, so even SameSite=Strict sends the cookie."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ElsewherePage)
    thread = threading.Thread(target=server.serve_forever, name="test-elsewhere", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_another_site_in_the_same_browser_cannot_open_the_relay(stack: Stack, context: Any,
                                                                 elsewhere: str) -> None:
    """Cross-site WebSocket hijacking: the user is logged in, and another page they visit tries
    the relay from their browser. Its upgrade carries the user's cookie; the Origin stops it."""
    page = context.new_page()
    page.goto(stack.url)
    connected(page)
    evil = context.new_page()
    evil.goto(elsewhere)
    ws_url = f"ws://127.0.0.1:{stack.server.ws_port}/mqtt"
    assert evil.evaluate(TRY_WS, ws_url) == "refused"
    assert page.evaluate(TRY_WS, ws_url) == "open"  # the control: the dashboard itself may


def test_password_form_and_logout(stack: Stack, context: Any, tmp_path: Path) -> None:
    good_agent(stack)
    pw_file = tmp_path / "dashboard-password"
    pw_file.write_text(hash_password(PASSWORD) + "\n")
    config = Config.model_validate({
        "device_id": DEVICE, "data_dir": str(tmp_path),
        "mqtt": {"broker": f"mqtt://127.0.0.1:{stack.mosquitto.port}"},
        "web": {"host": "127.0.0.1", "port": 0, "ws_host": "127.0.0.1", "ws_port": 0, "auth": "password",
                "password_file": str(pw_file), "viewer_username": VIEWER[0], "viewer_password": VIEWER[1]},
    })
    with WebServer(config) as server:
        page = context.new_page()
        page.goto(server.login_url("127.0.0.1"))
        expect(page.locator("label[for=password]")).to_have_text("Dashboard password")
        page.fill("#password", "not the password")
        page.click("button[type=submit]")
        expect(page.locator("#login-error")).to_contain_text("not right")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")  # Chromium's own POST: its Origin header must pass
        connected(page)
        expect(page.locator("#posture-title")).to_have_text("Good posture", timeout=WAIT_MS)
        session = next(c["value"] for c in context.cookies() if c["name"] == COOKIE)

        page.click("#logout-btn")
        expect(page.locator("#password")).to_be_visible()
        assert page.url.endswith("/login")
        page.goto(server.login_url("127.0.0.1"))
        assert page.url.endswith("/login")  # logged out for good
        # The old cookie, replayed, is refused by the server itself.
        context.add_cookies([{"name": COOKIE, "value": session, "url": server.login_url("127.0.0.1")}])
        assert page.evaluate("() => fetch('config.json').then(r => r.status)") == 401
