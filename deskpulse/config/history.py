"""[history]: the SQLite history and the daily stats derived from it."""

from pydantic import Field

from .base import Section


class HistoryConfig(Section):
    retention_days: int = Field(90, ge=1, le=3650)
    # .../stats is refreshed at most this often.
    stats_interval_s: float = Field(5.0, ge=1, le=3600)
