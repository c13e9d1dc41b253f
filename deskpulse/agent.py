"""The agent's lifecycle: builds the components, starts them, watches them, stops them.

Components and the threads they own (all named, all stopped by `Agent.stop()`):
- Capture          deskpulse-capture    the camera and the latest-frame slot
- Pipeline         deskpulse-pipeline   the single writer of the agent's state (pipeline.py)
- Inbox            deskpulse-requests   requests and Home Assistant status -> router / pipeline
- Publisher        deskpulse-mqtt       paho's network loop (publisher.py)
- EmbeddedBroker   deskpulse-embedded-broker, only with no broker to use
A thread that dies brings the process down loudly (`wait()` returns 1, after `offline`
is published) so systemd restarts it: never a silent half-alive agent.
"""

from __future__ import annotations

import logging
import threading
from datetime import date
from typing import Any, Callable

from . import discovery, settings, storage
from .broker import EmbeddedBroker, broker_answers
from .calibration import BaselineStore
from .capture import Capture, Opener
from .clock import Clock
from .commands import register
from .config import BrokerAddress, Config, Layered
from .configwatch import ConfigWatcher
from .errors import RequestError
from .ha import HomeAssistant
from .history import db_path
from .inbox import Inbox
from .pause import PauseStore
from .pipeline import Pipeline
from .pose import MediaPipePose, PoseEstimator
from .publisher import Incoming, Publisher
from .recorder import Recorder
from .requests import Reply, Router
from .settings import RuntimeConfig, SettingsStore
from .stream import FrameStream
from .topics import Topics

log = logging.getLogger(__name__)


def resolve_broker(config: Config) -> tuple[BrokerAddress, EmbeddedBroker | None]:
    """The configured broker, or for "auto": a local one if it answers, else an embedded one."""
    address = config.mqtt.address()
    if address is not None:
        return address, None
    creds = {"username": config.mqtt.username, "password": config.mqtt.password}
    if broker_answers("127.0.0.1", 1883):
        log.info("mqtt.broker = auto: using the broker on 127.0.0.1:1883")
        return BrokerAddress(host="127.0.0.1", port=1883, **creds), None
    log.info("mqtt.broker = auto: no broker on 127.0.0.1:1883, starting an embedded one")
    m = config.mqtt
    embedded = EmbeddedBroker(m.embedded_host, m.embedded_port, m.embedded_ws_port).start()
    host = "127.0.0.1" if m.embedded_host in ("0.0.0.0", "", "::") else m.embedded_host
    return BrokerAddress(host=host, port=embedded.port), embedded


class AgentControl:
    """The `Control` the request handlers get: every change is carried out by the pipeline."""

    def __init__(self, agent: "Agent") -> None:
        self._agent = agent

    @property
    def _pipeline(self) -> Pipeline:
        assert self._agent.pipeline is not None
        return self._agent.pipeline

    def config(self) -> Config:
        return self._pipeline.config

    def pause(self, minutes: float | None) -> float | None:
        return self._pipeline.call(lambda: self._pipeline.do_pause(minutes))

    def resume(self) -> bool:
        return self._pipeline.call(self._pipeline.do_resume)

    def start_calibration(self, seconds: float, reply: Reply) -> None:
        self._pipeline.call(lambda: self._pipeline.do_start_calibration(seconds, reply))

    def set_lease(self, lease_s: float | None, viewer: str | None = None) -> None:
        self._pipeline.post(lambda: self._pipeline.do_set_lease(lease_s, viewer))  # cheap: nobody waits

    def apply_settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        pipeline, runtime = self._pipeline, self._agent.runtime
        applied = pipeline.call(lambda: pipeline.do_apply_config(runtime.set(pipeline.config, changes)))
        log.info("settings changed: %s", settings.current(applied))
        return {"settings": settings.current(applied)}

    def settings(self) -> dict[str, Any]:
        described = self._agent.runtime.describe()
        return {"settings": settings.current(self.config()), "descriptions": settings.RUNTIME_KEYS,
                "sources": {k: d["source"] for k, d in described.items()}}

    def history(self, start: date, end: date) -> list[dict[str, Any]]:
        assert self._agent.recorder is not None
        return self._agent.recorder.daily(start, end)

    def today(self) -> date:
        assert self._agent.recorder is not None
        return self._agent.recorder.today(self._agent.clock.wall())


class Agent:
    def __init__(self, config: Config, *, estimator: PoseEstimator | None = None,
                 opener: Opener | None = None, clock: Clock | None = None,
                 watcher: ConfigWatcher | None = None, runtime: RuntimeConfig | None = None) -> None:
        self.clock = clock or Clock()
        self.runtime = runtime or RuntimeConfig(Layered(config), SettingsStore(storage.device_dir(config)))
        self.config = config
        self.watcher = watcher
        self.topics = Topics(self.config.mqtt.prefix, self.config.device_id)
        self._estimator = estimator
        self._opener = opener
        self.router = Router()
        register(self.router, AgentControl(self))
        self.embedded: EmbeddedBroker | None = None
        self.publisher: Publisher | None = None
        self.capture: Capture | None = None
        self.recorder: Recorder | None = None
        self.pipeline: Pipeline | None = None
        self.inbox: Inbox | None = None
        self.ha: HomeAssistant | None = None
        self.broker_address: BrokerAddress | None = None

    @property
    def fatal(self) -> str | None:
        return self.pipeline.fatal if self.pipeline is not None else None

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> "Agent":
        cfg = self.config
        directory = storage.prepare(cfg)
        if self._estimator is None:
            self._estimator = MediaPipePose()
        address, self.embedded = resolve_broker(cfg)
        self.broker_address = address
        ha_status = discovery.status_topic(cfg) if cfg.homeassistant.enabled else None
        self.publisher = publisher = Publisher(
            self.topics, address, cfg.mqtt.client_id or f"deskpulse-{cfg.device_id}",
            keepalive_s=cfg.mqtt.keepalive_s, protocol="3.1.1" if self.embedded else cfg.mqtt.protocol,
            queue_size=cfg.mqtt.queue_size, reconnect_max_s=cfg.mqtt.reconnect_max_s,
            extra_subscriptions=(ha_status,) if ha_status else (),
        )
        self.recorder = Recorder(cfg, publisher, self.topics, db_path(directory, cfg.history.path))
        self.recorder.open(self.clock.wall(), self.clock.mono())
        self.ha = HomeAssistant(cfg, publisher, self.topics, discovery.record_path(cfg))
        self.capture = Capture(cfg.camera, opener=self._opener)
        self.pipeline = pipeline = Pipeline(
            cfg, clock=self.clock, topics=self.topics, capture=self.capture, estimator=self._estimator,
            publisher=publisher, recorder=self.recorder, ha=self.ha,
            stream=FrameStream(cfg, publisher, self.topics, self.capture, self.clock.mono), baselines=BaselineStore(directory),
            pause_store=PauseStore(directory), apply_config=self._persist_config,
            poll_config=self.watcher.poll if self.watcher is not None else None)
        pipeline.threads_alive = self._threads_alive
        self.inbox = Inbox(publisher, self.topics, self.router, on_status=self._on_ha_status, status_topic=ha_status)
        log.info("device %s: source %s, view %s, %s", cfg.device_id, self.capture.spec.describe(),
                 cfg.posture.view, "calibrated" if pipeline.baseline.calibrated else "default baseline")
        pipeline.restore()  # queued until connected: the first retained state
        if self.capture.spec.kind == "demo" and not pipeline.pause.paused:
            pipeline.calibrate_demo()
        self.recorder.publish_stats(self.clock.wall(), self.clock.mono())
        self.ha.publish_discovery()
        publisher.start()
        self.capture.start()
        pipeline.start()
        pipeline.stream.start()
        self.inbox.start()
        return self

    def _persist_config(self, new: Config) -> Config:
        """Runs on the pipeline thread when runtime settings change."""
        self.config = new
        assert self.pipeline is not None and self.ha is not None
        self.pipeline.stream.config = new
        self.ha.config = new
        return new

    def _on_ha_status(self, msg: Incoming) -> None:
        pipeline, ha = self.pipeline, self.ha
        assert pipeline is not None and ha is not None
        pipeline.post(lambda: ha.on_status(msg.payload, msg.retain, self.clock.mono()))

    def _threads_alive(self) -> dict[str, bool]:
        return {"stream": bool(self.pipeline and self.pipeline.stream.alive()),
                "requests": bool(self.inbox and self.inbox.alive()),
                "mqtt": bool(self.publisher and self.publisher.alive())}

    def stop(self) -> None:
        """Stop everything: threads end, the camera is released, `offline` is published."""
        if self.inbox is not None:
            self.inbox.stop()
        if self.pipeline is not None:
            self.pipeline.stop()
            self.pipeline.stream.stop()
        if self.capture is not None:
            self.capture.stop()
        if self.pipeline is not None:
            self.pipeline.close_recorder()
        if self.publisher is not None:
            self.publisher.stop()
        if self._estimator is not None:
            self._estimator.close()
        if self.embedded is not None:
            self.embedded.stop()
        log.info("stopped")

    def wait(self, stop: threading.Event, also: dict[str, Callable[[], bool]] | None = None) -> int:
        """Block until `stop` is set (signal) or a thread dies (ours, or one of `also`:
        name -> alive(), e.g. the dashboard's server in `deskpulse up`). Returns the exit code."""
        checks: dict[str, Callable[[], bool]] = {**(also or {}),
            "deskpulse-pipeline": lambda: bool(self.pipeline and self.pipeline.alive()),
            "deskpulse-requests": lambda: bool(self.inbox and self.inbox.alive()),
            "deskpulse-capture": lambda: bool(self.capture and self.capture.alive()),
            "deskpulse-stream": lambda: bool(self.pipeline and self.pipeline.stream.alive()),
            "deskpulse-mqtt": lambda: bool(self.publisher and self.publisher.alive()),
        }
        while not stop.wait(0.5):
            dead = [name for name, alive in checks.items() if not alive()]
            if dead or self.fatal:
                log.critical("thread(s) died: %s%s; exiting so the service manager restarts us",
                             ", ".join(dead) or "-", f" ({self.fatal})" if self.fatal else "")
                return 1
        return 0


__all__ = ["Agent", "AgentControl", "RequestError", "resolve_broker"]
