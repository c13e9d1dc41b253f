"""[web]: the dashboard page, its login, and the browser's path to the broker."""

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

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
    # The page's own address when it is reached through a reverse proxy (https://desk.example.lan).
    # Used for the printed login URL and accepted as the page's Origin. Empty: http://<host>:<port>.
    public_url: str = ""
    # The account the relay logs in to the broker with, for every browser (browsers never see
    # it); prefer DESKPULSE_WEB_VIEWER_PASSWORD. Empty: the browser's own CONNECT is passed on.
    viewer_username: str | None = None
    viewer_password: SecretStr | None = None
    # How browsers log in. password: the argon2 hash in password_file (`deskpulse passwd`);
    # token: a secret URL printed at start (Jupyter style); auto: password if password_file
    # exists, else token.
    auth: Literal["auto", "password", "token"] = "auto"
    # The dashboard password's argon2 hash. Empty: <data_dir>/dashboard-password.
    password_file: str = ""
    # A fixed login token (prefer DESKPULSE_WEB_TOKEN). Empty: one is generated on the first
    # start and kept in <data_dir>/dashboard-token (0600), so a bookmarked link survives restarts.
    token: SecretStr | None = None
    # A login lasts this long (the session cookie's expiry); restarting `deskpulse web` ends all.
    session_hours: float = Field(168.0, gt=0, le=8760)
    # Browsers the relay serves at once (each holds a broker connection).
    max_connections: int = Field(64, ge=1, le=10_000)

    @field_validator("public_url")
    @classmethod
    def _public_url_valid(cls, value: str) -> str:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
                raise ValueError(f"must be an http:// or https:// URL without query, got {value!r}")
        return value.rstrip("/")

    @field_validator("token")
    @classmethod
    def _token_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value() and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (or empty to generate one)")
        return value
