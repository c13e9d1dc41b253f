"""The Home Assistant adapter: discovery, discovery again when HA restarts, snapshots.

Owned by the pipeline thread. It publishes what it owns (the retained discovery configs
and the camera snapshot) and reads the agent's state only through the arguments it is
given. What HA says on `homeassistant/status` reaches it as a pipeline command.

Privacy: a snapshot JPEG leaves the agent only while Home Assistant has said it is
online (its birth message, retained or live) and only at `snapshot_interval_s` or on a
posture change; never with `homeassistant.camera = false` or HA discovery disabled.
"""

from __future__ import annotations

import logging
import random
import socket
from typing import Any

from . import __version__, discovery
from .config import Config
from .overlay import draw, encode_jpeg
from .publisher import Publisher
from .topics import Topics

log = logging.getLogger(__name__)


class HomeAssistant:
    def __init__(self, config: Config, publisher: Publisher, topics: Topics, record_path: Any) -> None:
        self.config = config
        self.publisher = publisher
        self.topics = topics
        self.record_path = record_path
        self.status_topic = discovery.status_topic(config) if config.homeassistant.enabled else None
        self.online = False  # HA's birth message seen (and no will since)
        self.snapshots_encoded = 0
        self._topics: list[str] = []
        self._rediscover_at: float | None = None
        self._last_snapshot_at = -1e9

    def publish_discovery(self) -> None:
        """Discovery (retained, resent on every reconnect), after removing stale topics."""
        cfg = self.config
        previous = discovery.read_published(self.record_path)
        messages: list[tuple[str, str]] = []
        if cfg.homeassistant.enabled:
            url = discovery.configuration_url(cfg, socket.gethostname())
            messages = discovery.discovery_messages(cfg, __version__, url)
        current = [topic for topic, _ in messages]
        for topic, payload in discovery.stale_messages(previous, current):
            self.publisher.publish_event(topic, payload, retain=True)
        for topic, payload in messages:
            self.publisher.publish_retained(topic, payload)
        self._topics = current
        if current != previous:
            try:
                discovery.write_published(self.record_path, current)
            except OSError as exc:
                log.warning("could not record the discovery topics in %s: %s", self.record_path, exc)

    def on_status(self, payload: bytes, retained: bool, mono: float) -> None:
        """homeassistant/status: "online" (birth) or "offline" (its will)."""
        text = payload.strip().decode("utf-8", "replace")
        was = self.online
        self.online = text == discovery.HA_ONLINE
        if self.online != was:
            log.info("Home Assistant is %s", "online" if self.online else "offline")
        if self.online and not retained:
            # A restarted HA: discovery again after a short random delay, then the state.
            delay = random.uniform(*discovery.REDISCOVERY_DELAY_S)
            log.info("Home Assistant is online: sending discovery again in %.1fs", delay)
            self._rediscover_at = mono + delay

    def tick(self, mono: float) -> None:
        if self._rediscover_at is not None and mono >= self._rediscover_at:
            self._rediscover_at = None
            self.publisher.republish(self._topics + [self.topics.state, self.topics.stats, self.topics.health])

    def maybe_snapshot(self, image: Any, pose: Any, posture: str, changed: bool, mono: float) -> None:
        ha = self.config.homeassistant
        if not (ha.enabled and ha.camera and self.online) or not self.publisher.connected.is_set():
            return
        due = ha.snapshot_interval_s > 0 and mono - self._last_snapshot_at >= ha.snapshot_interval_s
        if not (due or (changed and ha.snapshot_on_change)):
            return
        self._last_snapshot_at = mono
        picture = draw(image, pose, posture, self.config.posture.min_visibility)
        self.snapshots_encoded += 1
        self.publisher.publish_frame(self.topics.snapshot, encode_jpeg(picture, self.config.frames.quality))
