"""[mqtt]: which broker, who we are on it, and the topic prefix."""

import ipaddress
import re
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from .base import Section

PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


def is_loopback(host: str) -> bool:
    """True for 'localhost' and loopback addresses (127.0.0.0/8, ::1); no name lookups."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BrokerAddress(Section):
    host: str
    port: int = Field(1883, gt=0, lt=65536)
    username: str | None = None
    password: SecretStr | None = None


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse mqtt://[user:pass@]host[:port]. Raises ValueError naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "mqtt":
        raise ValueError(f"expected 'auto' or mqtt://[user:pass@]host:port, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    try:
        port = parts.port or 1883
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"unexpected path or query in {url!r}")
    password = unquote(parts.password) if parts.password is not None else None
    return BrokerAddress(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=SecretStr(password) if password is not None else None,
    )


class MqttConfig(Section):
    # "auto": use the broker on 127.0.0.1:1883 if one answers, else start an embedded one.
    broker: str = "auto"
    # Prefer the environment (DESKPULSE_MQTT_USERNAME / DESKPULSE_MQTT_PASSWORD) or a
    # systemd credential to writing secrets into this file.
    username: str | None = None
    password: SecretStr | None = None
    # Empty: "deskpulse-<device_id>". One unique id per device (duplicates make availability flap).
    client_id: str = ""
    prefix: str = "deskpulse"
    keepalive_s: int = Field(30, ge=5, le=3600)
    # "auto" tries MQTT 5 and falls back to 3.1.1 for brokers that refuse it.
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    # State changes and alerts kept while disconnected, delivered in order after reconnecting.
    queue_size: int = Field(500, ge=1, le=100_000)
    reconnect_max_s: float = Field(4.0, gt=0, le=300)
    # The embedded broker, used only when broker = "auto" and none answers. It has no accounts,
    # so it listens on loopback only; browsers reach it through the dashboard's authenticated
    # relay, other hosts not at all.
    embedded_host: str = "127.0.0.1"
    embedded_port: int = Field(1883, ge=0, lt=65536)
    # Its MQTT-over-WebSocket listener, on embedded_host too (for local tools; the dashboard
    # uses the relay). 0: any free port.
    embedded_ws_port: int = Field(9883, ge=0, lt=65536)
    # Retained state and health are refreshed this often even without a change.
    state_refresh_s: float = Field(30.0, gt=0)
    health_interval_s: float = Field(10.0, gt=0)

    @field_validator("broker")
    @classmethod
    def _broker_valid(cls, value: str) -> str:
        if value != "auto":
            parse_broker_url(value)
        return value

    @field_validator("embedded_host")
    @classmethod
    def _embedded_host_loopback(cls, value: str) -> str:
        if not is_loopback(value):
            raise ValueError(
                f"the embedded broker allows anonymous clients, so it listens on loopback only "
                f"(127.0.0.1, ::1 or localhost), got {value!r}; to share a broker with other hosts, "
                f"install mosquitto with accounts (sudo ./install.sh)")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix_valid(cls, value: str) -> str:
        if not PREFIX_RE.match(value):
            raise ValueError("must be topic levels of [A-Za-z0-9_-] without wildcards, e.g. 'deskpulse'")
        return value

    @model_validator(mode="after")
    def _credentials_paired(self) -> "MqttConfig":
        if self.username and self.password is None and not self._url_has_password():
            raise ValueError("username is set but password is not (set DESKPULSE_MQTT_PASSWORD)")
        return self

    def _url_has_password(self) -> bool:
        return self.broker != "auto" and parse_broker_url(self.broker).password is not None

    def address(self) -> BrokerAddress | None:
        """The configured broker with credentials merged, or None for 'auto'."""
        if self.broker == "auto":
            return None
        url = parse_broker_url(self.broker)
        return url.model_copy(
            update={
                "username": url.username or self.username,
                "password": url.password or self.password,
            }
        )
