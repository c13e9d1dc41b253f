"""The common base of every config section: typed, immutable, unknown keys rejected."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section. `extra="forbid"` turns a typo into an error naming the key."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
