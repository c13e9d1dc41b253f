"""`deskpulse web`: the dashboard's HTTP server plus the browsers' WebSocket->TCP relay.

It owns three things and stops them in `stop()`: the login state (`web.auth.Guard`, shared
in-process with the relay's thread), the WsRelay (browsers' mqtt.js -> the broker's TCP
listener, admitted only with a session cookie and the page's own Origin, logged in to the
broker with the dashboard's account), and the waitress server for the Flask app
(`web.httpd`, one named thread). It never handles posture data.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
from urllib.parse import quote

from websockets.http11 import Request

from deskpulse.config import Config
from deskpulse.errors import ConfigError
from deskpulse.wsrelay import WsRelay

from .app import create_app
from .auth import Guard
from .httpd import HttpServer

log = logging.getLogger(__name__)

TARGET_RE = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>\d{1,5})$")
ANY_ADDRESS = ("", "0.0.0.0", "::", "[::]")
LOOPBACK = ("127.0.0.1", "::1", "localhost")
EXIT_OK, EXIT_FAIL = 0, 1


def parse_target(value: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port); ConfigError naming the key otherwise."""
    match = TARGET_RE.match(value.strip())
    port = int(match.group("port")) if match else 0
    if not match or not 0 < port < 65536:
        raise ConfigError(f"web.relay_target: expected host:port, e.g. 127.0.0.1:1884, got {value!r}")
    return (match.group("v6") or match.group("host"), port)


def relay_target_of(config: Config) -> tuple[str, int]:
    """Where the relay forwards: web.relay_target, else the [mqtt] broker's TCP listener."""
    if config.web.relay_target:
        return parse_target(config.web.relay_target)
    address = config.mqtt.address()
    if address is None:
        # mqtt.broker = "auto": the agent uses 127.0.0.1:1883, or its embedded broker there.
        return ("127.0.0.1", 1883)
    return (address.host, address.port)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, bound here so that a busy port is one clear line."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"web.host: cannot listen on {host!r} ({exc.strerror or exc})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"web.port: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    return sock


def _header(request: Request, name: str) -> str | None:
    """A header that must appear at most once; None if absent or repeated."""
    values = request.headers.get_all(name)
    return values[0] if len(values) == 1 else None


class WebServer:
    """The relay and the page. Port 0 works for both; `.port` and `.ws_port` are actual."""

    def __init__(self, config: Config, *, relay_target: tuple[str, int] | None = None,
                 guard: Guard | None = None) -> None:
        self.config = config
        self.relay_target = relay_target or relay_target_of(config)
        self.port = 0
        self.ws_port = 0
        self.guard = guard
        self._relay: WsRelay | None = None
        self._http: HttpServer | None = None

    # --- what the relay asks, from its own thread ----------------------------------------------

    def _authorize(self, request: Request) -> bool:
        guard = self.guard
        cookies = request.headers.get_all("Cookie")
        return guard is not None and guard.session_ok("; ".join(cookies) if cookies else None)

    def _origin_allowed(self, request: Request) -> bool:
        guard = self.guard
        return guard is not None and guard.ws_origin_ok(_header(request, "Origin"), _header(request, "Host"))

    # --- lifetime --------------------------------------------------------------------------------

    def start(self) -> "WebServer":
        web = self.config.web
        if self.guard is None:
            self.guard = Guard(self.config)  # ConfigError if the login cannot work
        sock = _listen(web.host, web.port)
        self.port = int(sock.getsockname()[1])
        self.guard.http_port = self.port
        host, port = self.relay_target
        password = web.viewer_password.get_secret_value() if web.viewer_password else None
        try:
            self._relay = WsRelay(
                web.ws_host, web.ws_port, host, port, path="/mqtt",
                authorize=self._authorize, allowed_origins=self._origin_allowed,
                username=web.viewer_username or None, password=password,
                max_connections=web.max_connections)
            self._relay.start()
            self.ws_port = self._relay.port
            # The page must be told the port the relay really got (ws_port may be 0).
            config = self.config.model_copy(update={"web": web.model_copy(update={"ws_port": self.ws_port})})
            self._http = HttpServer(create_app(config, guard=self.guard), sock).start()
        except BaseException:
            sock.close()
            self.stop()
            raise
        log.info("dashboard on http://%s:%d/ (login: %s), broker relay ws://%s:%d/mqtt -> %s:%d",
                 web.host, self.port, self.guard.mode, web.ws_host, self.ws_port, host, port)
        return self

    def alive(self) -> bool:
        """Both the relay and the HTTP server are still running."""
        return (self._relay is not None and self._relay.alive()
                and self._http is not None and self._http.alive())

    def wait(self, stop: threading.Event, poll_s: float = 1.0) -> int:
        """Until stop is set (0), or the relay or the HTTP server dies (1): a page that cannot
        connect must not go on being served, so systemd restarts the process instead."""
        while not stop.wait(poll_s):
            if not self.alive():
                log.error("the dashboard's %s stopped; exiting",
                          "WebSocket relay" if self._relay is None or not self._relay.alive() else "HTTP server")
                return EXIT_FAIL
        return EXIT_OK

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()
            self._http = None
        if self._relay is not None:
            self._relay.stop()
            self._relay = None

    def __enter__(self) -> "WebServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- where to point a browser ------------------------------------------------------------------

    def base_urls(self) -> list[str]:
        """The page's addresses to print: web.public_url, else this machine's name and localhost."""
        web = self.config.web
        if web.public_url:
            return [web.public_url]
        if web.host in ANY_ADDRESS:
            hosts = [socket.gethostname() or "localhost", "localhost"]
        elif web.host in LOOPBACK:
            hosts = ["localhost"]
        else:
            hosts = [web.host]
        hosts = [f"[{h}]" if ":" in h else h for h in dict.fromkeys(hosts)]
        return [f"http://{h}:{self.port}" for h in hosts]

    def login_url(self, host: str | None = None) -> str:
        """The URL that logs a browser in: with ?token=… in token mode (Jupyter style)."""
        return self._with_token(f"http://{host}:{self.port}" if host else self.base_urls()[0])

    def _with_token(self, base: str) -> str:
        guard = self.guard
        if guard is not None and guard.mode == "token" and guard.credentials.token:
            return f"{base}/?token={quote(guard.credentials.token, safe='')}"
        return f"{base}/"

    def banner(self) -> str:
        """What the command line prints at start: where the dashboard is and how to log in."""
        urls = [self._with_token(base) for base in self.base_urls()]
        if self.guard is not None and self.guard.mode == "token":
            # One line, so the link is found next to the word "dashboard" by people and scripts.
            return f"DeskPulse dashboard: {'  or  '.join(urls)}  (the link logs you in)"
        return (f"DeskPulse dashboard: {urls[0]} (log in with the dashboard password; "
                "change it with `deskpulse passwd`)")
