"""The dashboard's HTTP server: waitress, hardened against slow and greedy clients.

Owns one named thread ("deskpulse-web-http") running waitress's event loop on a socket the
caller bound, and waitress's worker threads. waitress reads every request in that loop and
hands a worker only a complete one, so a client dribbling its headers holds a connection,
never a thread. On top of waitress's own limits (idle timeout, header and body size, total
connections) this adds what it lacks against slowloris:

- a deadline for receiving a whole request (headers and body), and
- a cap on connections per client address, so one client cannot fill the connection table.

It knows nothing of the app it serves.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

log = logging.getLogger(__name__)

THREADS = 4
# A request's headers and body must all arrive within this; a keep-alive connection may idle
# this long between requests.
REQUEST_TIMEOUT_S = 10
IDLE_TIMEOUT_S = 30
# Browsers open about 6 connections per host; a reverse proxy (one address for everyone) more.
PER_CLIENT_CONNECTIONS = 32
CONNECTION_LIMIT = 256
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024  # the login form is the only body the app takes
LOOP_TIMEOUT_S = 1.0


class _Channel(HTTPChannel):
    """waitress's channel, remembering when the request it is receiving began."""

    request_began = 0.0

    def received(self, data: bytes) -> bool:
        if self.request is None:
            self.request_began = time.time()  # waitress keeps its channel times on time.time()
        return bool(super().received(data))


class _Server(TcpWSGIServer):  # type: ignore[misc]
    channel_class = _Channel
    # Clients refused for holding too many connections, so the journal says so once per episode.
    capped: set[str] = set()

    def held_by(self, client: str) -> int:
        return sum(1 for ch in self.active_channels.values() if ch.addr and ch.addr[0] == client)

    def handle_accept(self) -> None:
        try:
            accepted = self.accept()
            if accepted is None:
                return
            conn, addr = accepted
            self.set_socket_options(conn)
        except OSError:
            return
        addr = self.fix_addr(addr)
        client = addr[0] if isinstance(addr, tuple) else str(addr)
        if self.held_by(client) >= PER_CLIENT_CONNECTIONS:
            if client not in self.capped:
                self.capped = self.capped | {client}
                log.warning("HTTP: %s holds %d connections; refusing more from it", client,
                            PER_CLIENT_CONNECTIONS)
            conn.close()
            return
        self.channel_class(self, conn, addr, self.adj, map=self._map)

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle keep-alive connections (channel_timeout)
        self.capped = {c for c in self.capped if self.held_by(c) >= PER_CLIENT_CONNECTIONS}
        cutoff = now - REQUEST_TIMEOUT_S
        for channel in list(self.active_channels.values()):
            request = channel.request
            if request is not None and not request.completed and not channel.requests \
                    and channel.request_began < cutoff:
                log.info("HTTP: %s did not finish its request within %ds; closing", channel.addr,
                         REQUEST_TIMEOUT_S)
                channel.will_close = True


class HttpServer:
    """Serves a WSGI app on an already bound, listening socket until stop()."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        queue_log = logging.getLogger("waitress.queue")
        if queue_log.level == logging.NOTSET:
            # "Task queue depth is 1" whenever a page loads its assets at once: expected with a
            # few threads, and noise in the journal. Opt in by setting this logger's level.
            queue_log.setLevel(logging.ERROR)
        self._map: dict[int, Any] = {}
        adj = Adjustments(
            threads=THREADS,
            connection_limit=CONNECTION_LIMIT,
            channel_timeout=IDLE_TIMEOUT_S,
            cleanup_interval=1,
            max_request_header_size=MAX_HEADER_BYTES,
            max_request_body_size=MAX_BODY_BYTES,
            asyncore_use_poll=True,  # select() fails past fd 1024
            ident="deskpulse",
        )
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(adj.threads)
        self._server = _Server(app, map=self._map, _sock=sock, dispatcher=dispatcher, adj=adj,
                               bind_socket=False, sockinfo=(sock.family, sock.type, sock.proto, sock.getsockname()))
        self.port = int(sock.getsockname()[1])
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "HttpServer":
        self._thread = threading.Thread(target=self._run, name="deskpulse-web-http", daemon=True)
        self._thread.start()
        return self

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=LOOP_TIMEOUT_S, map=self._map, use_poll=True, count=1)
        except Exception:  # nothing above this thread would see it
            log.exception("HTTP server loop crashed")
        finally:
            wasyncore.close_all(self._map)
            self._server.task_dispatcher.shutdown(timeout=5)

    def stop(self, timeout: float = 10.0) -> None:
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        if thread.is_alive():
            try:
                self._server.pull_trigger()  # wake the loop now rather than at its next timeout
            except OSError:
                pass
        thread.join(timeout)
        if thread.is_alive():
            log.warning("HTTP server thread did not stop within %gs", timeout)
        self._thread = None
