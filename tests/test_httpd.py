"""web/httpd.py: waitress with a request deadline and a per-client connection cap, on port 0.

The 60-second slowloris against the installed dashboard is in test_security.py; these check
each limit on its own, quickly, with a trivial WSGI app.
"""

from __future__ import annotations

import http.client
import socket
import threading
from typing import Any, Callable, Iterator

import pytest

from web import httpd
from web.httpd import HttpServer


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = f"hello {environ['REMOTE_ADDR']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def server() -> Iterator[HttpServer]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    s = HttpServer(hello, sock).start()
    try:
        yield s
    finally:
        s.stop()


def get(server: HttpServer, source: str = "127.0.0.1") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def closed_by_server(sock: socket.socket, timeout: float = 10) -> bool:
    """True once the server has closed sock (EOF or reset) within timeout."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def finish(sock: socket.socket) -> bytes:
    """Send the rest of a request begun with its request line; the response's first bytes."""
    sock.sendall(b"Host: x\r\nConnection: close\r\n\r\n")
    sock.settimeout(10)
    return sock.recv(4096)


def test_serves_and_stops(server: HttpServer) -> None:
    assert get(server) == (200, b"hello 127.0.0.1")
    assert "deskpulse-web-http" in {t.name for t in threading.enumerate()}
    assert server.alive()
    server.stop()
    assert not server.alive()
    with pytest.raises(OSError):
        get(server)


def test_a_client_may_hold_only_so_many_connections(server: HttpServer) -> None:
    held = []
    try:
        for _ in range(httpd.PER_CLIENT_CONNECTIONS):
            s = socket.create_connection(("127.0.0.1", server.port), source_address=("127.0.0.3", 0))
            s.sendall(b"GET / HTTP/1.1\r\n")  # and never the rest
            held.append(s)
        extra = socket.create_connection(("127.0.0.1", server.port), source_address=("127.0.0.3", 0))
        held.append(extra)
        assert closed_by_server(extra), "one connection more than the cap was kept"
        assert finish(held[0]).startswith(b"HTTP/1.1 200 ")  # the ones within the cap stay
        # Everyone else is served as usual.
        assert get(server, "127.0.0.4") == (200, b"hello 127.0.0.4")
    finally:
        for s in held:
            s.close()


def test_a_request_must_arrive_within_the_deadline(server: HttpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(httpd, "REQUEST_TIMEOUT_S", 1)
    slow = socket.create_connection(("127.0.0.1", server.port))
    idle = socket.create_connection(("127.0.0.1", server.port))
    try:
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # headers started, never finished
        assert closed_by_server(slow), "a request still unfinished after the deadline was kept"
        # A connection that had sent nothing was idle, not late (waitress's idle timeout applies).
        idle.sendall(b"GET / HTTP/1.1\r\n")
        assert finish(idle).startswith(b"HTTP/1.1 200 ")
    finally:
        slow.close()
        idle.close()
