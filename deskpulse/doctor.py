"""`deskpulse doctor`: checks the things that stop DeskPulse working, one line each with a fix.

Camera access, broker reachability and credentials, the browsers' WebSocket path, the pose
model, the disk and the clock. Read-only: it changes nothing, and it talks only to the
configured camera and broker.
"""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

from .config import Config
from .errors import DeskPulseError

MIN_FREE_MB = 200


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def check_camera(config: Config) -> Check:
    from .capture import open_source, resolve_auto
    from .sources import parse_source

    spec = resolve_auto(parse_source(config.camera.source))
    if spec.kind == "device" and isinstance(spec.target, str):
        dev = Path(spec.target)
        if not dev.exists():
            return Check("camera", False, f"{dev} does not exist", "plug the camera in; `v4l2-ctl --list-devices` lists cameras")
        if not os.access(dev, os.R_OK | os.W_OK):
            groups = {grp.getgrgid(gid).gr_name for gid in os.getgroups()}
            return Check("camera", False, f"no permission to open {dev}",
                         "add the user to the video group: sudo usermod -aG video $USER (then log in again)"
                         if "video" not in groups else f"check the permissions of {dev}")
    try:
        source = open_source(spec, config.camera)
    except DeskPulseError as exc:
        return Check("camera", False, str(exc), "check camera.source (deskpulse check-config)")
    try:
        frame = source.read()
    finally:
        source.close()
    if frame is None:
        return Check("camera", False, f"{spec.describe()} opened but delivered no frame", "try another source or cable")
    return Check("camera", True, f"{spec.describe()}: {frame.shape[1]}x{frame.shape[0]} frames")


def check_broker(config: Config) -> Check:
    from .mqttclient import connect, target_address

    addr = target_address(config)
    try:
        client = connect(addr, timeout=5)
    except DeskPulseError as exc:
        fix = ("set DESKPULSE_MQTT_USERNAME/DESKPULSE_MQTT_PASSWORD (see /etc/deskpulse/agent.env)"
               if "refused us" in str(exc) else "start mosquitto (systemctl status mosquitto) or fix mqtt.broker")
        return Check("broker", False, str(exc), fix)
    client.disconnect()
    client.loop_stop()
    return Check("broker", True, f"mqtt://{addr.host}:{addr.port} accepts {addr.username or 'anonymous'}")


def _upgrade_status(port: int, origin: str) -> str:
    """The relay's answer to a WebSocket upgrade with no session: its HTTP status line."""
    import base64
    import os
    import socket

    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"Sec-WebSocket-Protocol: mqtt\r\nOrigin: {origin}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request.encode())
        return sock.recv(256).decode("latin-1").split("\r\n", 1)[0]


def check_websocket(config: Config) -> Check:
    """The browsers' path: the relay answers (and refuses a browser without a session), and
    the broker behind it takes the page's account."""
    import paho.mqtt.client as mqtt

    from web.server import relay_target_of

    web = config.web
    port = web.ws_port
    try:
        status = _upgrade_status(port, f"http://127.0.0.1:{web.port}")
    except OSError as exc:
        return Check("websocket", False, f"nothing answers on ws://127.0.0.1:{port}/mqtt ({exc.strerror or exc})",
                     "start the dashboard: systemctl status deskpulse-web (or deskpulse web)")
    if not any(f" {code} " in f"{status} " for code in (401, 403)):
        return Check("websocket", False, f"ws://127.0.0.1:{port}/mqtt answered {status!r} to a browser with no session "
                     "(expected 401)", "is something else listening on web.ws_port?")
    host, target = relay_target_of(config)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    if web.viewer_username:
        client.username_pw_set(web.viewer_username, web.viewer_password.get_secret_value() if web.viewer_password else None)
    result: list[str] = []
    client.on_connect = lambda c, u, f, rc, p=None: result.append(rc.getName())
    try:
        client.connect(host, target, keepalive=10)
    except OSError as exc:
        return Check("websocket", False, f"the relay's broker mqtt://{host}:{target} does not answer "
                     f"({exc.strerror or exc})", "check web.relay_target and that the broker runs")
    client.loop_start()
    deadline = time.monotonic() + 5
    while not result and time.monotonic() < deadline:
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()
    if result and result[0] == "Success":
        return Check("websocket", True, f"browsers reach the broker through ws://<pi>:{port}/mqtt after logging in")
    return Check("websocket", False, f"mqtt://{host}:{target} with the page's account: {result[0] if result else 'no MQTT answer'}",
                 "check web.relay_target and the viewer credentials (DESKPULSE_WEB_VIEWER_PASSWORD)")


def check_model(config: Config) -> Check:
    import cv2

    from .demo import DemoScene
    from .pose import MediaPipePose

    try:
        pose = MediaPipePose()
    except DeskPulseError as exc:
        return Check("pose model", False, str(exc), "reinstall: scripts/setup_venv.sh <venv>")
    try:
        found = pose.estimate(cv2.cvtColor(DemoScene().frame(0), cv2.COLOR_BGR2RGB))
    finally:
        pose.close()
    if found is None:
        return Check("pose model", False, "loaded, but found no person in the demo frame", "reinstall mediapipe==0.10.18")
    return Check("pose model", True, "MediaPipe pose (bundled model) finds the person in the demo frame")


def check_disk(config: Config) -> Check:
    path = config.data_dir
    probe = path if path.exists() else next((p for p in path.parents if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free / 2**20
    if not os.access(probe, os.W_OK):
        return Check("disk", False, f"{probe} is not writable", f"chown the data dir to the service user: {path}")
    if free < MIN_FREE_MB:
        return Check("disk", False, f"only {free:.0f} MB free under {probe}", "free some space (history needs little, but SQLite needs room)")
    return Check("disk", True, f"{free / 1024:.1f} GB free under {probe}")


def check_clock(config: Config) -> Check:
    year = time.gmtime().tm_year
    if year < 2025:
        return Check("clock", False, f"the clock says {year}", "a Pi has no RTC: wait for NTP (timedatectl) or set the time")
    synced = None
    if shutil.which("timedatectl"):
        out = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], capture_output=True,
                             text=True, timeout=5)
        synced = out.stdout.strip() == "yes" if out.returncode == 0 and out.stdout.strip() else None
    if synced is False:
        return Check("clock", False, "not synchronised by NTP", "check network time: timedatectl status")
    return Check("clock", True, time.strftime("%Y-%m-%d %H:%M:%S %Z") + ("" if synced is None else ", NTP synchronised"))


CHECKS: tuple[Callable[[Config], Check], ...] = (
    check_camera, check_broker, check_websocket, check_model, check_disk, check_clock,
)


def doctor_command(config: Config, out: TextIO, checks: tuple[Callable[[Config], Check], ...] = CHECKS) -> int:
    failed = 0
    for fn in checks:
        try:
            result = fn(config)
        except Exception as exc:  # a check must never crash the doctor
            result = Check(fn.__name__.removeprefix("check_"), False, f"check failed: {exc!r}")
        failed += not result.ok
        line = f"{'ok  ' if result.ok else 'FAIL'} {result.name:<10} {result.detail}"
        if not result.ok and result.fix:
            line += f"\n     fix: {result.fix}"
        print(line, file=out)
    print(f"{len(checks) - failed} ok, {failed} failed", file=out)
    return 1 if failed else 0
