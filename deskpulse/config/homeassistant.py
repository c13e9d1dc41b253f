"""[homeassistant]: MQTT discovery for Home Assistant."""

import re

from pydantic import Field, field_validator

from .base import Section


class HomeAssistantConfig(Section):
    enabled: bool = True
    prefix: str = "homeassistant"
    # A snapshot for HA's camera entity every N seconds (0: only on posture changes).
    snapshot_interval_s: float = Field(10.0, ge=0, le=3600)
    snapshot_on_change: bool = True

    @field_validator("prefix")
    @classmethod
    def _prefix_valid(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9_-]+$", value):
            raise ValueError("must be one topic level of [A-Za-z0-9_-], e.g. 'homeassistant'")
        return value
