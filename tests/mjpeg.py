"""A tiny loopback MJPEG-over-HTTP server: a network camera stand-in for fault tests.

Serves `multipart/x-mixed-replace` JPEG parts (what IP cameras and `mjpg-streamer`
send, and what OpenCV's FFmpeg backend reads from an http:// URL) at a fixed rate. The
picture can be switched while it runs (`show`), and the server can be stopped, which
drops every open connection like an unplugged camera, and started again on the same
port. Loopback only; test code, not part of the product.
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from .support import free_port

BOUNDARY = "deskpulseframe"


def jpeg_of(image: np.ndarray | Path, quality: int = 85) -> bytes:
    """JPEG bytes of a BGR array or an image file."""
    if isinstance(image, Path):
        image = cv2.imread(str(image), cv2.IMREAD_COLOR)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


class MjpegServer:
    """`http://127.0.0.1:<port>/stream.mjpg`; `stop()` and `start()` keep the port."""

    def __init__(self, jpeg: bytes, fps: float = 15.0, port: int | None = None) -> None:
        self.port = port or free_port()
        self.fps = fps
        self._jpeg = jpeg
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._running = threading.Event()
        self.served = 0  # parts sent, over all connections
        self.connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def show(self, jpeg: bytes) -> None:
        """Switch the picture every client receives from the next part on."""
        with self._lock:
            self._jpeg = jpeg

    def _current(self) -> bytes:
        with self._lock:
            return self._jpeg

    def start(self) -> "MjpegServer":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/stream.mjpg":
                    self.send_error(404)
                    return
                owner._track(self.connection, True)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={BOUNDARY}")
                    self.send_header("Cache-Control", "no-cache")
                    self.end_headers()
                    period = 1.0 / owner.fps
                    while owner._running.is_set():
                        jpeg = owner._current()
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                         f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                        self.wfile.flush()
                        owner.served += 1
                        time.sleep(period)
                except OSError:
                    pass  # the client went away, or stop() cut us off
                finally:
                    owner._track(self.connection, False)

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._running.set()
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="test-mjpeg", daemon=True)
        self._thread.start()
        return self

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
                self.connections += 1
            else:
                self._conns.discard(conn)

    def stop(self) -> None:
        """Refuse new connections and cut the open ones (the camera is unplugged)."""
        self._running.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> "MjpegServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
