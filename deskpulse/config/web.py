"""[web]: the dashboard page and the browser's path to the broker."""

from pydantic import Field, SecretStr

from .base import Section


class WebConfig(Section):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, lt=65536)
    # The WebSocket->TCP relay browsers use to reach the broker (mqtt.js over ws).
    ws_host: str = "0.0.0.0"
    ws_port: int = Field(9001, ge=0, lt=65536)
    # The broker's TCP listener the relay forwards to. Empty: the [mqtt] broker.
    relay_target: str = ""
    # The URL the page is told to use; empty means ws://<host the page was loaded from>:<ws_port>/mqtt
    public_ws_url: str = ""
    # The browser's (read-only) account; prefer DESKPULSE_WEB_VIEWER_PASSWORD.
    viewer_username: str | None = None
    viewer_password: SecretStr | None = None
