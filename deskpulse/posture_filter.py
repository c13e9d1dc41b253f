"""The debouncing filter: a stream of per-frame readings -> a stable posture state.

Pure code: time is passed in (monotonic seconds), no camera, broker or clock of its own.
A new posture must hold for `onset_s` before the state switches, leaving bad needs
`exit_s` of good, and frames with no person give "absent".
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .config import PostureConfig
from .posture import Reading


@dataclass(frozen=True)
class PostureState:
    """The stable posture after filtering."""

    posture: str  # good | bad | unknown | absent
    since: float  # monotonic seconds when this posture began
    reading: Reading | None  # the reading of the latest frame (None when absent)
    changed: bool = False  # True on the frame where the posture switched

    def bad_for(self, now: float) -> float:
        return max(0.0, now - self.since) if self.posture == "bad" else 0.0


class PostureFilter:
    """Debounces per-frame readings into a posture state.

    A new posture must persist (`onset_s` for bad and unknown, `exit_s` to leave bad)
    before the state switches; any other candidate in between restarts the wait, so a
    glance at the keyboard never flips the state. `absent_frames` consecutive frames, or
    `absent_s` seconds of frames (at least two), with
    no person give "absent" at once; a person reappearing is "good" at once.

    A frame without a person that does not (yet) make the desk empty is no evidence
    either way: it leaves a candidate's wait running. MediaPipe's tracker loses a person
    for a single frame now and then (measured: every 1.7 s for one photographed person),
    and if such a frame restarted the wait, someone arriving in a posture that needs
    `onset_s` would be reported absent for as long as they sat there.
    """

    def __init__(self, cfg: PostureConfig, now: float, initial: str = "unknown") -> None:
        self.cfg = cfg
        self.state = PostureState(initial, now, None)
        self._pending: str | None = None
        self._pending_since = now
        self._no_person = 0
        self._no_person_since: float | None = None

    @property
    def pending(self) -> str | None:
        """The candidate posture waiting out its delay, if any."""
        return self._pending

    def reset(self, posture: str, now: float) -> PostureState:
        """Force a posture (used after pause/resume and camera faults)."""
        changed = posture != self.state.posture
        self.state = PostureState(posture, now if changed else self.state.since, None, changed)
        self._pending = None
        self._no_person = 0
        self._no_person_since = None
        return self.state

    def _delay(self, current: str, candidate: str) -> float:
        if candidate == "bad" or candidate == "unknown":
            return self.cfg.onset_s
        if candidate == "good" and current == "bad":
            return self.cfg.exit_s
        return 0.0

    def update(self, reading: Reading | None, now: float) -> PostureState:
        """Feed one frame's reading (None = no person in the frame)."""
        if reading is None:
            self._no_person += 1
            if self._no_person_since is None:
                self._no_person_since = now
            gone = (self._no_person >= self.cfg.absent_frames
                    or (self._no_person > 1 and now - self._no_person_since >= self.cfg.absent_s))
            if not gone:
                self.state = replace(self.state, reading=None, changed=False)
                return self.state
            candidate = "absent"
        else:
            self._no_person = 0
            self._no_person_since = None
            candidate = reading.posture
        current = self.state.posture
        if candidate == current:
            self._pending = None
            self.state = replace(self.state, reading=reading, changed=False)
            return self.state
        if candidate != self._pending:
            self._pending, self._pending_since = candidate, now
        if now - self._pending_since >= self._delay(current, candidate):
            self.state = PostureState(candidate, now, reading, changed=True)
            self._pending = None
        else:
            self.state = replace(self.state, reading=reading, changed=False)
        return self.state
