"""Topic contract v1: every topic name DeskPulse publishes or subscribes to, in one place.

See docs/topics.md for payloads. Nothing else builds topic strings by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

CONTRACT_VERSION = 1

# Posture values carried in state.posture
POSTURES = ("good", "bad", "absent", "unknown", "paused")


@dataclass(frozen=True)
class Topics:
    prefix: str  # "deskpulse"
    device_id: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def frame(self) -> str:
        return f"{self.base}/frame"

    @property
    def snapshot(self) -> str:
        """A low-rate JPEG for Home Assistant's camera entity (not retained)."""
        return f"{self.base}/snapshot"

    @property
    def stats(self) -> str:
        return f"{self.base}/stats"

    @property
    def health(self) -> str:
        return f"{self.base}/health"

    @property
    def alert(self) -> str:
        return f"{self.base}/alert"

    @property
    def request_filter(self) -> str:
        return f"{self.base}/request/#"

    def request(self, verb: str) -> str:
        return f"{self.base}/request/{verb}"

    def response(self, verb: str) -> str:
        return f"{self.base}/response/{verb}"

    def is_response(self, topic: str) -> bool:
        """True for a concrete topic under this device's response/ (where answers may go)."""
        head = self.response("")
        return (topic.startswith(head) and len(topic) > len(head) and "+" not in topic
                and "#" not in topic and "\0" not in topic)

    def verb_of(self, topic: str) -> str | None:
        """The verb of a request topic of this device, or None."""
        head = f"{self.base}/request/"
        return topic[len(head):] if topic.startswith(head) and len(topic) > len(head) else None
