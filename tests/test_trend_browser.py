"""The dashboard's 7-day trend chart in Debian's headless chromium, against Debian mosquitto
with the shipped ACL, through `WebServer`. The test plays the agent: it answers the page's
`history` requests (matched by transaction) with per-day aggregates shaped like
`History.daily()`. Waits are Playwright expectations with timeouts.
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from typing import Any

import pytest

from . import fixtures
from .test_dashboard_browser import (  # noqa: F401  (fixtures: browser, stack, page)
    BAD_RGB, DEVICE, GOOD_RGB, SCREENSHOTS, WAIT_MS, FakeAgent, Stack, browser, connected, expect, page, stack)

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto]

TODAY = date(2026, 11, 21)  # a Saturday


def day(d: date, good_s: float, bad_s: float, alerts: int = 0) -> dict[str, Any]:
    """One entry as History.daily() returns it: DayTotals folded from intervals (tests/fixtures.py)."""
    return fixtures.day(d, good_s, bad_s, alerts)


def history(days: list[dict[str, Any]]) -> dict[str, Any]:
    """The data of a `history` answer, checked against its schema."""
    return fixtures.data("history", **{"from": days[0]["date"], "to": days[-1]["date"], "days": days})


def week() -> dict[str, Any]:
    figures = [(6 * 3600, 2 * 3600, 3), (0, 0, 0), (5 * 3600, 1 * 3600, 1), (3 * 3600, 3 * 3600, 4),
               (7 * 3600, 1800, 0), (4 * 3600, 1200, 1), (2 * 3600, 400, 0)]
    return history([day(TODAY - timedelta(days=6 - i), g, b, a) for i, (g, b, a) in enumerate(figures)])


def bar_heights(page: Any) -> list[dict[str, Any]]:
    return page.eval_on_selector_all("#trend-chart .trend-day", """cols => cols.map(c => ({
        date: c.dataset.date,
        value: c.querySelector('.trend-value').textContent,
        label: c.querySelector('.trend-label').textContent,
        good: c.querySelector('.trend-good') ? c.querySelector('.trend-good').getBoundingClientRect().height : null,
        bad: c.querySelector('.trend-bad') ? c.querySelector('.trend-bad').getBoundingClientRect().height : null,
        track: c.querySelector('.trend-track').getBoundingClientRect().height,
        goodColour: c.querySelector('.trend-good') ? getComputedStyle(c.querySelector('.trend-good')).backgroundColor : null,
        badColour: c.querySelector('.trend-bad') ? getComputedStyle(c.querySelector('.trend-bad')).backgroundColor : null,
        none: Boolean(c.querySelector('.trend-none')),
    }))""")


def test_trend_chart_draws_the_history_answer(stack: Stack, page: Any) -> None:
    agent = stack.agent
    agent.online()
    agent.state("good")
    agent.stats()
    mark = agent.rec.mark()
    page.goto(stack.url)
    connected(page)
    expect(page.locator("#trend-note")).to_have_text("Loading the last 7 days…")

    request = agent.wait_request("history", start=mark)
    assert set(request) == {"transaction"}  # the agent picks the last 7 days in its own zone
    # Answers to other pages' requests are ignored; ours is drawn.
    other = week()
    other["days"][-1] = day(TODAY, 0, 3600)
    agent.answer("history", {"transaction": "another-page"}, data=other)
    agent.answer("history", request, data=week())

    expect(page.locator("#trend-chart .trend-day")).to_have_count(7, timeout=WAIT_MS)
    expect(page.locator("#trend-note")).to_be_hidden()
    bars = bar_heights(page)
    assert [b["date"] for b in bars] == [(TODAY - timedelta(days=6 - i)).isoformat() for i in range(7)]
    assert [b["value"] for b in bars] == ["75%", "–", "83%", "50%", "93%", "92%", "95%"]
    assert [b["label"] for b in bars] == ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Today"]
    # Bars are drawn to scale: the good part is good% of the track, the rest is slouching.
    for b, pct in zip(bars, [75.0, None, 83.3, 50.0, 93.3, 92.3, 94.7]):
        if pct is None:
            assert b["none"] and b["good"] is None
            continue
        inner = b["good"] + b["bad"]
        assert abs(b["good"] / inner - pct / 100) < 0.02, (b, pct)
        assert b["goodColour"] == GOOD_RGB and b["badColour"] == BAD_RGB
    # The week's figure is weighted by monitored time, not an average of the percentages.
    good = sum(d["good_s"] for d in week()["days"])
    bad = sum(d["bad_s"] for d in week()["days"])
    expect(page.locator("#trend-avg")).to_have_text(f"{round(100 * good / (good + bad))}% good this week")
    assert "Wed 2026-11-18: 50%" in page.get_attribute("#trend-chart", "aria-label")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator(".trend").screenshot(path=str(SCREENSHOTS / "dashboard-trend.png"))


def test_trend_refreshes_on_a_timer_and_survives_an_error(stack: Stack, page: Any) -> None:
    agent = stack.agent
    agent.online()
    agent.state("good")
    # Page timers under the test's control; no waiting for minutes. fast_forward fires each
    # due timer once, as a browser does after a sleep; run_for would fire every 20 s lease
    # renewal of the five minutes at once, a burst the relay's rate limit rightly cuts.
    page.clock.install()
    mark = agent.rec.mark()
    page.goto(stack.url)
    connected(page)
    agent.answer("history", agent.wait_request("history", start=mark), data=week())
    expect(page.locator("#trend-chart .trend-day")).to_have_count(7, timeout=WAIT_MS)

    # Five minutes later the page asks again; an error keeps the last chart and says why.
    mark = agent.rec.mark()
    page.clock.fast_forward(5 * 60 * 1000 + 1000)
    request = agent.wait_request("history", start=mark)
    agent.answer("history", request, status="error", error="history is unavailable on this device")
    expect(page.locator("#trend-note")).to_have_text(
        "Trend unavailable: history is unavailable on this device", timeout=WAIT_MS)
    expect(page.locator("#trend-chart .trend-day")).to_have_count(7)

    # It retries sooner after a failure, and a good answer replaces the chart.
    mark = agent.rec.mark()
    page.clock.fast_forward(31 * 1000)
    request = agent.wait_request("history", start=mark)
    fresh = week()
    fresh["days"][-1] = day(TODAY, 3600, 3600, 2)
    agent.answer("history", request, data=fresh)
    expect(page.locator("#trend-chart .trend-day.today .trend-value")).to_have_text("50%", timeout=WAIT_MS)
    expect(page.locator("#trend-note")).to_be_hidden()
    # One request per refresh: the jumps in page time did not cost the connection.
    assert len([m for m in agent.rec.messages[mark:] if m.topic == agent.t.request("history")]) == 1
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")


def test_no_monitored_time_and_no_answer(stack: Stack, page: Any) -> None:
    agent = stack.agent
    agent.online()
    agent.state("good")
    page.clock.install()
    mark = agent.rec.mark()
    page.goto(stack.url)
    connected(page)
    request = agent.wait_request("history", start=mark)
    empty = history([day(TODAY - timedelta(days=6 - i), 0, 0) for i in range(7)])
    agent.answer("history", request, data=empty)
    expect(page.locator("#trend-note")).to_have_text("No monitored time in the last 7 days yet.", timeout=WAIT_MS)
    expect(page.locator("#trend-chart .trend-none")).to_have_count(7)
    expect(page.locator("#trend-avg")).to_have_text("")

    # An agent that never answers: the request times out and the page says so.
    mark = agent.rec.mark()
    page.clock.fast_forward(5 * 60 * 1000 + 1000)
    agent.wait_request("history", start=mark)
    page.clock.fast_forward(16 * 1000)
    expect(page.locator("#trend-note")).to_have_text(re.compile("^Trend unavailable: no answer"), timeout=WAIT_MS)


def test_the_trend_follows_the_selected_desk(stack: Stack, page: Any) -> None:
    from .test_dashboard_browser import SECOND

    stack.agent.online()
    stack.agent.state("good")
    other = FakeAgent(stack.mosquitto.port, device=SECOND[0], account=SECOND[1:])
    try:
        other.online()
        other.state("bad", bad_for_s=12.0)
        mark = stack.agent.rec.mark()
        page.goto(stack.url)
        connected(page)
        stack.agent.answer("history", stack.agent.wait_request("history", start=mark), data=week())
        expect(page.locator("#trend-chart .trend-day.today .trend-value")).to_have_text("95%", timeout=WAIT_MS)

        mark = other.rec.mark()
        page.select_option("#device-select", SECOND[0])
        request = other.wait_request("history", start=mark)
        theirs = week()
        theirs["days"][-1] = day(TODAY, 1800, 5400, 5)
        other.answer("history", request, data=theirs)
        expect(page.locator("#trend-chart .trend-day.today .trend-value")).to_have_text("25%", timeout=WAIT_MS)
        assert json.loads(json.dumps(request))["transaction"].startswith("web-")
    finally:
        other.close()
    assert DEVICE != SECOND[0]
