"""The page's frame lease (web/static/app.js) in Debian's headless chromium: one lease per page,
quiet renewals, released when the page stops wanting frames; the old answered renewals for an
agent that refuses per-page leases.

The agent is played by the test (tests/test_dashboard_browser.py's stack: shipped mosquitto
config and ACL, the WebServer relay); the page is observed through what it publishes.
"""

from __future__ import annotations

from typing import Any

import pytest

from . import fixtures
from .test_dashboard_browser import (WAIT_MS, Stack, browser, connected, page, stack,  # noqa: F401
                                     playwright_sync)

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto]
expect = playwright_sync.expect


def stream_requests(stack: Stack, start: int) -> list[dict[str, Any]]:
    return [m.json() for m in stack.agent.rec.messages[start:] if m.topic == stack.agent.t.request("stream")]


def next_stream_request(stack: Stack, start: int, pred: Any = lambda body: True) -> tuple[dict[str, Any], int]:
    """The first stream request from `start` on matching pred, and the index after it.
    (A page may send a few answered requests as it connects: connect, availability, state.)"""
    msg = stack.agent.rec.wait_topic(stack.agent.t.request("stream"), lambda m: pred(m.json()),
                                     timeout=WAIT_MS / 1000, start=start)
    return msg.json(), stack.agent.rec.messages.index(msg) + 1


def quiet(body: dict[str, Any]) -> bool:
    return body.get("quiet") is True and "transaction" not in body


def answered(body: dict[str, Any]) -> bool:
    return "transaction" in body


def open_page(stack: Stack, page: Any) -> tuple[dict[str, Any], int]:
    """An online desk in good posture, the page opened on it: its first stream request."""
    stack.agent.online()
    stack.agent.state("good")
    mark = stack.agent.rec.mark()
    page.goto(stack.url)
    connected(page)
    return next_stream_request(stack, mark)


def test_a_page_holds_its_own_lease_renews_quietly_and_releases_it(stack: Stack, page: Any) -> None:
    agent = stack.agent
    # The first request for the desk is answered: it names this page's lease.
    first, after = open_page(stack, page)
    assert first["lease_s"] == 45 and first["viewer"] and first["transaction"] and "quiet" not in first
    agent.answer("stream", first, data=fixtures.data("stream", streaming=True, lease_s=45, fps=10.0))
    expect(page.locator("#feed-placeholder-text")).not_to_contain_text("No live view", timeout=WAIT_MS)

    # A later renewal (here: the page becoming visible again) is quiet: no transaction, no answer.
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    renewal, after = next_stream_request(stack, after, quiet)
    assert renewal == {"lease_s": 45, "viewer": first["viewer"], "quiet": True}

    # Live view off: the page releases its own lease at once (not everybody's).
    page.click(".switch")
    release, after = next_stream_request(stack, after, lambda b: b.get("enable") is False)
    assert release == {"enable": False, "viewer": first["viewer"], "quiet": True}

    # On again, then the tab is hidden (the browser says so): released as well.
    page.click(".switch")
    again, after = next_stream_request(stack, after)
    assert again["viewer"] == first["viewer"] and answered(again)  # the first for the desk again
    page.evaluate("""() => {
        Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "hidden"});
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    hidden, _ = next_stream_request(stack, after, lambda b: b.get("enable") is False)
    assert hidden == {"enable": False, "viewer": first["viewer"], "quiet": True}


def test_an_agent_without_per_page_leases_gets_the_old_answered_renewals(stack: Stack, page: Any) -> None:
    agent = stack.agent
    first, after = open_page(stack, page)
    assert "viewer" in first
    # What an agent from before per-page leases answers (requests.reject_unknown's wording).
    agent.rec.publish(agent.t.response("stream"), fixtures_json(fixtures.refusal(
        first, "unknown field(s): viewer; allowed: enable, lease_s")), qos=1)
    legacy, after = next_stream_request(stack, after, lambda b: "viewer" not in b)
    assert set(legacy) == {"lease_s", "transaction"} and legacy["lease_s"] == 45
    agent.answer("stream", legacy, data=fixtures.data("stream", streaming=True, lease_s=45, fps=10.0))
    # Renewals stay answered ones, and turning the live view off sends no release (to such an
    # agent it would end every page's lease): the next request, on the same connection and so
    # in order behind anything sent before it, is the next answered renewal.
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    renewal, after = next_stream_request(stack, after, lambda b: "viewer" not in b)
    assert set(renewal) == {"lease_s", "transaction"}
    page.click(".switch")
    expect(page.locator("#feed-placeholder-text")).to_have_text("Live view is off", timeout=WAIT_MS)
    page.click(".switch")
    back, _ = next_stream_request(stack, after, lambda b: "viewer" not in b)
    assert set(back) == {"lease_s", "transaction"}


def fixtures_json(body: dict[str, Any]) -> str:
    import json

    return json.dumps(body)
