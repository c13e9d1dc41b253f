"""Shared fixtures: the embedded amqtt broker on 127.0.0.1:0, recorders on it, and the check
that every payload a test's recorders receive matches docs/schema (tests/schema_check.py)."""

from __future__ import annotations

import shutil
from typing import Iterator

import pytest

from deskpulse.broker import EmbeddedBroker

from . import schema_check
from .support import MOSQUITTO, Recorder

# Test modules that publish hand-made payloads on agent topics on purpose, to test a transport
# or an ACL rather than the agent; their recorders' messages are not schema-checked.
UNCHECKED_MODULES = {
    "test_publisher.py": "the publisher is payload-agnostic; it is fed minimal dicts",
    "test_wsrelay.py": "the relay forwards bytes; its tests publish minimal payloads",
    "test_mosquitto_acl.py": "ACL tests publish markers, not agent payloads",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "payloads_unchecked(reason): this test publishes non-contract payloads on agent topics "
                   "on purpose; skip the docs/schema check of what its recorders receive")
    Recorder.observer = staticmethod(schema_check.observe)  # type: ignore[assignment]


@pytest.fixture(autouse=True)
def payloads_match_the_schema(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if any recorder received an agent payload that docs/schema refuses."""
    schema_check.PROBLEMS.clear()
    yield
    problems = schema_check.PROBLEMS.take()
    unchecked = request.node.get_closest_marker("payloads_unchecked") or request.node.path.name in UNCHECKED_MODULES
    if problems and not unchecked:
        shown = "\n  ".join(problems[:10]) + (f"\n  … and {len(problems) - 10} more" if len(problems) > 10 else "")
        pytest.fail(f"{len(problems)} payload(s) do not match docs/schema:\n  {shown}", pytrace=False)


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


# The longest files first: ./test.sh hands whole files to its workers in collection order, so
# the run ends soon after the longest file rather than with one starting last (measured with
# --durations; keep in step when a file grows).
LONGEST_FIRST = ("test_requests_e2e.py", "test_presence.py", "test_faults.py", "test_quickstart.py",
                 "test_security.py", "test_pipeline.py", "test_ha_e2e.py", "test_history_e2e.py",
                 "test_install.py", "test_agent.py", "test_dashboard_browser.py", "test_two_desks.py",
                 "test_fleet.py", "test_posture_demo.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a file kept
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
