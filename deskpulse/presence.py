"""Presence: whether the person MediaPipe's pose tracker follows is really there.

In video mode MediaPipe tracks a person from frame to frame and, once locked on, can go on
returning a confident skeleton after the person has left (ARCHITECTURE.md constraint 6):
landmarks returned do not prove a person. This module decides *when* the tracker's word
must be checked by an independent detector, and remembers the evidence:

- a person the tracker (re)acquires is confirmed: in video mode that frame ran the pose
  detector (nothing was tracked before it);
- after that, a check is due when the picture inside the person's box has changed since
  the last confirmed frame (someone leaving changes it; someone sitting still does not),
  at most every `min_gap_s` while it keeps changing, and in any case every
  `max_interval_s`, all within a CPU budget;
- a check that finds nobody makes the frame "nobody" (pose.py runs the checks and makes
  the tracker let go).

Pure code: thumbnails and boxes in, decisions out; time is passed in (monotonic seconds).
It runs no model (pose.py owns MediaPipe) and never decides on landmarks alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Literal

import cv2
import numpy as np

THUMB_SIZE = (80, 60)  # width, height: coarse enough to average sensor noise away

Reason = Literal["changed", "scheduled"]


@dataclass(frozen=True)
class PresenceConfig:
    """When to check the tracker. The defaults meet "absent within 2 s" at <= 10% CPU (docs/presence.md)."""

    change: float = 0.25  # fraction of the confirmed person's box that changed: the picture is not what was confirmed
    pixel_delta: int = 24  # grey levels (0..255) on the thumbnail for a pixel to count as changed
    settled: float = 0.05  # ... and changed less than this since the previous frame: the picture came to rest
    min_gap_s: float = 0.5  # at most one check per this while the picture keeps changing
    max_interval_s: float = 10.0  # a check at least this often, even in a still picture
    margin: float = 0.25  # the person's box grows by this fraction of its size on each side
    # Checks that find the person there are the price of presence while someone sits at the
    # desk: they may use this share of the tracker's own time, saved up to `burst_frames`
    # tracker frames' worth. A check prompted by a change may overdraw by `overdraft_frames`
    # (the dearest check, face and pose detector, costs about 1.5 tracker frames), twice
    # that once the picture has come to rest.
    budget: float = 0.06
    burst_frames: float = 6.0
    overdraft_frames: float = 2.0


@dataclass(frozen=True)
class Box:
    """A rectangle in normalised frame coordinates (0..1)."""

    x0: float
    y0: float
    x1: float
    y1: float

    @staticmethod
    def around(points: Iterable[tuple[float, float]]) -> "Box":
        xs, ys = zip(*points)
        return Box(min(xs), min(ys), max(xs), max(ys))

    def grown(self, fraction: float) -> "Box":
        dx, dy = (self.x1 - self.x0) * fraction, (self.y1 - self.y0) * fraction
        return Box(self.x0 - dx, self.y0 - dy, self.x1 + dx, self.y1 + dy)

    def contains(self, x: float, y: float) -> bool:
        return self.x0 <= x <= self.x1 and self.y0 <= y <= self.y1

    def pixels(self, width: int, height: int) -> tuple[slice, slice]:
        """Row and column slices of this box in a width x height grid (never empty)."""
        x0 = int(np.clip(np.floor(self.x0 * width), 0, width - 1))
        y0 = int(np.clip(np.floor(self.y0 * height), 0, height - 1))
        x1 = int(np.clip(np.ceil(self.x1 * width), x0 + 1, width))
        y1 = int(np.clip(np.ceil(self.y1 * height), y0 + 1, height))
        return slice(y0, y1), slice(x0, x1)


@dataclass(frozen=True)
class View:
    """What presence keeps of one frame: a small grey thumbnail and where the person is."""

    thumb: np.ndarray  # THUMB_SIZE grey, uint8
    shape: tuple[int, int]  # the frame's height, width
    box: Box  # the person's (grown) box from the tracked landmarks

    @staticmethod
    def of(rgb: np.ndarray, box: Box) -> "View":
        small = cv2.resize(rgb, THUMB_SIZE, interpolation=cv2.INTER_AREA)
        return View(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), (int(rgb.shape[0]), int(rgb.shape[1])), box)


def change(before: View, after: View, pixel_delta: int) -> float:
    """The fraction of `before`'s person box whose picture changed in `after`, 0..1."""
    if before.shape != after.shape:
        return 1.0
    rows, cols = before.box.pixels(*THUMB_SIZE)
    a = before.thumb[rows, cols].astype(np.int16)
    b = after.thumb[rows, cols].astype(np.int16)
    return float(np.mean(np.abs(a - b) > pixel_delta))


class PresenceGuard:
    """The check schedule for one tracked person: confirmed, due for a check, or lost.

    Costs are seconds the caller measured: `tracked()` for every tracker frame with a person
    earns `budget` of it, `checked()` spends what a check that found the person took. A
    scheduled check waits for a balance in credit; a check prompted by a change may
    overdraw it (by more once the picture has come to rest), so routine checks never hold
    up the one that notices a departure. In the long run checks cost at most `budget` of
    the tracker's time. A check that finds nobody is not charged: it happens once per
    departure, and after it the tracker has no one to follow.
    """

    def __init__(self, cfg: PresenceConfig | None = None) -> None:
        self.cfg = cfg or PresenceConfig()
        self._confirmed: View | None = None  # the last frame known to hold the person
        self._previous: View | None = None  # the frame before this one
        self._checked_at = 0.0
        self._account = 0.0  # seconds of checking earned and not yet spent
        self._frame_s: float | None = None  # what a tracker frame takes (moving average)

    @property
    def tracking(self) -> bool:
        """A person was confirmed and has not been lost since."""
        return self._confirmed is not None

    def confirm(self, view: View, now: float) -> None:
        """A detector (or the tracker's own acquisition) found the person in this frame."""
        self._confirmed = self._previous = view
        self._checked_at = now

    def due(self, view: View, now: float) -> Reason | None:
        """Whether this tracked frame must be checked, and why; None when the tracker is trusted."""
        ref = self._confirmed
        if ref is None:
            raise RuntimeError("due() before confirm(): an acquisition is confirmed, not checked")
        cfg = self.cfg
        previous, self._previous = self._previous, view
        since = now - self._checked_at
        if since >= cfg.max_interval_s and self._account >= 0.0:
            return "scheduled"
        if since < cfg.min_gap_s or change(ref, view, cfg.pixel_delta) < cfg.change:
            return None
        # A picture that changed and came to rest is what a departure looks like: it may
        # overdraw by a second check, so a busy spell before it never delays its check.
        settled = previous is not None and change(previous, view, cfg.pixel_delta) < cfg.settled
        frame_s = self._frame_s if self._frame_s is not None else math.inf
        overdraft = (2.0 if settled else 1.0) * cfg.overdraft_frames * frame_s
        return "changed" if self._account > -overdraft else None

    def tracked(self, seconds: float) -> None:
        """The tracker took `seconds` on a frame with a person: a share of it may go to checks."""
        self._frame_s = seconds if self._frame_s is None else 0.9 * self._frame_s + 0.1 * seconds
        self._account = min(self._account + self.cfg.budget * seconds, self.cfg.burst_frames * self._frame_s)

    def checked(self, seconds: float) -> None:
        """A check that found the person took `seconds`."""
        self._account -= seconds

    def lost(self) -> None:
        """Nobody is tracked any more: the next person the tracker reports is a new acquisition."""
        self._confirmed = self._previous = None
