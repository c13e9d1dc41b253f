"""The frame stream's leases: each page holds its own; frames flow while any is live."""

from __future__ import annotations

from deskpulse.config import load_config
from deskpulse.stream import FrameStream
from deskpulse.topics import Topics


def stream() -> FrameStream:
    return FrameStream(load_config(None, {}, env={}), publisher=None, topics=Topics("deskpulse", "s"))  # type: ignore[arg-type]


def test_each_page_releases_only_its_own_lease() -> None:
    s = stream()
    s.set_lease(30.0, "page-a")
    s.set_lease(45.0, "page-b")
    assert s.active(10.0)
    s.set_lease(None, "page-a")  # page A closes its live view
    assert s.active(10.0)  # page B still watches
    s.set_lease(None, "page-b")
    assert not s.active(10.0)


def test_a_page_that_vanishes_stops_the_stream_when_its_lease_runs_out() -> None:
    s = stream()
    s.set_lease(30.0, "page-a")
    s.set_lease(20.0, "page-a")  # leases only ever extend
    assert s.active(29.9) and not s.active(30.0)
    assert s.leases == {}  # expired leases are forgotten: the table stays small


def test_release_without_a_viewer_ends_every_lease() -> None:
    s = stream()
    s.set_lease(30.0, "page-a")
    s.set_lease(30.0, None)
    s.set_lease(None)
    assert not s.active(1.0)
