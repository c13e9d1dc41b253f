"""The browser's path to the broker: an authenticated WebSocket -> TCP relay for MQTT.

Owns one thread ("deskpulse-ws-relay") running an asyncio loop with a `websockets` server.

- **Who gets in.** The upgrade request must be on `path` (else 404), carry an acceptable
  Origin (`allowed_origins`, else 403) and a valid session (`authorize`, else 401), and find a
  free slot among `max_connections` (else 503). Refusals happen before any broker connection
  exists, and are logged at most once per kind every LOG_WINDOW_S, with a count of the rest.
- **Browser -> broker** is parsed into MQTT packets (deskpulse/mqttwire.py). The first must be
  CONNECT, and the broker gets a rewritten one: the relay's own account instead of whatever the
  browser sent, and a server-chosen client id `deskpulse-web-<random>`, so a browser can
  neither pick its broker account nor take over another client's id (the agent's). Only then
  does the relay open the broker connection. PUBLISH packets (the page's requests) pass a
  per-connection token bucket; the excess is dropped. Malformed or oversized packets, a second
  CONNECT or a packet only a server may send close the connection.
- **Broker -> browser** stays a byte relay: whatever TCP delivers goes back as one binary
  WebSocket message, unparsed.
- **Bounded.** Each direction of each connection buffers at most about `max_buffer_bytes`:
  a slow browser stalls only its own TCP read, and the stall reaches the broker through TCP
  flow control. Accepted sockets still in their handshake are capped too, so a connection
  flood cannot exhaust the process's file descriptors. WebSocket pings drop dead peers, and a
  client that does not finish its handshake (and its CONNECT) within `handshake_timeout_s` is
  closed.

It must not know any topic: the broker authenticates the relay's account and applies that
account's ACL to everything the browser sends.

Why it exists: mosquitto 2.0.11 (Debian 12, Pi OS bookworm) has a websockets listener that
takes seconds per 30 KB message and cannot check Origin; its plain TCP listener is fast. This
relay puts a fast, authenticated WebSocket front on it (see docs/frame-path.md).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from .config.mqtt import is_loopback
from .errors import BrokerError
from .mqttwire import (
    Connect, MalformedPacket, Packet, PacketSplitter, PacketTooLarge, PacketType, parse_connect,
    rewrite_connect,
)

log = logging.getLogger(__name__)

__all__ = ["WsRelay", "TokenBucket", "CLIENT_ID_PREFIX", "MAX_CLIENT_PACKET_BYTES"]

# What mqtt.js offers: "mqtt" for MQTT 3.1.1/5, "mqttv3.1" for protocolVersion 3.
SUBPROTOCOLS = ("mqtt", "mqttv3.1")
# The browser sends small requests (subscribe, a request publish, acks): a packet over this
# closes its connection. Frames travel the other way, which has no per-packet limit here.
MAX_CLIENT_PACKET_BYTES = 64 * 1024
# One WebSocket message from the browser may carry a few packets (mqtt.js flushes its queue
# in one write after reconnecting).
MAX_CLIENT_MESSAGE_BYTES = 2 * MAX_CLIENT_PACKET_BYTES
CLIENT_ID_PREFIX = "deskpulse-web-"
BROKER_CONNECT_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 3.0
LOG_WINDOW_S = 10.0
# Packets a client may send after CONNECT. Not AUTH: the relay's account replaces the
# browser's credentials, so the browser has nothing to authenticate.
CLIENT_PACKETS = frozenset({
    PacketType.PUBLISH, PacketType.PUBACK, PacketType.PUBREC, PacketType.PUBREL, PacketType.PUBCOMP,
    PacketType.SUBSCRIBE, PacketType.UNSUBSCRIBE, PacketType.PINGREQ, PacketType.DISCONNECT,
})

RequestCheck = Callable[[Request], bool]


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; each take() spends one."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


# Each kind of trouble: its log level and how its summary line names it.
_KINDS: dict[str, tuple[int, str]] = {
    "404": (logging.INFO, "upgrades refused for a wrong path (404)"),
    "403": (logging.WARNING, "upgrades refused for a foreign Origin (403)"),
    "401": (logging.INFO, "upgrades refused without a session (401)"),
    "503": (logging.WARNING, "upgrades refused at the connection cap (503)"),
    "check-error": (logging.ERROR, "upgrades refused because a session or Origin check raised"),
    "overload": (logging.WARNING, "connections dropped before their handshake (too many open sockets)"),
    "handshake": (logging.INFO, "failed WebSocket handshakes"),
    "no-connect": (logging.INFO, "connections closed for sending no MQTT CONNECT in time"),
    "protocol": (logging.WARNING, "connections closed for breaking MQTT or WebSocket rules"),
    "ping": (logging.INFO, "connections dropped for not answering pings"),
    "publish-drop": (logging.WARNING, "request publishes dropped over the rate limit"),
    "broker": (logging.WARNING, "connections closed because the broker was unreachable"),
}


@dataclass
class _Held:
    logged_at: float
    held: int = 0


class _LogThrottle:
    """At most one line per kind of trouble per window; what was held back is summed up in one
    line when the window ends (flush) or the relay stops. A flood logs a handful of lines."""

    def __init__(self, logger: logging.Logger, window_s: float) -> None:
        self._log = logger
        self._window = window_s
        self._kinds: dict[str, _Held] = {}

    def note(self, kind: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        held = self._kinds.get(kind)
        if held is not None and now - held.logged_at < self._window:
            held.held += 1
            return
        if held is not None:
            self._summary(kind, held)
        self._log.log(_KINDS[kind][0], msg, *args)
        self._kinds[kind] = _Held(now)

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        for kind, held in list(self._kinds.items()):
            if force or now - held.logged_at >= self._window:
                self._summary(kind, held)
                del self._kinds[kind]

    def _summary(self, kind: str, held: _Held) -> None:
        if held.held:
            level, label = _KINDS[kind]
            self._log.log(level, "WebSocket relay: %d more %s in the last %.0f s", held.held, label,
                          time.monotonic() - held.logged_at)
            held.held = 0


class _Close(Exception):
    """Close the browser's connection with this WebSocket code; `kind` and `detail` are for the log."""

    def __init__(self, code: int, reason: str, kind: str = "protocol", detail: str = "") -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.kind = kind
        self.detail = detail or reason


class _RelayConnection(ServerConnection):
    """A ServerConnection that counts itself against the relay's socket cap and slot count.
    Subclassed per relay (the `relay` class attribute) because websockets instantiates it."""

    relay: "WsRelay"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.counted = False
        self.has_slot = False
        super().__init__(*args, **kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        relay = self.relay
        if relay._sockets >= relay._socket_cap:
            # Refused before websockets ever sees it: no handler, no buffers, the fd closed now.
            relay._throttle.note("overload", "WebSocket relay: %d sockets open (cap %d); dropping new "
                                 "connections until some close", relay._sockets, relay._socket_cap)
            transport.abort()
            return
        self.counted = True
        relay._sockets += 1
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.counted:
            return
        self.counted = False
        relay = self.relay
        relay._sockets -= 1
        if self.has_slot:
            self.has_slot = False
            relay._slots -= 1
        super().connection_lost(exc)


@dataclass
class _Flow:
    """One relayed connection's bookkeeping."""

    peer: str
    bucket: TokenBucket
    dropped: int = 0


class _WebSocketsLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The logger handed to websockets. It logs every failed handshake (a port scan, garbage,
    a client that hangs up early) at ERROR with a traceback: those go through the relay's
    throttle as one short line instead."""

    def __init__(self, logger: logging.Logger, throttle: _LogThrottle) -> None:
        super().__init__(logger, {})
        self._throttle = throttle

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if msg == "opening handshake failed":
            exc = sys.exc_info()[1]
            self._throttle.note("handshake", "WebSocket relay: failed handshake: %s",
                                f"{type(exc).__name__}: {exc}" if exc else "unknown error")
            return
        super().log(level, msg, *args, **kwargs)


class WsRelay:
    """Relays authenticated MQTT-over-WebSocket clients to a broker's TCP listener."""

    def __init__(self, listen_host: str, listen_port: int, target_host: str, target_port: int,
                 path: str = "/mqtt", *,
                 authorize: RequestCheck | None = None,
                 allowed_origins: RequestCheck | None = None,
                 username: str | None = None, password: str | None = None,
                 max_connections: int = 64, max_buffer_bytes: int = 256 * 1024,
                 handshake_timeout_s: float = 5.0, ping_interval_s: float = 20.0,
                 ping_timeout_s: float = 20.0,
                 publish_rate: float = 5.0, publish_burst: int = 20) -> None:
        """`authorize(request)` is the session check on the upgrade request and
        `allowed_origins(request)` the Origin check; both run on the relay's event loop, so
        they must be quick and must not block. None skips the check (tests only). `username`
        and `password` are the broker account every browser gets; None: no credentials."""
        if max_connections < 1 or max_buffer_bytes < 4096:
            raise ValueError("max_connections must be >= 1 and max_buffer_bytes >= 4096")
        TokenBucket(publish_rate, publish_burst)  # validates the pair
        self.listen_host = listen_host
        self.port = listen_port
        self.target_host = target_host
        self.target_port = target_port
        self.path = path
        self.authorize = authorize
        self.allowed_origins = allowed_origins
        self.username = username
        self.password = password
        self.max_connections = max_connections
        self.max_buffer_bytes = max_buffer_bytes
        self.handshake_timeout_s = handshake_timeout_s
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self.publish_rate = publish_rate
        self.publish_burst = publish_burst
        # Only the relay's loop writes these; other threads may read them.
        self._slots = 0  # upgrades admitted and not yet closed
        self._sockets = 0  # accepted TCP sockets, admitted or still in their handshake
        # Sockets still in their handshake get as many places again as there are slots.
        self._socket_cap = max_connections + max(16, max_connections)
        self._accept_backlog = max(16, min(max_connections, 128))
        self._throttle = _LogThrottle(log, LOG_WINDOW_S)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._serving = False
        self._error: OSError | None = None

    @property
    def connections(self) -> int:
        """Admitted WebSocket connections currently open (at most max_connections)."""
        return self._slots

    def alive(self) -> bool:
        """True while the relay thread runs and serves; False once it stopped or crashed."""
        thread = self._thread
        return thread is not None and thread.is_alive() and self._serving

    def start(self, timeout: float = 10.0) -> "WsRelay":
        """Bind and start relaying; raises BrokerError if the listen address cannot be bound."""
        if self._thread is not None:
            return self
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="deskpulse-ws-relay", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise BrokerError(f"WebSocket relay did not start within {timeout:g}s")
        if self._error is not None:
            self._thread.join(timeout)
            self._thread = None
            reason = self._error.strerror or str(self._error)
            raise BrokerError(f"WebSocket relay cannot listen on {self.listen_host}:{self.port}: {reason}")
        log.info("WebSocket relay ws://%s:%d%s -> mqtt://%s:%d (max %d connections)", self.listen_host,
                 self.port, self.path, self.target_host, self.target_port, self.max_connections)
        if self.authorize is None and not is_loopback(self.listen_host):
            log.warning("WebSocket relay on %s has no session check: anyone who reaches it gets the "
                        "broker account %s", self.listen_host, self.username or "(anonymous)")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close every client connection (and its broker connection) and end the thread."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and thread.is_alive():
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:  # the loop already closed on its own
                pass
        thread.join(timeout)
        if thread.is_alive():
            log.warning("WebSocket relay thread did not stop within %gs", timeout)
        self._thread = None

    def __enter__(self) -> "WsRelay":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- relay thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:  # nothing above this thread would see it; alive() turns False
            log.critical("WebSocket relay crashed", exc_info=True)
        finally:
            self._serving = False
            self._ready.set()

    async def _main(self) -> None:
        ws_log = logging.getLogger(__name__ + ".server")
        if ws_log.level == logging.NOTSET:
            # websockets logs every frame at DEBUG and every connection at INFO: at 10 fps x N
            # viewers that floods the journal and costs CPU. Opt in by setting this logger's level.
            ws_log.setLevel(logging.WARNING)
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        connection_class = type("RelayConnection", (_RelayConnection,), {"relay": self})
        try:
            try:
                server = await serve(
                    self._handle, self.listen_host, self.port,
                    process_request=self._admit,
                    subprotocols=list(SUBPROTOCOLS),  # type: ignore[arg-type]
                    compression=None,  # JPEG does not compress, and deflate costs the Pi CPU per viewer
                    max_size=MAX_CLIENT_MESSAGE_BYTES,
                    max_queue=max(1, self.max_buffer_bytes // MAX_CLIENT_MESSAGE_BYTES),
                    write_limit=self.max_buffer_bytes // 2,
                    open_timeout=self.handshake_timeout_s,
                    ping_interval=self.ping_interval_s,
                    ping_timeout=self.ping_timeout_s,
                    close_timeout=CLOSE_TIMEOUT_S,
                    create_connection=connection_class,
                    logger=_WebSocketsLog(ws_log, self._throttle),
                    # asyncio accepts up to `backlog` sockets per loop pass, before the cap in
                    # connection_made sees them: keep that batch small too.
                    backlog=self._accept_backlog,
                )
            except OSError as exc:
                self._error = exc
                self._ready.set()
                return
            self.port = _bound_port(server, self.port)
            self._serving = True
            self._ready.set()
            housekeeping = asyncio.create_task(self._housekeeping(), name="relay-log-flush")
            try:
                await self._stopping.wait()
            finally:
                self._serving = False
                housekeeping.cancel()
                server.close(close_connections=True)
                await server.wait_closed()
        finally:
            self._throttle.flush(force=True)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(LOG_WINDOW_S)
            self._throttle.flush()

    # --- the upgrade ----------------------------------------------------------------------------

    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        """process_request: refuse what may not connect, before any broker connection exists."""
        peer = _peer(connection)
        if request.path.split("?", 1)[0] != self.path:
            return self._refuse(connection, HTTPStatus.NOT_FOUND, "404", peer,
                                f"MQTT over WebSocket is at {self.path}\n", f"path {request.path[:80]!r}")
        if self.allowed_origins is not None and not self._check(self.allowed_origins, request, peer):
            return self._refuse(connection, HTTPStatus.FORBIDDEN, "403", peer, "Origin not allowed\n",
                                f"Origin {str(request.headers.get('Origin'))[:80]!r}")
        if self.authorize is not None and not self._check(self.authorize, request, peer):
            return self._refuse(connection, HTTPStatus.UNAUTHORIZED, "401", peer,
                                "Log in to the dashboard first\n", "no valid session")
        if self._slots >= self.max_connections:
            return self._refuse(connection, HTTPStatus.SERVICE_UNAVAILABLE, "503", peer,
                                "Too many connections; try again later\n",
                                f"{self._slots} of {self.max_connections} connections in use")
        if isinstance(connection, _RelayConnection) and connection.counted:
            connection.has_slot = True
            self._slots += 1
        return None

    def _check(self, check: RequestCheck, request: Request, peer: str) -> bool:
        try:
            return bool(check(request))
        except Exception as exc:  # a bug in the check refuses; it never lets anyone in
            self._throttle.note("check-error", "WebSocket relay: check %r raised for %s: %r",
                                getattr(check, "__name__", check), peer, exc)
            return False

    def _refuse(self, connection: ServerConnection, status: HTTPStatus, kind: str, peer: str, body: str,
                detail: str) -> Response:
        self._throttle.note(kind, "WebSocket relay: refused %s (%d %s): %s", peer, status.value,
                            status.phrase, detail)
        return connection.respond(status, body)

    # --- a relayed connection ---------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        peer = _peer(ws)
        splitter = PacketSplitter(MAX_CLIENT_PACKET_BYTES)
        try:
            connect, rest = await asyncio.wait_for(self._read_connect(ws, splitter), self.handshake_timeout_s)
        except asyncio.TimeoutError:
            await self._close(ws, _Close(CloseCode.POLICY_VIOLATION, "no MQTT CONNECT", "no-connect",
                                         f"no MQTT CONNECT within {self.handshake_timeout_s:g}s"), peer)
            return
        except _Close as close:
            await self._close(ws, close, peer)
            return
        except ConnectionClosed:
            self._note_closed(ws, peer)
            return
        client_id = CLIENT_ID_PREFIX + secrets.token_hex(4)  # 22 characters: MQTT 3.1's limit is 23
        packet = rewrite_connect(connect, client_id=client_id, username=self.username, password=self.password)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.target_host, self.target_port, limit=self.max_buffer_bytes // 4),
                BROKER_CONNECT_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError) as exc:
            self._throttle.note("broker", "WebSocket relay: broker %s:%d unreachable for %s: %s",
                                self.target_host, self.target_port, peer, exc or "timeout")
            await ws.close(CloseCode.INTERNAL_ERROR, "broker unreachable")
            return
        writer.transport.set_write_buffer_limits(high=self.max_buffer_bytes // 4)
        flow = _Flow(peer, TokenBucket(self.publish_rate, self.publish_burst))
        log.debug("WebSocket relay: %s connected as %s (%s, MQTT level %d), %d open", peer, client_id,
                  ws.subprotocol, connect.level, self._slots)
        writer.write(packet)
        up = asyncio.create_task(self._ws_to_tcp(ws, splitter, rest, writer, flow), name="ws->tcp")
        down = asyncio.create_task(self._tcp_to_ws(reader, ws), name="tcp->ws")
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            up.cancel()
            down.cancel()
            results = await asyncio.gather(up, down, return_exceptions=True)
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, asyncio.CancelledError):
                pass
        for result in results:
            if isinstance(result, _Close):
                await self._close(ws, result, peer)
            elif isinstance(result, ConnectionClosed):
                self._note_closed(ws, peer)
            elif isinstance(result, Exception) and not isinstance(result, ConnectionError):
                log.warning("WebSocket relay: %s failed: %r", peer, result)
        if flow.dropped:
            log.debug("WebSocket relay: %s dropped %d request publishes in all", peer, flow.dropped)
        log.debug("WebSocket relay: %s closed, %d open", peer, self._slots)
        # Returning makes websockets close the browser side (normal closure) if still open.

    async def _read_connect(self, ws: ServerConnection, splitter: PacketSplitter) -> tuple[Connect, list[Packet]]:
        """The browser's CONNECT (parsed) and any packets that arrived with it."""
        while True:
            packets = self._split(splitter, await ws.recv())
            if packets:
                first = packets[0]
                if first.type != PacketType.CONNECT:
                    raise _Close(CloseCode.PROTOCOL_ERROR, "first packet must be CONNECT",
                                 detail=f"first packet is type {first.type}, not CONNECT")
                try:
                    return parse_connect(first.raw), packets[1:]
                except MalformedPacket as exc:
                    raise _Close(CloseCode.PROTOCOL_ERROR, "malformed CONNECT", detail=f"malformed CONNECT: {exc}")

    @staticmethod
    def _split(splitter: PacketSplitter, message: str | bytes) -> list[Packet]:
        if isinstance(message, str):
            # MQTT over WebSocket is binary-only (MQTT 3.1.1 section 6); a text frame is a bug.
            raise _Close(CloseCode.UNSUPPORTED_DATA, "MQTT needs binary frames", detail="sent a text frame")
        try:
            return splitter.feed(message)
        except PacketTooLarge as exc:
            raise _Close(CloseCode.MESSAGE_TOO_BIG, "packet too large", detail=str(exc))
        except MalformedPacket as exc:
            raise _Close(CloseCode.PROTOCOL_ERROR, "malformed MQTT packet", detail=f"malformed packet: {exc}")

    def _admitted(self, packets: list[Packet], flow: _Flow) -> bytes:
        """The packets that go on to the broker, concatenated; raises _Close for forbidden ones."""
        out: list[bytes] = []
        for packet in packets:
            if packet.type == PacketType.PUBLISH:
                if not flow.bucket.take():
                    flow.dropped += 1
                    self._throttle.note("publish-drop", "WebSocket relay: %s sends requests faster than %g/s "
                                        "(burst %d); dropping the excess", flow.peer, self.publish_rate,
                                        self.publish_burst)
                    continue
            elif packet.type == PacketType.CONNECT:
                raise _Close(CloseCode.PROTOCOL_ERROR, "second CONNECT", detail="sent a second CONNECT")
            elif packet.type not in CLIENT_PACKETS:
                raise _Close(CloseCode.PROTOCOL_ERROR, "not a client packet",
                             detail=f"sent packet type {packet.type}, which clients may not send")
            out.append(packet.raw)
        return b"".join(out)

    async def _ws_to_tcp(self, ws: ServerConnection, splitter: PacketSplitter, first: list[Packet],
                         writer: asyncio.StreamWriter, flow: _Flow) -> None:
        data = self._admitted(first, flow)
        while True:
            if data:
                writer.write(data)
            await writer.drain()  # a slow broker slows the browser, never grows our buffer
            data = self._admitted(self._split(splitter, await ws.recv()), flow)

    async def _tcp_to_ws(self, reader: asyncio.StreamReader, ws: ServerConnection) -> None:
        chunk = self.max_buffer_bytes // 2
        while True:
            data = await reader.read(chunk)
            if not data:
                return  # the broker closed (bad credentials, ACL kick, shutdown)
            await ws.send(data)  # waits while this browser's write buffer is full

    async def _close(self, ws: ServerConnection, close: _Close, peer: str) -> None:
        self._throttle.note(close.kind, "WebSocket relay: closing %s: %s", peer, close.detail)
        await ws.close(close.code, close.reason)

    def _note_closed(self, ws: ServerConnection, peer: str) -> None:
        """Log the closes the relay's own WebSocket layer decided: dead peers, oversized messages."""
        sent = ws.protocol.close_sent
        if sent is None or ws.protocol.close_rcvd_then_sent:
            return  # the browser closed first
        if sent.code == CloseCode.INTERNAL_ERROR and "ping" in sent.reason:
            self._throttle.note("ping", "WebSocket relay: %s stopped answering pings; dropped", peer)
        elif sent.code == CloseCode.MESSAGE_TOO_BIG:
            self._throttle.note("protocol", "WebSocket relay: closing %s: a message over %d bytes", peer,
                                MAX_CLIENT_MESSAGE_BYTES)


def _bound_port(server: Server, fallback: int) -> int:
    for sock in server.sockets:
        return int(sock.getsockname()[1])
    return fallback


def _peer(ws: ServerConnection) -> str:
    try:
        addr: Any = ws.remote_address
    except Exception:  # no transport (yet)
        return "?"
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)
