"""The tracker on synthetic posture sequences with a fake clock (deskpulse/tracker.py)."""

from __future__ import annotations

import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskpulse.config import AlertsConfig
from deskpulse.tracker import POSTURES, DayTotals, Event, Tracker, iso_utc

BERLIN = ZoneInfo("Europe/Berlin")
# A Saturday with no DST change.
T0 = datetime(2026, 11, 21, 9, 0, tzinfo=BERLIN).timestamp()


class Feed:
    """Drives a tracker with one update per `step` seconds, like the agent's per-frame calls."""

    def __init__(self, tracker: Tracker, start: float = T0, step: float = 1.0) -> None:
        self.tracker, self.now, self.step = tracker, start, step
        self.events: list[Event] = []
        self.events += tracker.update("unknown", start)  # tracker starts before the person shows up

    def run(self, posture: str, seconds: float) -> list[Event]:
        """Hold `posture` for `seconds` (the first update at the current time switches to it)."""
        new: list[Event] = []
        end = self.now + seconds
        new += self.tracker.update(posture, self.now)
        while self.now < end - 1e-9:
            self.now = min(end, self.now + self.step)
            new += self.tracker.update(posture, self.now)
        self.events += new
        return new

    def alerts(self, kind: str | None = None) -> list[dict]:
        return [e.payload for e in self.events if e.kind == "alert" and (kind is None or e.payload["type"] == kind)]


def cfg(**kw: float) -> AlertsConfig:
    base = {"bad_posture_minutes": 10, "cooldown_minutes": 5, "escalate_minutes": 0, "recovery_s": 10}
    base.update(kw)
    return AlertsConfig(**base)


def test_alert_fires_at_the_threshold_with_start_and_duration() -> None:
    f = Feed(Tracker(cfg(), BERLIN))
    f.run("good", 60)
    assert [e for e in f.run("bad", 599) if e.kind == "alert"] == []
    assert f.tracker.bad_for_s(f.now) == 599
    new = f.run("bad", 1)
    assert [e.kind for e in new] == ["alert"]
    alert = new[0].payload
    assert set(alert) == {"type", "duration_s", "started", "message", "ts"}
    assert alert["type"] == "bad_posture"
    assert alert["duration_s"] == 600
    assert alert["started"] == iso_utc(T0 + 60)
    assert alert["ts"] == iso_utc(T0 + 660)
    assert "10 minutes" in alert["message"]
    stats = f.tracker.stats(f.now)
    assert stats["alerts"] == 1 and stats["bad_for_s"] == 600 and stats["bad_s"] == 600


def test_one_alert_per_slouch_without_escalation() -> None:
    f = Feed(Tracker(cfg(), BERLIN))
    f.run("bad", 3600)
    assert len(f.alerts()) == 1


def test_cooldown_holds_back_the_next_alert_until_it_expires() -> None:
    f = Feed(Tracker(cfg(bad_posture_minutes=1, cooldown_minutes=5), BERLIN))
    f.run("bad", 70)  # alert at +60
    f.run("good", 20)  # recovered
    f.run("bad", 100)  # due again at bad 60 s (+150) but within the cooldown
    assert [a["type"] for a in f.alerts()] == ["bad_posture", "recovered"]
    f.run("bad", 200)  # cooldown ends at +360
    bad = f.alerts("bad_posture")
    assert len(bad) == 2
    assert bad[1]["ts"] == iso_utc(T0 + 360)
    assert bad[1]["started"] == iso_utc(T0 + 90)


def test_escalation_realerts_while_the_slouch_continues() -> None:
    f = Feed(Tracker(cfg(bad_posture_minutes=2, escalate_minutes=3, cooldown_minutes=0), BERLIN))
    f.run("bad", 600)
    assert [a["ts"] for a in f.alerts("bad_posture")] == [iso_utc(T0 + t) for t in (120, 300, 480)]
    assert f.tracker.stats(f.now)["alerts"] == 3


def test_escalation_still_respects_the_cooldown() -> None:
    f = Feed(Tracker(cfg(bad_posture_minutes=1, escalate_minutes=1, cooldown_minutes=5), BERLIN))
    f.run("bad", 700)
    assert [a["ts"] for a in f.alerts("bad_posture")] == [iso_utc(T0 + t) for t in (60, 360, 660)]


def test_recovery_cancels_a_pending_alert() -> None:
    f = Feed(Tracker(cfg(), BERLIN))
    f.run("bad", 500)
    f.run("good", 10)  # recovery_s of good: the slouch is over, and no alert had fired
    f.run("bad", 500)
    assert f.alerts() == []
    f.run("bad", 100)
    assert [a["ts"] for a in f.alerts()] == [iso_utc(T0 + 510 + 600)]


def test_brief_good_blips_do_not_reset_the_timer_nor_count_as_bad() -> None:
    f = Feed(Tracker(cfg(), BERLIN))
    for _ in range(3):
        f.run("bad", 150)
        f.run("good", 9)
    f.run("bad", 150)
    alerts = f.alerts()
    assert [a["type"] for a in alerts] == ["bad_posture"]
    assert alerts[0]["duration_s"] == 600
    assert alerts[0]["ts"] == iso_utc(T0 + 600 + 27)


def test_recovered_after_an_alert() -> None:
    f = Feed(Tracker(cfg(), BERLIN))
    f.run("bad", 720)
    f.run("good", 9)
    assert len(f.alerts()) == 1
    f.run("good", 1)
    rec = f.alerts("recovered")
    assert len(rec) == 1
    assert rec[0]["duration_s"] == 720 and rec[0]["started"] == iso_utc(T0)
    assert rec[0]["ts"] == iso_utc(T0 + 730)


@pytest.mark.parametrize("other", ["unknown", "absent", "paused"])
def test_unknown_absent_paused_never_count_as_bad(other: str) -> None:
    f = Feed(Tracker(cfg(), BERLIN))
    f.run(other, 4 * 3600)
    stats = f.tracker.stats(f.now)
    assert stats["bad_s"] == 0 and stats[f"{other}_s"] == 4 * 3600
    assert stats["good_pct"] is None and f.alerts() == []


def test_unknown_pauses_the_slouch_timer() -> None:
    f = Feed(Tracker(cfg(), BERLIN))
    f.run("bad", 300)
    f.run("unknown", 1000)
    f.run("bad", 299)
    assert f.alerts() == []
    f.run("bad", 1)
    assert f.alerts()[0]["duration_s"] == 600 and f.alerts()[0]["started"] == iso_utc(T0)


@pytest.mark.parametrize("away", ["absent", "paused"])
def test_short_absence_keeps_the_slouch_a_long_one_ends_it(away: str) -> None:
    f = Feed(Tracker(cfg(), BERLIN))
    f.run("bad", 300)
    f.run(away, 5)
    f.run("bad", 300)
    assert len(f.alerts()) == 1

    g = Feed(Tracker(cfg(), BERLIN))
    g.run("bad", 300)
    g.run(away, 60)
    g.run("bad", 300)
    assert g.alerts() == []  # and no "recovered": they left, they did not sit up


def test_break_reminder_after_continuous_presence() -> None:
    f = Feed(Tracker(cfg(break_minutes=50, break_reset_minutes=3, bad_posture_minutes=120), BERLIN))
    f.run("good", 30 * 60)
    f.run("bad", 10 * 60)
    f.run("absent", 2 * 60)  # too short to be a break
    f.run("unknown", 10 * 60)
    reminders = f.alerts("break_reminder")
    assert len(reminders) == 1
    assert reminders[0]["ts"] == iso_utc(T0 + 52 * 60) and reminders[0]["duration_s"] == 3000
    assert reminders[0]["started"] == iso_utc(T0)
    f.run("paused", 3 * 60)  # a real break
    f.run("good", 49 * 60)
    assert len(f.alerts("break_reminder")) == 1
    f.run("good", 60)
    assert len(f.alerts("break_reminder")) == 2
    stats = f.tracker.stats(f.now)
    assert stats["break_reminders"] == 2 and stats["alerts"] == 0


def test_break_reminder_off_by_default() -> None:
    f = Feed(Tracker(cfg(), BERLIN))
    f.run("good", 8 * 3600)
    assert f.alerts() == []


def test_apply_config_takes_effect_without_restart() -> None:
    f = Feed(Tracker(cfg(), BERLIN))
    f.run("bad", 200)
    f.tracker.apply_config(cfg(bad_posture_minutes=3))
    new = f.run("bad", 1)
    assert [e.payload["type"] for e in new if e.kind == "alert"] == ["bad_posture"]


def test_intervals_one_per_change_and_stats() -> None:
    f = Feed(Tracker(cfg(), BERLIN))
    f.run("good", 100)
    f.run("bad", 50)
    f.run("good", 30)
    intervals = [e.payload for e in f.events if e.kind == "interval"]
    assert intervals == [  # the zero-length "unknown" at T0 is not an interval
        {"posture": "good", "start": T0, "end": T0 + 100},
        {"posture": "bad", "start": T0 + 100, "end": T0 + 150},
    ]
    assert f.tracker.open_interval(f.now) == ("good", T0 + 150, T0 + 180)
    s = f.tracker.stats(f.now)
    assert (s["good_s"], s["bad_s"], s["good_pct"]) == (130, 50, 72.2)
    assert s["longest_good_streak_s"] == 100 and s["current_good_streak_s"] == 30
    assert s["date"] == "2026-11-21" and s["ts"] == iso_utc(T0 + 180)


def test_unknown_bridges_a_good_streak_other_postures_break_it() -> None:
    f = Feed(Tracker(cfg(), BERLIN))
    f.run("good", 100)
    f.run("unknown", 20)
    f.run("good", 100)
    s = f.tracker.stats(f.now)
    assert s["current_good_streak_s"] == 200 and s["longest_good_streak_s"] == 200
    f.run("absent", 5)
    f.run("good", 50)
    s = f.tracker.stats(f.now)
    assert s["current_good_streak_s"] == 50 and s["longest_good_streak_s"] == 200


def test_midnight_splits_the_interval_and_resets_the_day() -> None:
    start = datetime(2026, 11, 21, 23, 50, tzinfo=BERLIN).timestamp()
    midnight = datetime(2026, 11, 22, 0, 0, tzinfo=BERLIN).timestamp()
    f = Feed(Tracker(cfg(), BERLIN), start=start, step=7.0)  # updates do not land on midnight
    f.run("bad", 5 * 60)
    f.run("good", 15 * 60)
    intervals = [e.payload for e in f.events if e.kind == "interval"]
    assert intervals[-1] == {"posture": "good", "start": start + 300, "end": midnight}
    assert f.tracker.open_interval(f.now) == ("good", midnight, start + 1200)
    s = f.tracker.stats(f.now)
    assert s["date"] == "2026-11-22"
    assert (s["good_s"], s["bad_s"], s["alerts"]) == (600, 0, 0)
    assert s["longest_good_streak_s"] == 600 and s["good_pct"] == 100
    assert s["timeline"]["start"] == "2026-11-22T00:00:00+01:00"
    assert s["timeline"]["good"] == [300, 300] and s["timeline"]["postures"] == "gg"


def test_a_slouch_across_midnight_still_alerts_and_counts_on_the_new_day() -> None:
    start = datetime(2026, 11, 21, 23, 55, tzinfo=BERLIN).timestamp()
    f = Feed(Tracker(cfg(), BERLIN), start=start)
    f.run("bad", 11 * 60)
    assert len(f.alerts("bad_posture")) == 1
    assert f.tracker.stats(f.now)["alerts"] == 1 and f.tracker.stats(f.now)["bad_s"] == 360


def test_dst_day_has_25_hours_and_a_bounded_timeline() -> None:
    # 2026-10-25: Europe/Berlin falls back from CEST to CET, so the day is 25 h long.
    start = datetime(2026, 10, 25, 0, 0, tzinfo=BERLIN).timestamp()
    f = Feed(Tracker(cfg(bad_posture_minutes=2, cooldown_minutes=0, escalate_minutes=1), BERLIN),
             start=start, step=30.0)
    for i in range(25 * 60):
        f.run(("good", "bad", "absent", "unknown")[i % 4], 60 if i < 25 * 60 - 1 else 59)
    now = f.now
    s = f.tracker.stats(now)
    assert s["date"] == "2026-10-25"
    assert sum(s[f"{p}_s"] for p in POSTURES) == pytest.approx(25 * 3600 - 1)
    tl = s["timeline"]
    assert len(tl["good"]) == len(tl["bad"]) == len(tl["postures"]) == 300
    assert tl["start"] == "2026-10-25T00:00:00+02:00"
    assert len(json.dumps(s)) < 4096, len(json.dumps(s))
    assert len(json.dumps(tl, separators=(",", ":"))) < 2600


def test_a_clock_jump_is_not_attributed_to_any_posture() -> None:
    f = Feed(Tracker(cfg(), BERLIN))
    f.run("bad", 300)
    f.tracker.update("bad", f.now + 3 * 3600)  # e.g. NTP sets the clock of a Pi without RTC
    f.now += 3 * 3600
    f.run("bad", 400)
    s = f.tracker.stats(f.now)
    assert s["bad_s"] == 700 and f.alerts() == []  # the slouch timer restarted


def test_a_small_step_back_counts_as_no_time() -> None:
    t = Tracker(cfg(), BERLIN)
    t.update("good", T0)
    t.update("good", T0 + 10)
    t.update("bad", T0 + 8)
    t.update("bad", T0 + 20)
    s = t.stats(T0 + 20)
    assert (s["good_s"], s["bad_s"]) == (10, 10)


def test_rejects_unknown_posture() -> None:
    with pytest.raises(ValueError, match="slouching"):
        Tracker(cfg(), BERLIN).update("slouching", T0)


def test_restored_totals_carry_on_for_the_same_day_only() -> None:
    restored = DayTotals.empty(date(2026, 11, 21), BERLIN)
    restored.fold("good", T0 - 3600, T0 - 1800)
    restored.alerts = 2
    t = Tracker(cfg(), BERLIN, restored=restored)
    t.update("good", T0)
    s = t.stats(T0 + 100)
    assert (s["good_s"], s["alerts"], s["longest_good_streak_s"], s["current_good_streak_s"]) == (1900, 2, 1800, 100)
    other = Tracker(cfg(), BERLIN, restored=restored)
    other.update("good", T0 + 86400)
    assert other.stats(T0 + 86400)["good_s"] == 0


def test_stats_before_any_update_and_after_midnight_without_update() -> None:
    t = Tracker(cfg(), BERLIN)
    s = t.stats(T0)
    assert s["good_s"] == 0 and s["good_pct"] is None and s["date"] == "2026-11-21"
    t.update("good", T0 + 14 * 3600)  # 23:00
    s = t.stats(T0 + 15 * 3600 + 60)  # 00:01 next day, no update yet
    assert s["date"] == "2026-11-22" and s["good_s"] == 60


# -- invariants over arbitrary sequences -------------------------------------------------------

steps = st.lists(
    st.tuples(st.sampled_from(POSTURES), st.floats(min_value=0, max_value=90, allow_nan=False)),
    min_size=1, max_size=80,
)
configs = st.builds(
    AlertsConfig,
    bad_posture_minutes=st.sampled_from([0.05, 0.5, 1.0, 3.0]),
    cooldown_minutes=st.sampled_from([0.0, 0.5, 2.0]),
    escalate_minutes=st.sampled_from([0.0, 0.2, 1.0]),
    recovery_s=st.sampled_from([0.0, 5.0, 30.0]),
    break_minutes=st.sampled_from([0.0, 1.0, 4.0]),
    break_reset_minutes=st.sampled_from([0.5, 3.0]),
)
# Start anywhere from 23:30 to 00:00 so that many sequences cross midnight.
starts = st.floats(min_value=0, max_value=1800).map(
    lambda s: datetime(2026, 11, 21, 23, 30, tzinfo=BERLIN).timestamp() + s)


def run_sequence(tracker: Tracker, start: float, seq: list[tuple[str, float]]) -> tuple[list[Event], float]:
    events: list[Event] = []
    now = start
    for posture, dt in seq:
        now += dt
        events += tracker.update(posture, now)
    return events, now


@settings(max_examples=300, deadline=None)
@given(config=configs, start=starts, seq=steps)
def test_invariants_hold_for_any_sequence(config: AlertsConfig, start: float, seq: list[tuple[str, float]]) -> None:
    tracker = Tracker(config, BERLIN)
    events, now = run_sequence(tracker, start, seq)
    first = start + seq[0][1]
    intervals = [e.payload for e in events if e.kind == "interval"]
    alerts = [e for e in events if e.kind == "alert"]
    # Intervals tile the elapsed time: contiguous, never negative, open interval included.
    edge = first
    for iv in intervals:
        assert iv["start"] == pytest.approx(edge, abs=1e-6) and iv["end"] > iv["start"]
        edge = iv["end"]
    posture, open_start, open_end = tracker.open_interval(now)
    assert open_start == pytest.approx(edge, abs=1e-6) and open_end == now
    assert sum(iv["end"] - iv["start"] for iv in intervals) + (now - open_start) == pytest.approx(now - first)

    totals = tracker.totals(now)
    assert totals is not None
    assert sum(totals.seconds.values()) == pytest.approx(now - max(first, totals.start), abs=1e-6)
    assert all(v >= 0 for v in totals.seconds.values())
    # The stats are exactly the fold of the emitted intervals (what history stores).
    refold = DayTotals.empty(totals.date, BERLIN)
    for iv in intervals + [{"posture": posture, "start": open_start, "end": now}]:
        refold.fold(iv["posture"], iv["start"], iv["end"])
    assert refold.seconds == pytest.approx(totals.seconds)
    assert refold.longest_good_streak_s == pytest.approx(totals.longest_good_streak_s)

    stats = tracker.stats(now)
    assert stats["good_pct"] is None or 0 <= stats["good_pct"] <= 100
    assert 0 <= stats["current_good_streak_s"] <= stats["longest_good_streak_s"] <= stats["good_s"] + 0.1
    assert stats["bad_for_s"] >= 0
    today_alerts = [a for a in alerts if a.at >= totals.start]
    assert stats["alerts"] == sum(a.payload["type"] == "bad_posture" for a in today_alerts)
    assert stats["break_reminders"] == sum(a.payload["type"] == "break_reminder" for a in today_alerts)
    for a in alerts:
        assert a.payload["duration_s"] >= 0 and a.payload["started"] <= a.payload["ts"]
    # Every "recovered" follows a bad_posture alert of the same slouch.
    seen_started = set()
    for a in alerts:
        if a.payload["type"] == "bad_posture":
            seen_started.add(a.payload["started"])
        elif a.payload["type"] == "recovered":
            assert a.payload["started"] in seen_started
