"""`deskpulse doctor` against real parts: the embedded broker, the web relay, the demo source."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from deskpulse.config import load_config
from deskpulse.doctor import check_broker, check_camera, check_clock, check_disk, doctor_command
from web.server import WebServer

from .support import free_port


def config(tmp_path: Path, **over: object):
    base = {"data_dir": str(tmp_path), "camera.source": "demo", "web.ws_port": 0, "web.port": 0,
            "web.host": "127.0.0.1", "web.ws_host": "127.0.0.1"}
    return load_config(None, base | over, {})


@pytest.mark.slow
def test_all_green_exits_0(broker, tmp_path: Path) -> None:
    cfg = config(tmp_path, **{"mqtt.broker": f"mqtt://127.0.0.1:{broker.port}"})
    server = WebServer(cfg, relay_target=("127.0.0.1", broker.port)).start()
    try:
        cfg = config(tmp_path, **{"mqtt.broker": f"mqtt://127.0.0.1:{broker.port}", "web.ws_port": server.ws_port,
                     "web.port": server.port})
        out = io.StringIO()
        assert doctor_command(cfg, out) == 0, out.getvalue()
    finally:
        server.stop()
    text = out.getvalue()
    for name in ("camera", "broker", "websocket", "pose model", "disk", "clock"):
        assert f"ok   {name}" in text
    assert "6 ok, 0 failed" in text


def test_failures_name_the_problem_and_the_fix(tmp_path: Path) -> None:
    port = free_port()
    cfg = config(tmp_path, **{"mqtt.broker": f"mqtt://127.0.0.1:{port}", "camera.source": "/dev/video97",
                              "web.ws_port": free_port()})
    out = io.StringIO()
    code = doctor_command(cfg, out, checks=(check_camera, check_broker, check_disk, check_clock))
    text = out.getvalue()
    assert code == 1
    assert "FAIL camera     /dev/video97 does not exist" in text and "fix: plug the camera in" in text
    assert f"FAIL broker     cannot reach broker mqtt://127.0.0.1:{port}" in text and "fix: start mosquitto" in text
    assert "2 ok, 2 failed" in text
