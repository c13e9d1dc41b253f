"""[homeassistant]: MQTT discovery for Home Assistant."""

import re
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from .base import Section


class HomeAssistantConfig(Section):
    enabled: bool = True
    prefix: str = "homeassistant"
    # A snapshot for HA's camera entity every N seconds (0: only on posture changes).
    snapshot_interval_s: float = Field(10.0, ge=0, le=3600)
    snapshot_on_change: bool = True
    # false: no camera entity in Home Assistant (and no snapshots need to be sent for it).
    camera: bool = True
    # The device page's "Visit" link. Empty: http://<this host>:<web.port>/. Set it when the
    # dashboard sits behind a reverse proxy or the hostname does not resolve on the LAN.
    configuration_url: str = ""

    @field_validator("prefix")
    @classmethod
    def _prefix_valid(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9_-]+$", value):
            raise ValueError("must be one topic level of [A-Za-z0-9_-], e.g. 'homeassistant'")
        return value

    @field_validator("configuration_url")
    @classmethod
    def _url_valid(cls, value: str) -> str:
        # Home Assistant rejects the whole entity when configuration_url is not a URL it
        # accepts, so refuse it here rather than lose every entity silently.
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value
