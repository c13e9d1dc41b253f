"""[alerts]: when sustained bad posture becomes an alert, and break reminders.

The rules themselves live in deskpulse/tracker.py; see docs/alerts-and-history.md.
"""

from pydantic import Field

from .base import Section


class AlertsConfig(Section):
    # Bad-posture seconds (not wall time) in one slouch before the first alert.
    bad_posture_minutes: float = Field(10.0, gt=0, le=24 * 60)
    # No bad_posture alert within this long of the previous one, whatever else happens.
    cooldown_minutes: float = Field(5.0, ge=0, le=24 * 60)
    # 0 disables escalation; otherwise re-alert every N bad minutes while the slouch continues.
    escalate_minutes: float = Field(0.0, ge=0, le=24 * 60)
    # Good posture for this long cancels a pending alert (and, after an alert, sends "recovered").
    # Shorter good blips do not reset the slouch timer.
    recovery_s: float = Field(10.0, ge=0, le=3600)
    # 0 disables; otherwise remind to take a break after N minutes of continuous presence.
    break_minutes: float = Field(0.0, ge=0, le=24 * 60)
    # Being away (absent or paused) for this long counts as a break and restarts the presence timer.
    break_reset_minutes: float = Field(3.0, gt=0, le=24 * 60)
