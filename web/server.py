"""`deskpulse web`: the dashboard's HTTP server plus the browsers' WebSocket->TCP relay.

It owns two things and stops both in `stop()`: the WsRelay (browsers' mqtt.js -> the
broker's TCP listener, so frames avoid mosquitto 2.0.11's slow websockets listener) and
a werkzeug server for the Flask app in one named thread. It never handles posture data.
"""

from __future__ import annotations

import logging
import re
import socket
import threading

from werkzeug.serving import BaseWSGIServer, make_server

from deskpulse.config import Config
from deskpulse.errors import ConfigError
from deskpulse.wsrelay import WsRelay

from .app import create_app

log = logging.getLogger(__name__)

TARGET_RE = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>\d{1,5})$")


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
    """A listening socket, bound here so that a busy port is one clear line (werkzeug would
    print and sys.exit instead)."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"web.host: cannot listen on {host!r} ({exc.strerror or exc})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"web.port: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    return sock


class WebServer:
    """The relay and the Flask app. Port 0 works for both; `.port` and `.ws_port` are actual."""

    def __init__(self, config: Config, *, relay_target: tuple[str, int] | None = None) -> None:
        self.config = config
        self.relay_target = relay_target or relay_target_of(config)
        self.port = 0
        self.ws_port = 0
        self._relay: WsRelay | None = None
        self._http: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "WebServer":
        web = self.config.web
        host, port = self.relay_target
        self._relay = WsRelay(web.ws_host, web.ws_port, host, port, path="/mqtt")
        self._relay.start()
        self.ws_port = self._relay.port
        try:
            # The page must be told the port the relay really got (ws_port may be 0).
            config = self.config.model_copy(update={"web": web.model_copy(update={"ws_port": self.ws_port})})
            app = create_app(config)
            sock = _listen(web.host, web.port)
            try:
                self._http = make_server(web.host, web.port, app, threaded=True, fd=sock.fileno())
            finally:
                sock.close()  # werkzeug holds its own duplicate of the descriptor
            self.port = int(self._http.server_address[1])
            self._thread = threading.Thread(target=self._http.serve_forever, name="deskpulse-web-http", daemon=True)
            self._thread.start()
        except BaseException:
            self._relay.stop()
            self._relay = None
            raise
        log.info("dashboard on http://%s:%d/, broker relay ws://%s:%d/mqtt -> %s:%d",
                 web.host, self.port, web.ws_host, self.ws_port, host, port)
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self._relay is not None:
            self._relay.stop()
            self._relay = None

    def __enter__(self) -> "WebServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
