"""The dashboard's Flask app and WebServer without a browser: /config.json, /healthz, headers,
404s, relay-target parsing, and the server wiring its relay to the broker (embedded amqtt)."""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deskpulse import __version__
from deskpulse.config import Config, load_config
from deskpulse.errors import ConfigError
from web.app import MQTT_JS_MISSING, create_app
from web.server import WebServer, parse_target, relay_target_of

from .support import Recorder


def make_config(**sections: Any) -> Config:
    return Config.model_validate({"device_id": "desk1", **sections})


@pytest.fixture
def vendor(tmp_path: Path) -> Path:
    path = tmp_path / "mqtt.min.js"
    path.write_text("var mqtt = {};")
    return path


def client_for(config: Config, vendor: Path | None = None, **kw: Any):
    app = create_app(config, **kw)
    if vendor is not None:
        app.config["DESKPULSE_MQTT_JS"] = vendor
    return app.test_client()


# ---------- /config.json ----------

def test_config_json_defaults_to_the_page_host_and_ws_port() -> None:
    client = client_for(make_config())
    resp = client.get("/config.json", base_url="http://192.168.1.20:8080")
    assert resp.status_code == 200
    assert resp.get_json() == {
        "ws_url": "ws://192.168.1.20:9001/mqtt",
        "prefix": "deskpulse",
        "device": "desk1",
        "username": None,
        "password": None,
        "version": __version__,
    }
    assert resp.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://deskpi.local", "ws://deskpi.local:9443/mqtt"),
        ("http://[fe80::1]:8080", "ws://[fe80::1]:9443/mqtt"),
        ("https://deskpi.local", "wss://deskpi.local:9443/mqtt"),
    ],
)
def test_config_json_host_forms(base_url: str, expected: str) -> None:
    client = client_for(make_config(web={"ws_port": 9443}))
    assert client.get("/config.json", base_url=base_url).get_json()["ws_url"] == expected


def test_config_json_url_precedence() -> None:
    public = make_config(web={"public_ws_url": "wss://desk.example.lan/mqtt"})
    assert client_for(public, broker_ws_url="ws://127.0.0.1:1/mqtt").get("/config.json").get_json()["ws_url"] == (
        "wss://desk.example.lan/mqtt"
    )
    given_url = client_for(make_config(), broker_ws_url="ws://127.0.0.1:7777/mqtt")
    assert given_url.get("/config.json").get_json()["ws_url"] == "ws://127.0.0.1:7777/mqtt"


def test_config_json_prefix_and_viewer_credentials_from_the_environment() -> None:
    config = load_config(env={
        "DESKPULSE_DEVICE_ID": "study",
        "DESKPULSE_MQTT_PREFIX": "home/posture",
        "DESKPULSE_WEB_VIEWER_USERNAME": "viewer",
        "DESKPULSE_WEB_VIEWER_PASSWORD": "s3cret pass",
    })
    body = client_for(config).get("/config.json").get_json()
    assert (body["prefix"], body["device"]) == ("home/posture", "study")
    assert (body["username"], body["password"]) == ("viewer", "s3cret pass")


def test_config_json_rejects_a_forged_host_header() -> None:
    client = client_for(make_config())
    resp = client.get("/config.json", headers={"Host": "evil\"><script>:80"})
    assert resp.status_code == 400
    assert "evil" not in resp.headers["Content-Security-Policy"]


# ---------- /healthz ----------

def test_healthz_ok_when_mqtt_js_is_vendored(vendor: Path) -> None:
    resp = client_for(make_config(), vendor).get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok", "mqtt_js": True, "version": __version__}


def test_healthz_503_names_the_fix_when_mqtt_js_is_missing(tmp_path: Path) -> None:
    client = client_for(make_config(), tmp_path / "absent.js")
    resp = client.get("/healthz")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["status"] == "error" and body["mqtt_js"] is False
    assert "scripts/fetch_mqttjs.sh" in body["error"]
    # The page says so too, instead of silently never connecting.
    assert MQTT_JS_MISSING in client.get("/").get_data(as_text=True)


# ---------- the page and headers ----------

def test_page_loads_only_local_assets(vendor: Path) -> None:
    resp = client_for(make_config(), vendor).get("/")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert '<script type="module" src="/static/app.js' in html
    assert 'src="/static/vendor/mqtt.min.js' in html
    assert 'id="setup-error"' not in html
    refs = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert refs and all(ref.startswith("/static/") for ref in refs), refs


def test_csp_allows_only_self_and_the_broker_ws() -> None:
    client = client_for(make_config())
    for path in ("/", "/config.json", "/static/app.js", "/nope"):
        resp = client.get(path, base_url="http://10.0.0.5:8080")
        resp.close()
        csp = resp.headers["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["default-src"] == "'none'"
        assert directives["script-src"] == "'self'"
        assert directives["connect-src"] == "'self' ws://10.0.0.5:9001"
        assert directives["frame-ancestors"] == "'none'"
        assert "unsafe" not in csp and "http" not in csp


def test_cache_headers(vendor: Path) -> None:
    client = client_for(make_config())
    own = client.get("/static/app.js")
    own.close()
    assert own.headers["Cache-Control"] == "no-cache"
    assert client.get("/").headers["Cache-Control"] == "no-store"
    # A missing vendor file must not be cached as immutable.
    missing = client.get("/static/vendor/not-there.js")
    assert missing.status_code == 404
    assert "immutable" not in missing.headers["Cache-Control"]


def test_vendor_bundle_cached_long_when_present() -> None:
    path = Path(__file__).resolve().parent.parent / "web" / "static" / "vendor" / "mqtt.min.js"
    if not path.is_file():
        pytest.skip("mqtt.min.js not vendored (scripts/fetch_mqttjs.sh)")
    resp = create_app(make_config()).test_client().get("/static/vendor/mqtt.min.js")
    assert resp.status_code == 200
    assert "immutable" in resp.headers["Cache-Control"]
    resp.close()


@pytest.mark.parametrize("path", ["/nope", "/static/nope.js", "/config.json/x", "/api/state"])
def test_unknown_paths_are_404(path: str) -> None:
    resp = client_for(make_config()).get(path)
    resp.close()
    assert resp.status_code == 404


def test_config_json_is_read_only() -> None:
    assert client_for(make_config()).post("/config.json").status_code == 405


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


# ---------- WebServer against the embedded broker ----------

def test_web_server_serves_and_relays_to_the_broker(broker, recorder: Recorder) -> None:
    config = make_config(web={"host": "127.0.0.1", "port": 0, "ws_host": "127.0.0.1", "ws_port": 0})
    server = WebServer(config, relay_target=("127.0.0.1", broker.port)).start()
    try:
        assert server.port and server.ws_port and server.port != server.ws_port
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/config.json", timeout=10) as resp:
            body = json.load(resp)
        assert body["ws_url"] == f"ws://127.0.0.1:{server.ws_port}/mqtt"

        # An MQTT-over-WebSocket client, as the page is, reaches the broker through the relay.
        connected = threading.Event()
        ws = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, transport="websockets")
        ws.ws_set_options(path="/mqtt")
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
    finally:
        server.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=2)


def test_web_server_reports_a_busy_port(broker) -> None:
    first = WebServer(make_config(web={"host": "127.0.0.1", "port": 0, "ws_host": "127.0.0.1", "ws_port": 0}),
                      relay_target=("127.0.0.1", broker.port)).start()
    try:
        clash = make_config(web={"host": "127.0.0.1", "port": first.port, "ws_host": "127.0.0.1", "ws_port": 0})
        with pytest.raises(ConfigError, match="web.port"):
            WebServer(clash, relay_target=("127.0.0.1", broker.port)).start()
    finally:
        first.stop()
