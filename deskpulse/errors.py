"""DeskPulse's own exception tree.

Errors from outside things (camera, pose model, MQTT, database, files) are converted into
these at the boundary that talks to them, so the rest of the code and the CLI only ever
see DeskPulse errors, and a user mistake becomes one clear line instead of a traceback.
"""


class DeskPulseError(Exception):
    """Base of every error DeskPulse raises on purpose."""


class ConfigError(DeskPulseError):
    """A configuration problem. `problems` holds one line per problem, naming key and file."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class CameraError(DeskPulseError):
    """The frame source cannot be opened or read."""


class BrokerError(DeskPulseError):
    """The MQTT broker cannot be reached or refuses us."""


class RequestError(DeskPulseError):
    """A request payload on .../request/<verb> is malformed or refers to something invalid."""
