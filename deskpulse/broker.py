"""The embedded MQTT broker: amqtt in its own thread, for a box with no broker.

Used when `mqtt.broker = "auto"` and nothing answers on the default port, and by the fast
tests (on 127.0.0.1:0). It owns one thread with its own asyncio loop and stops it in
`stop()`.

It has no accounts (anonymous access), so it listens on loopback only, every listener of it:
a non-loopback host is refused here as well as in the config (mqtt.embedded_host). Browsers
on other hosts reach it only through the dashboard's authenticated relay (deskpulse/wsrelay.py),
which logs in for them; nothing anonymous is reachable from another host. The production
install uses mosquitto with accounts and ACLs instead.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

from .config.mqtt import is_loopback
from .errors import BrokerError

log = logging.getLogger(__name__)


def broker_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """amqtt with a TCP listener and (optionally) a WebSocket listener, both on loopback."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, ws_port: int | None = 0) -> None:
        if not is_loopback(host):
            raise BrokerError(f"the embedded broker has no accounts and listens on loopback only, not {host!r} "
                              "(mqtt.embedded_host)")
        self.host = host
        self._want_port = port
        self._want_ws_port = ws_port
        self.port = 0
        self.ws_port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> "EmbeddedBroker":
        self._thread = threading.Thread(target=self._run, name="deskpulse-embedded-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise BrokerError("embedded broker did not start in time")
        if self._error is not None:
            raise BrokerError(f"embedded broker failed to start on {self.host}:{self._want_port}: {self._error}")
        log.info("embedded MQTT broker listening on mqtt://%s:%d%s", self.host, self.port,
                 f" and ws://{self.host}:{self.ws_port}/" if self.ws_port else "")
        return self

    def _config(self) -> dict[str, Any]:
        listeners: dict[str, Any] = {
            "default": {"type": "tcp", "bind": f"{self.host}:{self._want_port}", "max_connections": 500},
        }
        if self._want_ws_port is not None:
            listeners["ws"] = {"type": "ws", "bind": f"{self.host}:{self._want_ws_port}", "max_connections": 500}
        return {
            "listeners": listeners,
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }

    def _run(self) -> None:
        from amqtt.broker import Broker  # imported here: only needed when embedding

        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)

        class ClosingBroker(Broker):  # type: ignore[misc]
            """amqtt 0.12 with two of its faults worked around:
            - it leaves a connection's transport open when it fails before CONNECT (a probe,
              a port check, garbage): close it once amqtt is done with it;
            - on every CONNECT it sends the new client the retained messages matching *any*
              client's subscriptions (client_connected loops over the broker's whole
              subscription table): only a filter this session holds gets them."""

            async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int],
                                                                  session: Any) -> None:
                holders = self._subscriptions.get(subscription[0], ())
                if any(holder is session for holder, _qos in holders):
                    await super()._publish_retained_messages_for_subscription(subscription, session)

            async def stream_connected(self, reader: Any, writer: Any, listener_name: str) -> None:
                try:
                    await super().stream_connected(reader, writer, listener_name)
                finally:
                    if not writer.is_closing():
                        writer.close()

        async def boot() -> None:
            self._broker = ClosingBroker(self._config(), loop=loop)
            await self._broker.start()
            servers = self._broker._servers  # amqtt keeps the bound servers here
            self.port = servers["default"].instance.sockets[0].getsockname()[1]
            if "ws" in servers:
                self.ws_port = list(servers["ws"].instance.sockets)[0].getsockname()[1]

        try:
            loop.run_until_complete(boot())
        except BaseException as exc:  # reported to start()'s caller
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.close()

    async def _shutdown(self) -> None:
        try:
            await self._broker.shutdown()
        except Exception:  # a half-started broker may not shut down cleanly; we are exiting anyway
            log.debug("embedded broker shutdown raised", exc_info=True)

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
