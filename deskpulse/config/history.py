"""[history]: the SQLite history and the daily stats derived from it."""

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from .base import Section


class HistoryConfig(Section):
    retention_days: int = Field(90, ge=1, le=3650)
    # .../stats is refreshed at most this often.
    stats_interval_s: float = Field(5.0, ge=1, le=3600)
    # The still-open posture interval is written this often, so kill -9 loses at most this much.
    checkpoint_s: float = Field(5.0, ge=1, le=300)
    # The database file; unset means <data_dir>/<device_id>/history.sqlite3.
    path: Path | None = None
    # IANA zone ("Europe/Berlin") whose midnight starts a new day; empty means the system's zone.
    timezone: str = ""

    @field_validator("path")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("timezone")
    @classmethod
    def _zone_known(cls, value: str) -> str:
        if value:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)") from None
        return value
