"""The dashboard's Flask app: the page, its assets, /config.json and /healthz.

It owns HTTP only. It never touches the broker and never relays posture data: the page
subscribes to MQTT itself (mqtt.js over the WebSocket relay), so the broker stays the one
source of truth and its ACLs apply to the browser.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, jsonify, render_template, request

from deskpulse import __version__
from deskpulse.config import Config

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
MQTT_JS = STATIC_DIR / "vendor" / "mqtt.min.js"
MQTT_JS_MISSING = (
    "web/static/vendor/mqtt.min.js is missing, so the page cannot reach the broker: "
    "run scripts/fetch_mqttjs.sh (npm ci --prefix web) and restart"
)

# A Host header is echoed into the ws URL and the CSP, so only hostnames and IP literals pass.
HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")

# The vendored bundle is pinned and referenced with ?v=<version>, so it may be cached
# long; our own modules change with upgrades and are revalidated (ETag) on every load.
VENDOR_CACHE = "public, max-age=604800, immutable"
OWN_CACHE = "no-cache"


def _host_without_port(host: str) -> str | None:
    match = HOST_RE.match(host)
    return match.group(1) if match else None


def _ws_origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def create_app(config: Config, *, broker_ws_url: str | None = None) -> Flask:
    """The dashboard app for `config`.

    The page is told to use, in order: `config.web.public_ws_url`, `broker_ws_url`, or
    ws://<host the page was loaded from>:<config.web.ws_port>/mqtt.
    """
    app = Flask(__name__, static_folder=str(STATIC_DIR), static_url_path="/static",
                template_folder=str(HERE / "templates"))
    app.config["DESKPULSE_MQTT_JS"] = MQTT_JS
    app.json.sort_keys = False  # type: ignore[attr-defined]
    web = config.web

    def ws_url() -> str | None:
        if web.public_ws_url:
            return web.public_ws_url
        if broker_ws_url:
            return broker_ws_url
        host = _host_without_port(request.host)
        if host is None:
            return None
        scheme = "wss" if request.scheme == "https" else "ws"
        return f"{scheme}://{host}:{web.ws_port}/mqtt"

    def mqtt_js_present() -> bool:
        return Path(app.config["DESKPULSE_MQTT_JS"]).is_file()

    @app.get("/")
    def index() -> str:
        return render_template("index.html", version=__version__, device=config.device_id,
                               mqtt_js_present=mqtt_js_present(), mqtt_js_missing=MQTT_JS_MISSING)

    @app.get("/config.json")
    def config_json() -> tuple[Response, int] | Response:
        url = ws_url()
        if url is None:
            return jsonify(error="bad Host header"), 400
        password = web.viewer_password.get_secret_value() if web.viewer_password else None
        body: dict[str, Any] = {
            "ws_url": url,
            "prefix": config.mqtt.prefix,
            "device": config.device_id,
            "username": web.viewer_username or None,
            "password": password,
            "version": __version__,
        }
        return jsonify(body)

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        if not mqtt_js_present():
            return jsonify(status="error", mqtt_js=False, error=MQTT_JS_MISSING, version=__version__), 503
        return jsonify(status="ok", mqtt_js=True, version=__version__), 200

    @app.after_request
    def headers(resp: Response) -> Response:
        path = request.path
        if path.startswith("/static/vendor/") and resp.status_code in (200, 304):
            resp.headers["Cache-Control"] = VENDOR_CACHE
        elif path.startswith("/static/"):
            resp.headers["Cache-Control"] = OWN_CACHE
        else:
            # The page and config.json (credentials) are never stored by caches.
            resp.headers["Cache-Control"] = "no-store"
        resp.headers["Content-Security-Policy"] = _csp(ws_url() if request.host else None)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["X-Frame-Options"] = "DENY"
        return resp

    return app


def _csp(ws_url: str | None) -> str:
    """Everything from this origin only; the one extra connection allowed is the broker's ws."""
    origin = _ws_origin(ws_url) if ws_url else None
    connect = f"'self' {origin}" if origin else "'self'"
    return "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        # mqtt.js runs its keepalive timer in a Blob worker so background tabs aren't throttled.
        "worker-src 'self' blob:",
        "style-src 'self'",
        "img-src 'self' blob:",
        f"connect-src {connect}",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ])
