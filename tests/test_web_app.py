"""The dashboard's Flask app, its login (web/auth.py) and WebServer without a browser: sessions,
cookies, the token link, the password form, rate limiting, logout, what answers without a
session, /config.json, /healthz, headers, relay-target parsing, `deskpulse passwd`, and the
server wiring its relay to the broker (embedded amqtt)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any, Iterator

import paho.mqtt.client as mqtt
import pytest
from argon2 import PasswordHasher
from hypothesis import given
from hypothesis import strategies as st
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from deskpulse.config import Config, load_config
from deskpulse.errors import ConfigError
from deskpulse.passwd import passwd_command
from web import auth
from web.app import MQTT_JS_MISSING, create_app
from web.auth import COOKIE, Credentials, Guard, LoginLimiter, Sessions, cookie_value, hash_password
from web.server import WebServer, parse_target, relay_target_of

from .support import ROOT, Recorder, agent_env

TOKEN = "0123456789abcdef0123456789abcdef"
PASSWORD = "correct horse battery"


def make_config(**sections: Any) -> Config:
    return Config.model_validate({"device_id": "desk1", **sections})


def token_guard(config: Config, token: str = TOKEN) -> Guard:
    return Guard(config, Credentials("token", token=token))


def password_guard(config: Config, path: Path, password: str = PASSWORD) -> Guard:
    path.write_text(hash_password(password) + "\n")
    return Guard(config, Credentials("password", password_file=path))


@pytest.fixture
def vendor(tmp_path: Path) -> Path:
    path = tmp_path / "mqtt.min.js"
    path.write_text("var mqtt = {};")
    return path


def client_for(config: Config, vendor: Path | None = None, *, guard: Guard | None = None,
               logged_in: bool = True, **kw: Any) -> Any:
    app = create_app(config, guard=guard or token_guard(config), **kw)
    if vendor is not None:
        app.config["DESKPULSE_MQTT_JS"] = vendor
    client = app.test_client()
    if logged_in:
        assert client.get(f"/?token={TOKEN}").status_code == 303
    return client


def session_of(client: Any) -> str:
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    return str(cookie.value)


# ---------- what answers without a session ----------

@pytest.mark.parametrize("path", ["/config.json", "/static/app.js", "/static/connection.js",
                                  "/static/topics.js", "/static/vendor/mqtt.min.js"])
def test_data_and_app_assets_need_a_session(path: str) -> None:
    resp = client_for(make_config(), logged_in=False).get(path)
    resp.close()
    assert resp.status_code == 401
    assert resp.headers["Cache-Control"] == "no-store"


def test_the_page_sends_strangers_to_the_login_form(vendor: Path) -> None:
    client = client_for(make_config(), vendor, logged_in=False)
    resp = client.get("/")
    assert resp.status_code == 303 and resp.headers["Location"] == "/login"
    login = client.get("/login")
    html = login.get_data(as_text=True)
    assert login.status_code == 200
    assert '<form method="post" action="/login"' in html and 'name="password"' in html
    assert "app.js" not in html and "mqtt.min.js" not in html and "config.json" not in html
    # What the login page needs is public.
    for asset in ("/static/style.css", "/static/favicon.svg"):
        resp = client.get(asset)
        resp.close()
        assert resp.status_code == 200, asset


def test_healthz_is_open_and_says_nothing_private(vendor: Path) -> None:
    config = make_config(web={"viewer_username": "viewer", "viewer_password": "s3cret-viewer"})
    resp = client_for(config, vendor, logged_in=False).get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok", "mqtt_js": True}


def test_healthz_503_names_the_fix_when_mqtt_js_is_missing(tmp_path: Path) -> None:
    client = client_for(make_config(), tmp_path / "absent.js")
    resp = client.get("/healthz")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["status"] == "error" and body["mqtt_js"] is False
    assert "scripts/fetch_mqttjs.sh" in body["error"]
    # The page says so too, instead of silently never connecting.
    assert MQTT_JS_MISSING in client.get("/").get_data(as_text=True)


# ---------- the token link (Jupyter style) ----------

def test_token_link_logs_in_and_leaves_the_address_bar() -> None:
    config = make_config(web={"session_hours": 2})
    client = client_for(config, logged_in=False)
    resp = client.get(f"/?token={TOKEN}")
    assert resp.status_code == 303
    assert resp.headers["Location"] == "/"  # the token is gone from the URL the browser shows
    cookie = resp.headers["Set-Cookie"]
    attrs = {a.strip().split("=", 1)[0].lower(): a.strip() for a in cookie.split(";")[1:]}
    assert cookie.startswith(f"{COOKIE}=")
    assert "httponly" in attrs and attrs["samesite"] == "SameSite=Strict" and attrs["path"] == "Path=/"
    assert attrs["max-age"] == "Max-Age=7200"
    assert "secure" not in attrs  # plain http: a Secure cookie would never come back
    assert TOKEN not in cookie
    assert client.get("/config.json").status_code == 200


def test_cookie_is_secure_over_https() -> None:
    client = client_for(make_config(), logged_in=False)
    resp = client.get(f"/?token={TOKEN}", base_url="https://deskpi.local")
    assert "Secure" in resp.headers["Set-Cookie"]


@pytest.mark.parametrize("wrong", ["", "nope", TOKEN[:-1], TOKEN + "0", TOKEN.upper()])
def test_a_wrong_token_gets_no_session(wrong: str) -> None:
    client = client_for(make_config(), logged_in=False)
    resp = client.get(f"/?token={wrong}")
    assert resp.status_code == 401
    assert "Set-Cookie" not in resp.headers
    assert "not right" in resp.get_data(as_text=True)
    assert client.get("/config.json").status_code == 401


def test_the_token_also_works_in_the_login_form() -> None:
    client = client_for(make_config(), logged_in=False)
    resp = client.post("/login", data={"password": TOKEN}, headers={"Origin": "http://localhost"})
    assert resp.status_code == 303
    assert client.get("/config.json").status_code == 200


# ---------- the password form ----------

def test_password_login(tmp_path: Path) -> None:
    config = make_config()
    client = client_for(config, guard=password_guard(config, tmp_path / "pw"), logged_in=False)
    assert "Dashboard password" in client.get("/login").get_data(as_text=True)
    # In password mode a token link is no way in.
    assert client.get(f"/?token={TOKEN}").status_code == 303
    assert client.get("/config.json").status_code == 401
    wrong = client.post("/login", data={"password": "not it at all"}, headers={"Origin": "http://localhost"})
    assert wrong.status_code == 401 and "Set-Cookie" not in wrong.headers
    ok = client.post("/login", data={"password": PASSWORD}, headers={"Origin": "http://localhost"})
    assert ok.status_code == 303 and ok.headers["Location"] == "/"
    assert "HttpOnly" in ok.headers["Set-Cookie"] and "SameSite=Strict" in ok.headers["Set-Cookie"]
    assert client.get("/config.json").status_code == 200


@pytest.mark.parametrize("origin", [None, "null", "http://evil.example", "http://localhost:8081",
                                    "https://localhost", "http://localhost.evil.example"])
def test_login_form_refuses_other_origins(tmp_path: Path, origin: str | None) -> None:
    """Login CSRF: only the page itself may post the form (SameSite cannot help: no cookie yet)."""
    config = make_config()
    client = client_for(config, guard=password_guard(config, tmp_path / "pw"), logged_in=False)
    headers = {"Origin": origin} if origin is not None else {}
    resp = client.post("/login", data={"password": PASSWORD}, headers=headers)
    assert resp.status_code == 403
    assert "Set-Cookie" not in resp.headers


def test_logout_ends_the_session_on_the_server() -> None:
    client = client_for(make_config())
    old = session_of(client)
    resp = client.post("/logout", headers={"Origin": "http://localhost"})
    assert resp.status_code == 303 and resp.headers["Location"] == "/login"
    assert f"{COOKIE}=;" in resp.headers["Set-Cookie"]
    # Replaying the old cookie (a copy an attacker kept) no longer works.
    client.set_cookie(COOKIE, old)
    assert client.get("/config.json").status_code == 401


def test_logout_from_another_site_is_refused() -> None:
    client = client_for(make_config())
    assert client.post("/logout", headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.get("/config.json").status_code == 200


# ---------- rate limiting ----------

def attempt(client: Any, secret: str, addr: str) -> Any:
    return client.post("/login", data={"password": secret}, headers={"Origin": "http://localhost"},
                       environ_base={"REMOTE_ADDR": addr})


def test_failed_logins_are_limited_per_client(tmp_path: Path) -> None:
    config = make_config()
    client = client_for(config, guard=password_guard(config, tmp_path / "pw"), logged_in=False)
    for _ in range(auth.CLIENT_BURST):
        assert attempt(client, "guess guess", "10.0.0.7").status_code == 401
    limited = attempt(client, PASSWORD, "10.0.0.7")  # even the right one, while limited
    assert limited.status_code == 429
    assert 0 < int(limited.headers["Retry-After"]) <= auth.CLIENT_EVERY_S
    assert "Set-Cookie" not in limited.headers
    assert "Too many failed attempts" in limited.get_data(as_text=True)
    # Another address is not held back by this one.
    assert attempt(client, PASSWORD, "10.0.0.8").status_code == 303


def test_concurrent_guesses_cannot_overshoot_the_limit(tmp_path: Path) -> None:
    config = make_config()
    app = create_app(config, guard=password_guard(config, tmp_path / "pw"))
    results: list[int] = []
    gate = threading.Barrier(12)

    def guess() -> None:
        client = app.test_client()
        gate.wait()
        results.append(attempt(client, "wrong guess", "10.0.0.9").status_code)

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [401] * auth.CLIENT_BURST + [429] * (12 - auth.CLIENT_BURST)


def test_failed_logins_are_limited_overall() -> None:
    client = client_for(make_config(), logged_in=False)
    clients = auth.GLOBAL_BURST // auth.CLIENT_BURST
    for n in range(clients):
        for _ in range(auth.CLIENT_BURST):
            assert attempt(client, "wrong token", f"10.1.0.{n}").status_code == 401
    fresh = attempt(client, TOKEN, "10.1.1.1")  # a new address: held back by the global bucket
    assert fresh.status_code == 429 and int(fresh.headers["Retry-After"]) > 0


def test_limiter_refills_with_time() -> None:
    now = [100.0]
    limiter = LoginLimiter(clock=lambda: now[0])
    for _ in range(auth.CLIENT_BURST):
        assert limiter.retry_after("a") == 0
        limiter.failed("a")
    assert limiter.retry_after("a") == auth.CLIENT_EVERY_S
    now[0] += auth.CLIENT_EVERY_S
    assert limiter.retry_after("a") == 0
    limiter.failed("a")
    assert limiter.retry_after("a") > 0


def test_limiter_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "MAX_TRACKED_CLIENTS", 50)
    monkeypatch.setattr(auth, "GLOBAL_BURST", 10_000)
    limiter = LoginLimiter(clock=lambda: 0.0)
    for n in range(500):
        limiter.failed(f"10.2.{n // 256}.{n % 256}")
    assert len(limiter._clients) <= 50


# ---------- sessions and credentials ----------

def test_sessions_expire() -> None:
    now = [0.0]
    sessions = Sessions(Credentials("token", token=TOKEN), lifetime_s=60, clock=lambda: now[0])
    value = sessions.open()
    assert sessions.valid(value) and not sessions.valid(value + "x") and not sessions.valid(None)
    now[0] = 59.0
    assert sessions.valid(value)
    now[0] = 60.0
    assert not sessions.valid(value)
    assert len(sessions) == 0


def test_sessions_keep_no_cookie_value_in_clear() -> None:
    sessions = Sessions(Credentials("token", token=TOKEN), lifetime_s=60)
    value = sessions.open()
    assert value not in repr(sessions.__dict__)


def test_a_new_password_ends_old_sessions_and_takes_effect_at_once(tmp_path: Path) -> None:
    config = make_config(data_dir=str(tmp_path), web={"password_file": str(tmp_path / "pw")})
    client = client_for(config, guard=password_guard(config, tmp_path / "pw"), logged_in=False)
    assert client.post("/login", data={"password": PASSWORD}, headers={"Origin": "http://localhost"}).status_code == 303
    assert client.get("/config.json").status_code == 200
    out, err = _Capture(), _Capture()
    assert passwd_command(config, from_stdin=True, stdin=_Lines("a brand new password\n"), out=out, err=err) == 0
    assert client.get("/config.json").status_code == 401
    origin = {"Origin": "http://localhost"}
    assert client.post("/login", data={"password": PASSWORD}, headers=origin).status_code == 401
    assert client.post("/login", data={"password": "a brand new password"}, headers=origin).status_code == 303


def test_auto_mode_makes_and_keeps_a_token(tmp_path: Path) -> None:
    config = make_config(data_dir=str(tmp_path / "data"))
    first = Credentials.from_config(config)
    assert first.mode == "token" and first.token and re.fullmatch(r"[0-9a-f]{48}", first.token)
    kept = tmp_path / "data" / auth.TOKEN_FILE
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert kept.read_text().strip() == first.token
    assert Credentials.from_config(config).token == first.token  # survives a restart


def test_a_configured_token_is_used_and_not_written(tmp_path: Path) -> None:
    config = make_config(data_dir=str(tmp_path), web={"token": "a-fixed-token-of-some-length"})
    assert Credentials.from_config(config).token == "a-fixed-token-of-some-length"
    assert not (tmp_path / auth.TOKEN_FILE).exists()


def test_auto_mode_prefers_the_password(tmp_path: Path) -> None:
    (tmp_path / auth.PASSWORD_FILE).write_text(hash_password(PASSWORD))
    creds = Credentials.from_config(make_config(data_dir=str(tmp_path)))
    assert creds.mode == "password" and creds.check(PASSWORD) and not creds.check(TOKEN)
    assert not (tmp_path / auth.TOKEN_FILE).exists()


@pytest.mark.parametrize("content", [None, "", "plain text password\n"])
def test_password_mode_without_a_hash_is_one_clear_error(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "pw"
    if content is not None:
        path.write_text(content)
    config = make_config(data_dir=str(tmp_path), web={"auth": "password", "password_file": str(path)})
    with pytest.raises(ConfigError, match=r"web.password_file: .*`deskpulse passwd`"):
        Credentials.from_config(config)


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("", None), (f"{COOKIE}=abc", "abc"), (f"a=1; {COOKIE}=abc; b=2", "abc"),
    (f'{COOKIE}="abc"', "abc"), (f"x{COOKIE}=abc", None), (f"{COOKIE}=", None), ("garbage", None),
])
def test_cookie_value(value: str | None, expected: str | None) -> None:
    assert cookie_value(value) == expected


@given(st.text(max_size=80), st.text(max_size=80))
def test_origin_checks_never_crash(origin: str, host: str) -> None:
    guard = token_guard(make_config(web={"port": 8080}))
    assert isinstance(guard.ws_origin_ok(origin, host), bool)
    assert isinstance(guard.page_origin_ok(origin, host, "http"), bool)


@pytest.mark.parametrize(("origin", "host", "ok"), [
    ("http://deskpi:8080", "deskpi:9001", True),
    ("http://DeskPi:8080", "deskpi:9001", True),
    ("http://192.168.1.20:8080", "192.168.1.20:9001", True),
    ("http://[fe80::1]:8080", "[fe80::1]:9001", True),
    ("http://deskpi:8081", "deskpi:9001", False),  # another port = another origin
    ("http://evil.example:8080", "deskpi:9001", False),  # another site
    ("http://deskpi", "deskpi:9001", False),
    ("null", "deskpi:9001", False),
    (None, "deskpi:9001", False),
    ("ftp://deskpi:8080", "deskpi:9001", False),
    ("http://deskpi:8080", None, False),
    ("https://desk.example.lan", "deskpi:9001", True),  # web.public_url
    ("https://desk.example.lan:444", "deskpi:9001", False),
])
def test_ws_origin(origin: str | None, host: str | None, ok: bool) -> None:
    guard = token_guard(make_config(web={"port": 8080, "public_url": "https://desk.example.lan/"}))
    assert guard.ws_origin_ok(origin, host) is ok


# ---------- /config.json ----------

def test_config_json_defaults_to_the_page_host_and_ws_port() -> None:
    client = client_for(make_config(), logged_in=False)
    client.get(f"/?token={TOKEN}", base_url="http://192.168.1.20:8080")  # cookies are per host
    resp = client.get("/config.json", base_url="http://192.168.1.20:8080")
    assert resp.status_code == 200
    assert resp.get_json() == {
        "ws_url": "ws://192.168.1.20:9001/mqtt",
        "prefix": "deskpulse",
        "device": "desk1",
        "version": resp.get_json()["version"],
    }
    assert resp.headers["Cache-Control"] == "no-store"


def test_config_json_never_carries_broker_credentials() -> None:
    config = load_config(env={
        "DESKPULSE_DEVICE_ID": "study",
        "DESKPULSE_MQTT_PREFIX": "home/posture",
        "DESKPULSE_WEB_VIEWER_USERNAME": "viewer",
        "DESKPULSE_WEB_VIEWER_PASSWORD": "s3cret pass",
    })
    resp = client_for(config).get("/config.json")
    body = resp.get_json()
    assert (body["prefix"], body["device"]) == ("home/posture", "study")
    assert "password" not in body and "username" not in body
    assert b"s3cret" not in resp.get_data()


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://deskpi.local", "ws://deskpi.local:9443/mqtt"),
        ("http://[fe80::1]:8080", "ws://[fe80::1]:9443/mqtt"),
        ("https://deskpi.local", "wss://deskpi.local:9443/mqtt"),
    ],
)
def test_config_json_host_forms(base_url: str, expected: str) -> None:
    client = client_for(make_config(web={"ws_port": 9443}), logged_in=False)
    client.get(f"/?token={TOKEN}", base_url=base_url)
    assert client.get("/config.json", base_url=base_url).get_json()["ws_url"] == expected


def test_config_json_url_precedence() -> None:
    public = make_config(web={"public_ws_url": "wss://desk.example.lan/mqtt"})
    assert client_for(public, broker_ws_url="ws://127.0.0.1:1/mqtt").get("/config.json").get_json()["ws_url"] == (
        "wss://desk.example.lan/mqtt"
    )
    given_url = client_for(make_config(), broker_ws_url="ws://127.0.0.1:7777/mqtt")
    assert given_url.get("/config.json").get_json()["ws_url"] == "ws://127.0.0.1:7777/mqtt"


def test_config_json_rejects_a_forged_host_header() -> None:
    client = client_for(make_config())
    resp = client.get("/config.json", headers={"Host": "evil\"><script>:80"})
    assert resp.status_code in (400, 401)
    assert "evil" not in resp.headers["Content-Security-Policy"]


def test_config_json_is_read_only() -> None:
    assert client_for(make_config()).post("/config.json").status_code == 405


# ---------- the page and headers ----------

def test_page_loads_only_local_assets_and_offers_logout(vendor: Path) -> None:
    resp = client_for(make_config(), vendor).get("/")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert '<script type="module" src="/static/app.js' in html
    assert 'src="/static/vendor/mqtt.min.js' in html
    assert 'id="setup-error"' not in html
    assert '<form method="post" action="/logout"' in html
    refs = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert refs and all(ref.startswith("/static/") for ref in refs), refs


def test_csp_allows_only_self_and_the_broker_ws() -> None:
    client = client_for(make_config(), logged_in=False)
    client.get(f"/?token={TOKEN}", base_url="http://10.0.0.5:8080")
    for path in ("/", "/login", "/config.json", "/static/app.js", "/nope"):
        resp = client.get(path, base_url="http://10.0.0.5:8080")
        resp.close()
        csp = resp.headers["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["default-src"] == "'none'"
        assert directives["script-src"] == "'self'"
        assert directives["connect-src"] == "'self' ws://10.0.0.5:9001"
        assert directives["form-action"] == "'self'"
        assert directives["frame-ancestors"] == "'none'"
        assert "unsafe" not in csp and "http" not in csp
        # Browsers send "Origin: null" on a form POST under no-referrer; same-origin keeps it real.
        assert resp.headers["Referrer-Policy"] == "same-origin"


def test_cache_headers(vendor: Path) -> None:
    client = client_for(make_config())
    own = client.get("/static/app.js")
    own.close()
    assert own.headers["Cache-Control"] == "private, no-cache"
    assert client.get("/").headers["Cache-Control"] == "no-store"
    # A missing vendor file must not be cached as immutable.
    missing = client.get("/static/vendor/not-there.js")
    assert missing.status_code == 404
    assert "immutable" not in missing.headers["Cache-Control"]


def test_vendor_bundle_cached_long_when_present() -> None:
    path = ROOT / "web" / "static" / "vendor" / "mqtt.min.js"
    if not path.is_file():
        pytest.skip("mqtt.min.js not vendored (scripts/fetch_mqttjs.sh)")
    resp = client_for(make_config()).get("/static/vendor/mqtt.min.js")
    assert resp.status_code == 200
    assert "immutable" in resp.headers["Cache-Control"]
    resp.close()


@pytest.mark.parametrize("path", ["/nope", "/static/nope.js", "/config.json/x", "/api/state"])
def test_unknown_paths_are_404(path: str) -> None:
    resp = client_for(make_config()).get(path)
    resp.close()
    assert resp.status_code == 404


# ---------- relay target ----------

@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:1884", ("127.0.0.1", 1884)), ("[::1]:1883", ("::1", 1883)), (" broker.lan:8883 ", ("broker.lan", 8883))],
)
def test_parse_target(text: str, expected: tuple[str, int]) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize("text", ["", "localhost", "host:0", "host:70000", "mqtt://host:1883", "a b:1"])
def test_parse_target_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="web.relay_target"):
        parse_target(text)


@given(st.text(max_size=40))
def test_parse_target_never_crashes(text: str) -> None:
    try:
        host, port = parse_target(text)
    except ConfigError:
        return
    assert host and 0 < port < 65536


def test_relay_target_rules() -> None:
    assert relay_target_of(make_config(web={"relay_target": "127.0.0.1:1884"})) == ("127.0.0.1", 1884)
    assert relay_target_of(make_config(mqtt={"broker": "mqtt://10.0.0.2:1999"})) == ("10.0.0.2", 1999)
    assert relay_target_of(make_config()) == ("127.0.0.1", 1883)


@pytest.mark.parametrize("public_url", ["ftp://x", "desk.lan", "http://x/?a=1"])
def test_public_url_must_be_http(public_url: str) -> None:
    with pytest.raises(ConfigError, match="web.public_url"):
        load_config(overrides={"web.public_url": public_url}, env={})


# ---------- WebServer against the embedded broker ----------

LOCAL = {"host": "127.0.0.1", "port": 0, "ws_host": "127.0.0.1", "ws_port": 0, "token": TOKEN}


@pytest.fixture
def server(broker: Any, tmp_path: Path) -> Iterator[WebServer]:
    s = WebServer(make_config(data_dir=str(tmp_path), web=LOCAL), relay_target=("127.0.0.1", broker.port)).start()
    try:
        yield s
    finally:
        s.stop()


def login(server: WebServer) -> str:
    """Open the printed token link as a browser would; the session cookie's value."""
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(server.login_url("127.0.0.1"), timeout=10) as resp:
        assert resp.status == 200 and resp.url == f"http://127.0.0.1:{server.port}/"
    return next(c.value for c in jar if c.name == COOKIE)


def test_web_server_serves_and_relays_to_the_broker(server: WebServer, recorder: Recorder) -> None:
    assert server.port and server.ws_port and server.port != server.ws_port
    session = login(server)
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}/config.json", headers={"Cookie": f"{COOKIE}={session}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = json.load(resp)
    assert body["ws_url"] == f"ws://127.0.0.1:{server.ws_port}/mqtt"

    # An MQTT-over-WebSocket client with the page's cookie and Origin reaches the broker.
    connected = threading.Event()
    ws = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, transport="websockets")
    ws.ws_set_options(path="/mqtt", headers={"Cookie": f"{COOKIE}={session}",
                                             "Origin": f"http://127.0.0.1:{server.port}"})
    ws.on_connect = lambda *a: connected.set()
    ws.connect("127.0.0.1", server.ws_port)
    ws.loop_start()
    try:
        assert connected.wait(10)
        ws.publish("deskpulse/desk1/request/stream", '{"lease_s":30}', qos=1).wait_for_publish(10)
        recorder.wait_topic("deskpulse/desk1/request/stream", lambda m: m.json() == {"lease_s": 30})
    finally:
        ws.disconnect()
        ws.loop_stop()


def test_the_relay_asks_the_web_server_for_session_and_origin(server: WebServer) -> None:
    session = login(server)
    url = f"ws://127.0.0.1:{server.ws_port}/mqtt"
    page = f"http://127.0.0.1:{server.port}"
    for headers, status in (({"Origin": page}, 401),
                            ({"Origin": page, "Cookie": f"{COOKIE}=forged"}, 401),
                            ({"Origin": "http://evil.example", "Cookie": f"{COOKIE}={session}"}, 403)):
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(url, subprotocols=["mqtt"], additional_headers=headers, open_timeout=10).close()
        assert refused.value.response.status_code == status, headers
    ws_connect(url, subprotocols=["mqtt"], additional_headers={"Origin": page, "Cookie": f"{COOKIE}={session}"},
               open_timeout=10).close()


def test_web_server_stops(broker: Any, tmp_path: Path) -> None:
    s = WebServer(make_config(data_dir=str(tmp_path), web=LOCAL), relay_target=("127.0.0.1", broker.port)).start()
    names = {t.name for t in threading.enumerate()}
    assert {"deskpulse-web-http", "deskpulse-ws-relay"} <= names
    s.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{s.port}/healthz", timeout=2)
    assert "deskpulse-web-http" not in {t.name for t in threading.enumerate()}


def test_wait_fails_when_the_relay_dies(server: WebServer) -> None:
    stop = threading.Event()
    result: list[int] = []
    waiter = threading.Thread(target=lambda: result.append(server.wait(stop, poll_s=0.05)))
    waiter.start()
    assert server.alive()
    assert server._relay is not None
    server._relay.stop()  # the relay's thread ends while the page is still served
    waiter.join(10)
    assert result == [1]


def test_web_server_reports_a_busy_port(broker: Any, server: WebServer, tmp_path: Path) -> None:
    clash = make_config(data_dir=str(tmp_path), web={**LOCAL, "port": server.port})
    with pytest.raises(ConfigError, match="web.port"):
        WebServer(clash, relay_target=("127.0.0.1", broker.port)).start()


def test_banner_prints_the_token_link(server: WebServer) -> None:
    banner = server.banner()
    assert f"http://localhost:{server.port}/?token={TOKEN}" in banner
    assert server.login_url("127.0.0.1") == f"http://127.0.0.1:{server.port}/?token={TOKEN}"


def test_banner_in_password_mode_has_no_secret(broker: Any, tmp_path: Path) -> None:
    config = make_config(data_dir=str(tmp_path), web={**LOCAL, "host": "0.0.0.0", "public_url": "https://desk.lan"})
    guard = password_guard(config, tmp_path / "pw")
    with WebServer(config, relay_target=("127.0.0.1", broker.port), guard=guard) as s:
        banner = s.banner()
    assert banner.startswith("DeskPulse dashboard: https://desk.lan/ ") and "token" not in banner


# ---------- deskpulse passwd ----------

class _Lines:
    def __init__(self, text: str) -> None:
        self.lines = text.splitlines(keepends=True)

    def readline(self) -> str:
        return self.lines.pop(0) if self.lines else ""

    def isatty(self) -> bool:
        return False


class _Capture:
    def __init__(self) -> None:
        self.text = ""

    def write(self, s: str) -> int:
        self.text += s
        return len(s)

    def flush(self) -> None:
        pass


def run_passwd(cfg: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deskpulse", "passwd", "--config", str(cfg), *args],
                          input=input, capture_output=True, text=True, timeout=60, cwd=str(ROOT),
                          env=agent_env(), stdin=None if input is not None else subprocess.DEVNULL)


@pytest.fixture
def cfg_file(tmp_path: Path) -> Path:
    cfg = tmp_path / "deskpulse.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    return cfg


def test_passwd_stdin_writes_only_a_hash(cfg_file: Path, tmp_path: Path) -> None:
    proc = run_passwd(cfg_file, "--stdin", input="my dashboard secret\n")
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "data" / auth.PASSWORD_FILE
    text = path.read_text()
    assert text.startswith("$argon2id$") and "my dashboard secret" not in text
    assert PasswordHasher().verify(text.strip(), "my dashboard secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "my dashboard secret" not in proc.stdout + proc.stderr
    # A second change keeps the file's mode (install.sh makes it 0640 for the service's group).
    path.chmod(0o640)
    assert run_passwd(cfg_file, "--stdin", input="another secret!\n").returncode == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert PasswordHasher().verify(path.read_text().strip(), "another secret!")


def test_passwd_without_a_terminal_or_stdin_is_one_clear_line(cfg_file: Path, tmp_path: Path) -> None:
    proc = run_passwd(cfg_file)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("deskpulse passwd: no terminal to ask on; pass the new password on "
                                   "standard input with --stdin")
    assert not (tmp_path / "data" / auth.PASSWORD_FILE).exists()


@pytest.mark.parametrize("given_pw", ["", "short"])
def test_passwd_refuses_a_short_password(cfg_file: Path, tmp_path: Path, given_pw: str) -> None:
    proc = run_passwd(cfg_file, "--stdin", input=given_pw + "\n")
    assert proc.returncode == 2
    assert "at least 8 characters" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "data" / auth.PASSWORD_FILE).exists()


def _read_until(fd: int, text: bytes, timeout: float = 20) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while text not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"never saw {text!r}; got {seen!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 1024)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


@pytest.mark.parametrize("second", ["typed on a terminal", "a different one"])
def test_passwd_asks_twice_on_a_terminal_without_echo(cfg_file: Path, tmp_path: Path, second: str) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "deskpulse", "passwd", "--config", str(cfg_file)],
                            stdin=slave, stdout=slave, stderr=slave, cwd=str(ROOT), env=agent_env(),
                            start_new_session=True)  # no controlling terminal: getpass uses stdin
    os.close(slave)
    try:
        shown = _read_until(master, b"New dashboard password: ")
        os.write(master, b"typed on a terminal\n")
        shown += _read_until(master, b"Repeat it: ")
        os.write(master, second.encode() + b"\n")
        code = proc.wait(60)
        shown += _read_until(master, b"\n", timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)
    assert b"typed on a terminal" not in shown and second.encode() not in shown  # never echoed
    path = tmp_path / "data" / auth.PASSWORD_FILE
    if second == "typed on a terminal":
        assert code == 0, shown
        assert PasswordHasher().verify(path.read_text().strip(), "typed on a terminal")
    else:
        assert code == 2 and b"the two passwords differ" in shown
        assert not path.exists()
