"""[alerts]: when sustained bad posture becomes an alert, and break reminders."""

from pydantic import Field

from .base import Section


class AlertsConfig(Section):
    bad_posture_minutes: float = Field(10.0, gt=0, le=24 * 60)
    cooldown_minutes: float = Field(5.0, ge=0, le=24 * 60)
    # 0 disables escalation; otherwise re-alert every N minutes while the slouch continues.
    escalate_minutes: float = Field(0.0, ge=0, le=24 * 60)
    # Good posture for this long cancels a pending alert.
    recovery_s: float = Field(10.0, ge=0, le=3600)
    # 0 disables; otherwise remind to take a break after N minutes of continuous presence.
    break_minutes: float = Field(0.0, ge=0, le=24 * 60)
