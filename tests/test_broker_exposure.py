"""What `./run.sh` (`deskpulse up` with the embedded broker) exposes to the network.

The promise: the embedded amqtt broker has no accounts, so it listens on loopback only, and
another host reaches MQTT only through the dashboard's relay, which wants a login session.

The end-to-end tests run `deskpulse up` exactly as ./run.sh does (the shipped
config/deskpulse.toml, `mqtt.broker = auto`, the default ports) inside a network namespace of
their own, joined by a veth pair to a second namespace that plays another host on the LAN
(10.213.7.2 -> 10.213.7.1). No traffic leaves those two namespaces: never this machine's real
addresses. They need root (network namespaces) and are skipped, saying why, without it.
The unit tests below them need nothing special.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import paho.mqtt.client as mqtt
import psutil
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from deskpulse.broker import EmbeddedBroker
from deskpulse.config import load_config
from deskpulse.errors import BrokerError, ConfigError

from .mqttbytes import CONNACK_OK, connect_packet, subscribe_packet
from .support import ROOT, Recorder, agent_env

R = TypeVar("R")

SERVER_IP, LAN_IP = "10.213.7.1", "10.213.7.2"
DEVICE = "exposed"
TOKEN = "exposure-test-token-0123456789abcdef"
CLONE_NEWNET = 0x40000000
SHIPPED_CONFIG = ROOT / "config" / "deskpulse.toml"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


class NetnsPair:
    """Two network namespaces of our own, joined by a veth pair: `server` (SERVER_IP) and `lan`
    (LAN_IP), each with its own loopback. Deleting the namespaces removes the veth pair."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.server, self.lan = f"dp-srv-{tag}", f"dp-lan-{tag}"
        self._veth = (f"dpv{tag}s", f"dpv{tag}l")  # interface names: at most 15 characters

    def create(self) -> "NetnsPair":
        a, b = self._veth
        try:
            _ip("netns", "add", self.server)
            _ip("netns", "add", self.lan)
            _ip("link", "add", a, "type", "veth", "peer", "name", b)
            _ip("link", "set", a, "netns", self.server)
            _ip("link", "set", b, "netns", self.lan)
            for ns, dev, addr in ((self.server, a, SERVER_IP), (self.lan, b, LAN_IP)):
                _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
                _ip("-n", ns, "link", "set", dev, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.delete()
            raise
        return self

    def delete(self) -> None:
        for ns in (self.server, self.lan):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", self._veth[0]], capture_output=True, timeout=30)

    def run(self, ns: str, fn: Callable[[], R], timeout: float = 60.0) -> R:
        """fn() in a thread that has joined namespace `ns`: every socket it (and any thread it
        starts) opens lives there. The test's other threads stay where they are."""
        result: list[Any] = []

        def body() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                with open(f"/run/netns/{ns}") as f:
                    if libc.setns(f.fileno(), CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns({ns}) failed")
                result.append((True, fn()))
            except BaseException as exc:  # handed to the caller
                result.append((False, exc))

        thread = threading.Thread(target=body, name=f"test-netns-{ns}", daemon=True)
        thread.start()
        thread.join(timeout)
        if not result:
            raise TimeoutError(f"{fn} did not finish within {timeout}s in {ns}")
        ok, value = result[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def netns() -> Iterator[NetnsPair]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the test builds its own network namespaces and veth pair")
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's `ip` for network namespaces")
    pair = NetnsPair()
    try:
        pair.create()
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create network namespaces here: {' '.join(exc.cmd)}: {exc.stderr.strip()}")
    try:
        yield pair
    finally:
        pair.delete()


class Up:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def _anonymous_state(port: int, timeout: float) -> bytes:
    """The retained availability of the device, read anonymously on 127.0.0.1:port."""
    got: list[bytes] = []
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(f"deskpulse/{DEVICE}/availability", 1)
    client.on_message = lambda c, u, m: (got.append(m.payload), done.set())
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return got[0] if got else b""


@pytest.fixture(scope="module")
def up(netns: NetnsPair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    data = tmp_path_factory.mktemp("up")
    log = data / "up.log"
    # ./run.sh's command, in the server namespace: nothing answers 127.0.0.1:1883 there, so
    # mqtt.broker = auto starts the embedded broker, on the shipped config's ports.
    env = agent_env(DESKPULSE_DATA_DIR=str(data), DESKPULSE_DEVICE_ID=DEVICE, DESKPULSE_WEB_TOKEN=TOKEN)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns.server, sys.executable, "-m", "deskpulse", "up",
             "--config", str(SHIPPED_CONFIG), "--source", "demo"],
            cwd=str(ROOT), env=env, stdout=out, stderr=subprocess.STDOUT)
    running = Up(proc, log)
    config = load_config(str(SHIPPED_CONFIG))
    web_ports = {config.web.port, config.web.ws_port}
    try:
        deadline = time.monotonic() + 120  # MediaPipe loads first
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"deskpulse up exited ({proc.returncode}):\n{running.text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"deskpulse up never announced itself:\n{running.text()[-3000:]}")
            try:
                if (netns.run(netns.server, lambda: _anonymous_state(1883, 2.0)) == b"online"
                        and {p for _, p in listening(netns, proc.pid)} >= web_ports):
                    break  # the agent is online and the dashboard (started after it) listens
            except OSError:
                pass
            time.sleep(0.2)  # polling for the process to come up, not an assertion
        yield running
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def listening(netns: NetnsPair, pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket `pid` listens on, read by psutil inside its namespace
    (psutil reads /proc/net, which is the reader's namespace)."""
    code = ("import json, psutil; print(json.dumps(sorted({(c.laddr.ip, c.laddr.port) for c in "
            f"psutil.Process({pid}).net_connections('tcp') if c.status == psutil.CONN_LISTEN}})))")
    out = subprocess.run(["ip", "netns", "exec", netns.server, sys.executable, "-c", code],
                         check=True, capture_output=True, text=True, timeout=30).stdout
    return {(ip, port) for ip, port in json.loads(out)}


def _connack_over_tcp(host: str, port: int) -> bytes | None:
    """Speak MQTT to host:port: send an anonymous CONNECT, close our side, read what comes back.
    None if the connection itself is refused."""
    try:
        sock = socket.create_connection((host, port), timeout=10)
    except ConnectionRefusedError:
        return None
    with sock:
        sock.sendall(connect_packet(client_id="lan-probe"))
        sock.shutdown(socket.SHUT_WR)  # an HTTP server sees EOF and answers or closes at once
        data = b""
        try:
            while chunk := sock.recv(4096):
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        return data


def _upgrade_status(url: str, headers: dict[str, str]) -> int:
    """The HTTP status of a WebSocket upgrade to url (101: an open MQTT WebSocket)."""
    try:
        with ws_connect(url, subprotocols=["mqtt"], additional_headers=headers,  # type: ignore[list-item]
                        open_timeout=10):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code
    except (OSError, EOFError) as exc:
        if isinstance(exc, ConnectionRefusedError):
            return 0
        return -1  # not HTTP at all (an MQTT listener closes on a GET)


@pytest.mark.slow
def test_only_the_dashboard_listens_beyond_loopback(netns: NetnsPair, up: Up) -> None:
    config = load_config(str(SHIPPED_CONFIG))
    ports = listening(netns, up.proc.pid)
    loopback = {port for ip, port in ports if ip in ("127.0.0.1", "::1")}
    exposed = {port for ip, port in ports if ip not in ("127.0.0.1", "::1")}
    # The embedded broker is up (the fixture read its retained state) and on loopback only.
    assert {config.mqtt.embedded_port, config.mqtt.embedded_ws_port} <= loopback, ports
    assert exposed <= {config.web.port, config.web.ws_port}, ports


@pytest.mark.slow
def test_another_host_reaches_no_broker_without_the_token(netns: NetnsPair, up: Up) -> None:
    config = load_config(str(SHIPPED_CONFIG))
    ports = sorted({port for _, port in listening(netns, up.proc.pid)})
    page_origin = f"http://{SERVER_IP}:{config.web.port}"

    def probe() -> dict[int, tuple[bytes | None, int, int]]:
        out = {}
        for port in ports:
            raw = _connack_over_tcp(SERVER_IP, port)
            ws = _upgrade_status(f"ws://{SERVER_IP}:{port}/mqtt", {"Origin": page_origin})
            root = _upgrade_status(f"ws://{SERVER_IP}:{port}/", {"Origin": page_origin})
            out[port] = (raw, ws, root)
        return out

    seen = netns.run(netns.lan, probe, timeout=300)
    for port, (raw, ws, root) in seen.items():
        assert raw is None or not raw.startswith(b"\x20"), f"port {port} answered MQTT CONNECT from the LAN"
        assert 101 not in (ws, root), f"port {port} opened an MQTT WebSocket from the LAN without a session"
    # The broker's own ports refuse the connection outright; the relay wants a session.
    assert seen[config.mqtt.embedded_port][0] is None and seen[config.mqtt.embedded_ws_port][0] is None
    assert seen[config.web.ws_port][1] == 401


@pytest.mark.slow
def test_with_the_token_the_relay_is_the_way_in(netns: NetnsPair, up: Up) -> None:
    """The positive control: the same LAN host, logged in with the printed token URL, gets MQTT
    through the relay (and only there)."""
    config = load_config(str(SHIPPED_CONFIG))
    page = f"http://{SERVER_IP}:{config.web.port}"

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    def login_and_connect() -> tuple[int, bytes]:
        opener = urllib.request.build_opener(NoRedirect)
        try:
            response = opener.open(f"{page}/?token={TOKEN}", timeout=10)
            headers = response.headers
        except urllib.error.HTTPError as exc:  # the redirect that drops the token from the URL
            headers = exc.headers
        cookie = SimpleCookie()
        for value in headers.get_all("Set-Cookie") or []:
            cookie.load(value)
        session = "; ".join(f"{k}={m.value}" for k, m in cookie.items())
        assert session, f"no session cookie from the token URL: {dict(headers)}"
        url = f"ws://{SERVER_IP}:{config.web.ws_port}/mqtt"
        with ws_connect(url, subprotocols=["mqtt"], additional_headers={"Origin": page, "Cookie": session},  # type: ignore[list-item]
                        open_timeout=10) as ws:
            ws.send(connect_packet(client_id="lan-page"))
            answer = ws.recv(timeout=10)
        return 101, answer if isinstance(answer, bytes) else answer.encode()

    status, connack = netns.run(netns.lan, login_and_connect)
    assert status == 101 and connack == bytes([0x20, 0x02, 0x00, 0x00])


# --- without namespaces: the embedded broker itself ------------------------------------------------


def test_embedded_broker_listens_on_loopback_only() -> None:
    me = psutil.Process()
    before = {c.laddr for c in me.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
    with EmbeddedBroker("127.0.0.1", 0, ws_port=0) as broker:
        assert broker.ws_port
        mine = {c.laddr for c in me.net_connections("tcp") if c.status == psutil.CONN_LISTEN} - before
        assert {(a.ip, a.port) for a in mine} == {("127.0.0.1", broker.port), ("127.0.0.1", broker.ws_port)}
        # Another loopback address of this machine is already "elsewhere" for a bound socket.
        for port in (broker.port, broker.ws_port):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.2", port), timeout=5).close()
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "deskpi.local"])
def test_embedded_broker_refuses_a_non_loopback_host(host: str) -> None:
    with pytest.raises(BrokerError, match="loopback only"):
        EmbeddedBroker(host, 0)
    with pytest.raises(ConfigError, match=r"mqtt\.embedded_host.*loopback only"):
        load_config(None, {"mqtt.embedded_host": host})


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_embedded_host_accepts_loopback(host: str) -> None:
    assert load_config(None, {"mqtt.embedded_host": host}).mqtt.embedded_host == host


def test_embedded_host_in_a_file_names_the_key_and_file(tmp_path: Path) -> None:
    cfg = tmp_path / "deskpulse.toml"
    cfg.write_text('[mqtt]\nembedded_host = "0.0.0.0"\n')
    with pytest.raises(ConfigError) as err:
        load_config(str(cfg))
    message = str(err.value)
    assert "mqtt.embedded_host" in message and str(cfg) in message and "\n" not in message.strip()
    result = subprocess.run([sys.executable, "-m", "deskpulse", "check-config", "--config", str(cfg)],
                            cwd=str(ROOT), env=agent_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "mqtt.embedded_host" in result.stderr and "Traceback" not in result.stderr


def test_embedded_broker_sends_retained_messages_only_for_the_clients_own_subscriptions(broker) -> None:
    """amqtt 0.12 handed every connecting client the retained messages matching other clients'
    subscriptions, before it had subscribed to anything (seen as a page's CONNACK followed by
    the agent's availability). A client gets a retained message only for its own filter."""
    broker_client = Recorder(broker.port, "deskpulse/#")  # someone else's subscription
    publisher = Recorder(broker.port, [])
    try:
        publisher.publish("deskpulse/exposed/availability", "online", retain=True)
        broker_client.wait_topic("deskpulse/exposed/availability")
        raw = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
        try:
            raw.sendall(connect_packet(client_id="no-subscriptions"))
            raw.settimeout(10)
            received = raw.recv(4)
            assert received == CONNACK_OK
            # A subscription of its own then brings the retained message: the positive control.
            raw.sendall(subscribe_packet("deskpulse/+/availability"))
            data = b""
            while b"deskpulse/exposed/availability" not in data:
                chunk = raw.recv(4096)
                assert chunk, "broker closed the connection"
                data += chunk
            # Nothing came before the SUBACK (type 9): the first packet after CONNACK is it.
            assert data[0] >> 4 == 9, data[:20]
        finally:
            raw.close()
    finally:
        publisher.close()
        broker_client.close()
