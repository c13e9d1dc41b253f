"""The dashboard's Flask app: the login, the page, its assets, /config.json and /healthz.

It owns HTTP only. It never touches the broker and never relays posture data: the page
subscribes to MQTT itself (mqtt.js over the WebSocket relay, which logs in to the broker for
it), so the broker stays the one source of truth and its ACLs apply to the browser.

Nothing but the login page, its stylesheet and icon, and /healthz answers without a session.
The browser is never given a broker password. Who is logged in is `web.auth.Guard`'s business.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, jsonify, make_response, redirect, render_template, request, url_for

from deskpulse import __version__
from deskpulse.config import Config

from .auth import COOKIE, Guard

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
MQTT_JS = STATIC_DIR / "vendor" / "mqtt.min.js"
MQTT_JS_MISSING = (
    "web/static/vendor/mqtt.min.js is missing, so the page cannot reach the broker: "
    "run scripts/fetch_mqttjs.sh (npm ci --prefix web) and restart"
)
# What the login page itself needs; every other asset is for logged-in browsers only.
PUBLIC_STATIC = frozenset({"style.css", "favicon.svg"})

# A Host header is echoed into the ws URL and the CSP, so only hostnames and IP literals pass.
HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")

# The vendored bundle is pinned and referenced with ?v=<version>, so it may be cached
# long; our own modules change with upgrades and are revalidated (ETag) on every load.
VENDOR_CACHE = "public, max-age=604800, immutable"
OWN_CACHE = "private, no-cache"


def _host_without_port(host: str) -> str | None:
    match = HOST_RE.match(host)
    return match.group(1) if match else None


def _ws_origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def create_app(config: Config, *, guard: Guard, broker_ws_url: str | None = None) -> Flask:
    """The dashboard app for `config`, logging browsers in through `guard`.

    The page is told to use, in order: `config.web.public_ws_url`, `broker_ws_url`, or
    ws://<host the page was loaded from>:<config.web.ws_port>/mqtt.
    """
    app = Flask(__name__, static_folder=str(STATIC_DIR), static_url_path="/static",
                template_folder=str(HERE / "templates"))
    app.config["DESKPULSE_MQTT_JS"] = MQTT_JS
    app.json.sort_keys = False  # type: ignore[attr-defined]
    web = config.web
    max_age = int(web.session_hours * 3600)

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

    def logged_in() -> bool:
        return guard.sessions.valid(request.cookies.get(COOKIE))

    def client() -> str:
        return request.remote_addr or "unknown"

    def secure() -> bool:
        return request.scheme == "https" or bool(guard.public_origin and guard.public_origin[0] == "https")

    def logged_in_response(target: str) -> Response:
        """303 to target with a new session cookie."""
        resp = redirect(target, 303)
        resp.set_cookie(COOKIE, guard.sessions.open(), max_age=max_age, path="/", httponly=True,
                        samesite="Strict", secure=secure())
        return resp

    def login_page(status: int = 200, error: str | None = None, retry_after: int = 0) -> Response:
        resp = make_response(render_template("login.html", version=__version__, mode=guard.mode, error=error), status)
        if retry_after:
            resp.headers["Retry-After"] = str(retry_after)
        return resp

    def too_many(wait: int) -> Response:
        log.warning("login: too many failed attempts (client %s, retry in %d s)", client(), wait)
        return login_page(429, f"Too many failed attempts. Try again in {wait} seconds.", wait)

    def attempt(secret: str) -> Response | None:
        """None if secret opens a session; else the answer (401, or 429 while limited)."""
        ok, wait = guard.attempt(client(), secret)
        if wait:
            return too_many(wait)
        if ok:
            log.info("login: %s logged in", client())
            return None
        log.warning("login: failed attempt from %s", client())
        what = "password" if guard.mode == "password" else "token"
        return login_page(401, f"That {what} is not right.")

    def same_origin_post() -> bool:
        return guard.page_origin_ok(request.headers.get("Origin"), request.host, request.scheme)

    @app.before_request
    def private_assets() -> tuple[Response, int] | None:
        if request.endpoint == "static" and (request.view_args or {}).get("filename") not in PUBLIC_STATIC:
            if not logged_in():
                return jsonify(error="login required"), 401
        return None

    @app.get("/")
    def index() -> Response | str:
        token = request.args.get("token")
        if token is not None and guard.mode == "token":
            # The Jupyter link: log in, then send the browser to / so the token leaves the
            # address bar (and history shows / only).
            return attempt(token) or logged_in_response(url_for("index"))
        if not logged_in():
            return redirect(url_for("login"), 303)
        return render_template("index.html", version=__version__, device=config.device_id,
                               mqtt_js_present=mqtt_js_present(), mqtt_js_missing=MQTT_JS_MISSING)

    @app.get("/login")
    def login() -> Response:
        if logged_in():
            return redirect(url_for("index"), 303)
        return login_page()

    @app.post("/login")
    def login_post() -> Response:
        if not same_origin_post():
            log.warning("login: refused a form posted from another origin (%s)", request.headers.get("Origin"))
            return login_page(403, "Log in from the dashboard's own page.")
        return attempt(request.form.get("password", "")) or logged_in_response(url_for("index"))

    @app.post("/logout")
    def logout() -> Response | tuple[Response, int]:
        if not same_origin_post():
            return jsonify(error="cross-origin logout refused"), 403
        guard.sessions.close(request.cookies.get(COOKIE))
        resp = redirect(url_for("login"), 303)
        resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="Strict", secure=secure())
        return resp

    @app.get("/config.json")
    def config_json() -> tuple[Response, int] | Response:
        if not logged_in():
            return jsonify(error="login required"), 401
        url = ws_url()
        if url is None:
            return jsonify(error="bad Host header"), 400
        # No broker credentials: the relay logs in for the browser.
        body: dict[str, Any] = {
            "ws_url": url,
            "prefix": config.mqtt.prefix,
            "device": config.device_id,
            "version": __version__,
        }
        return jsonify(body)

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        # Open to monitors, so it says whether the page can work and nothing else.
        if not mqtt_js_present():
            return jsonify(status="error", mqtt_js=False, error=MQTT_JS_MISSING), 503
        return jsonify(status="ok", mqtt_js=True), 200

    @app.after_request
    def headers(resp: Response) -> Response:
        path = request.path
        if path.startswith("/static/vendor/") and resp.status_code in (200, 304):
            resp.headers["Cache-Control"] = VENDOR_CACHE
        elif path.startswith("/static/") and resp.status_code in (200, 304):
            resp.headers["Cache-Control"] = OWN_CACHE
        else:
            # Pages, config.json and refusals are never stored by caches.
            resp.headers["Cache-Control"] = "no-store"
        resp.headers["Content-Security-Policy"] = _csp(ws_url() if request.host else None)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on the
        # login form's POST, and the Origin check is what keeps other sites from posting it.
        resp.headers["Referrer-Policy"] = "same-origin"
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
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])
