"""The browser's path to the broker: a WebSocket -> TCP byte relay.

Owns one thread ("deskpulse-ws-relay") running an asyncio loop with a `websockets` server.
For every browser connection on `ws://<listen>/mqtt` it opens one TCP connection to the
broker and copies bytes both ways unchanged: each WebSocket message is written to TCP as-is,
and whatever TCP delivers goes back as one binary WebSocket message.

It must not parse, filter or alter MQTT, and must not know any topic: the browser speaks MQTT
to mosquitto itself, so mosquitto authenticates it and its ACLs apply. It must not buffer
without bound either: a slow browser stalls only its own TCP read, and the stall propagates
back to the broker through TCP flow control.

Why it exists: mosquitto 2.0.11 (Debian 12, Pi OS bookworm) has a websockets listener that
takes seconds per 30 KB message, so 10 fps camera frames pile up without bound. Its plain TCP
listener is fast; this relay puts a fast WebSocket front on it (see docs/frame-path.md).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .errors import BrokerError

log = logging.getLogger(__name__)

# What mqtt.js offers: "mqtt" for MQTT 3.1.1/5, "mqttv3.1" for protocolVersion 3.
SUBPROTOCOLS = ("mqtt", "mqttv3.1")
# A 640x480 JPEG is ~40 KB; a 1080p one can pass 1 MB. MQTT's own limits live in mosquitto.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# Big reads mean one WebSocket message per frame rather than several; the buffer stays bounded
# because StreamReader pauses the socket once it holds 2 * READ_LIMIT bytes.
READ_LIMIT = 256 * 1024
# Bytes queued towards one browser before send() waits; bounded backpressure per viewer.
WRITE_LIMIT = 256 * 1024
CONNECT_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 3.0


class WsRelay:
    """Relays MQTT-over-WebSocket clients to a broker's TCP listener, byte for byte."""

    def __init__(self, listen_host: str, listen_port: int, target_host: str, target_port: int,
                 path: str = "/mqtt") -> None:
        self.listen_host = listen_host
        self.port = listen_port
        self.target_host = target_host
        self.target_port = target_port
        self.path = path
        # Read from other threads; only the relay's loop writes it.
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: OSError | None = None

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
        log.info("WebSocket relay ws://%s:%d%s -> mqtt://%s:%d", self.listen_host, self.port, self.path,
                 self.target_host, self.target_port)
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
        except Exception:  # nothing above this thread would see it
            log.warning("WebSocket relay crashed", exc_info=True)
        finally:
            self._ready.set()

    async def _main(self) -> None:
        ws_log = logging.getLogger(__name__ + ".server")
        if ws_log.level == logging.NOTSET:
            # websockets logs every frame at DEBUG and every connection at INFO: at 10 fps x N
            # viewers that floods the journal and costs CPU. Opt in by setting this logger's level.
            ws_log.setLevel(logging.WARNING)
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            server = await serve(
                self._handle, self.listen_host, self.port,
                process_request=self._check_path,
                subprotocols=list(SUBPROTOCOLS),  # type: ignore[arg-type]
                compression=None,  # JPEG does not compress, and deflate costs the Pi CPU per viewer
                max_size=MAX_MESSAGE_BYTES,
                write_limit=WRITE_LIMIT,
                # MQTT keepalive already runs end to end (mqtt.js <-> mosquitto) and closes dead
                # sessions; WebSocket pings would only add a second, disagreeing timeout.
                ping_interval=None,
                close_timeout=CLOSE_TIMEOUT_S,
                logger=ws_log,
            )
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
        self.port = _bound_port(server, self.port)
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close(close_connections=True)
            await server.wait_closed()

    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?", 1)[0] != self.path:
            return connection.respond(HTTPStatus.NOT_FOUND, f"MQTT over WebSocket is at {self.path}\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        peer = _peer(ws)
        self.connections += 1
        try:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.target_host, self.target_port, limit=READ_LIMIT),
                    CONNECT_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError) as exc:
                log.warning("WebSocket relay: broker %s:%d unreachable for %s: %s", self.target_host,
                            self.target_port, peer, exc or "timeout")
                await ws.close(1011, "broker unreachable")
                return
            log.debug("WebSocket relay: %s connected (%s), %d open", peer, ws.subprotocol, self.connections)
            up = asyncio.create_task(self._ws_to_tcp(ws, writer), name="ws->tcp")
            down = asyncio.create_task(self._tcp_to_ws(reader, ws), name="tcp->ws")
            try:
                done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
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
                if isinstance(result, Exception) and not isinstance(result, (ConnectionClosed, ConnectionError)):
                    log.warning("WebSocket relay: %s failed: %r", peer, result)
            # Returning makes websockets close the browser side (normal closure) if still open.
        finally:
            self.connections -= 1
            log.debug("WebSocket relay: %s closed, %d open", peer, self.connections)

    async def _ws_to_tcp(self, ws: ServerConnection, writer: asyncio.StreamWriter) -> None:
        async for message in ws:
            if isinstance(message, str):
                # MQTT over WebSocket is binary-only (MQTT 3.1.1 section 6); a text frame is a bug.
                log.warning("WebSocket relay: %s sent a text frame; closing", _peer(ws))
                await ws.close(1003, "MQTT needs binary frames")
                return
            writer.write(message)
            await writer.drain()  # a slow broker slows the browser, never grows our buffer

    async def _tcp_to_ws(self, reader: asyncio.StreamReader, ws: ServerConnection) -> None:
        while True:
            data = await reader.read(READ_LIMIT)
            if not data:
                return  # the broker closed (bad credentials, ACL kick, shutdown)
            await ws.send(data)  # waits while this browser's write buffer is full


def _bound_port(server: Server, fallback: int) -> int:
    for sock in server.sockets:
        return int(sock.getsockname()[1])
    return fallback


def _peer(ws: ServerConnection) -> str:
    addr: Any = ws.remote_address
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)
