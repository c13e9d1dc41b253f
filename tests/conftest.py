"""Shared fixtures: the embedded amqtt broker on 127.0.0.1:0 and recorders on it."""

from __future__ import annotations

import shutil
from typing import Iterator

import pytest

from deskpulse.broker import EmbeddedBroker

from .support import MOSQUITTO, Recorder


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker("127.0.0.1", 0, ws_port=0)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def recorder(broker: EmbeddedBroker) -> Iterator[Recorder]:
    r = Recorder(broker.port)
    try:
        yield r
    finally:
        r.close()


def pytest_collection_modifyitems(config, items):
    if shutil.which("mosquitto") or shutil.which(MOSQUITTO):
        return
    if config.getoption("-m") or not _ci():
        skip = pytest.mark.skip(reason="Debian mosquitto is not installed")
        for item in items:
            if "mosquitto" in item.keywords:
                item.add_marker(skip)


def _ci() -> bool:
    import os

    return bool(os.environ.get("CI"))
