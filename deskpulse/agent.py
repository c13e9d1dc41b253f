"""The agent: wires capture -> pose -> posture -> tracker -> publisher and owns its threads.

Threads (all named, all stopped by `Agent.stop()`):
- deskpulse-capture   (Capture): the camera and the latest-frame slot
- deskpulse-pipeline  (here): pose, posture, state/health/frames publishing, calibration
- deskpulse-requests  (here): answers .../request/<verb> from the publisher's inbox
- paho's network thread (Publisher) and, with no broker, the embedded broker's thread.
A thread that dies brings the process down loudly (`wait()` returns 1) so systemd
restarts it: never a silent half-alive agent.
"""

from __future__ import annotations

import logging
import queue
import random
import socket
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

import cv2

from . import __version__
from .broker import EmbeddedBroker, broker_answers
from . import discovery, settings
from .calibration import BaselineStore, CalibrationFailed, Calibrator
from .capture import Capture, Opener
from .config import BrokerAddress, Config
from .configwatch import ConfigWatcher
from .errors import RequestError
from .health import RateMeter, cpu_temp_c, rss_mb
from .overlay import draw, encode_jpeg
from .pause import PauseState, PauseStore
from .pose import MediaPipePose, PoseEstimator
from .posture import PostureFilter, Reading, classify
from .publisher import Incoming, Publisher
from .history import History, HistoryError, db_path, open_history, resolve_timezone
from .requests import Reply, Router
from .settings import SettingsStore
from .topics import Topics
from .tracker import Event, Tracker, local_date

log = logging.getLogger(__name__)

MAX_PIPELINE_ERRORS = 5  # within ERROR_WINDOW_S: then the pipeline gives up loudly
ERROR_WINDOW_S = 30.0


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


class Agent:
    def __init__(self, config: Config, *, estimator: PoseEstimator | None = None,
                 opener: Opener | None = None, clock: Callable[[], float] = time.time,
                 watcher: "ConfigWatcher | None" = None) -> None:
        self.watcher = watcher
        self.settings_store = SettingsStore(config.data_dir)
        config = self.settings_store.load(config)
        self.config = config
        self.clock = clock
        self.topics = Topics(config.mqtt.prefix, config.device_id)
        self._estimator = estimator
        self._opener = opener
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self.fatal: str | None = None
        self.started_at = time.monotonic()
        self.embedded: EmbeddedBroker | None = None
        self.publisher: Publisher | None = None
        self.capture: Capture | None = None
        self._threads: list[threading.Thread] = []
        self.router = Router()
        from .commands import register

        register(self.router, self)
        self.tz = resolve_timezone(config.history.timezone)
        self.history: History | None = None
        self.tracker: Tracker | None = None
        self._ha_status_topic = discovery.status_topic(config) if config.homeassistant.enabled else None
        self._rediscover_at: float | None = None
        self._discovery_topics: list[str] = []
        self._last_stats_at = 0.0
        self._last_checkpoint_at = time.monotonic()
        self._last_prune_at = time.monotonic()
        self._last_snapshot_at = 0.0
        # Pipeline state
        now = clock()
        self.baselines = BaselineStore(config.data_dir)
        self.baseline = self.baselines.load(config.posture.view)
        self.pause_store = PauseStore(config.data_dir)
        self.pause_state = PauseState()
        self.filter = PostureFilter(config.posture, now)
        self.camera = "starting"
        self._seq = 0
        self._last_state_at = 0.0
        self._last_health_at = 0.0
        self._lease_until = 0.0  # monotonic
        self._last_frame_sent = 0.0
        self._absent_since: float | None = None
        self._calibration: tuple[Calibrator, Reply] | None = None
        self._cal_last_percent = -1
        self._last_pose = None
        self.fps = RateMeter()
        self.inference = RateMeter()
        self.frames_encoded = 0  # stream frames (only while someone holds a lease)
        self.snapshots_encoded = 0  # Home Assistant camera snapshots
        self.frames_processed = 0
        self.pipeline_errors: list[float] = []

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> "Agent":
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self._open_history()
        if self._estimator is None:
            self._estimator = MediaPipePose()
        address, self.embedded = resolve_broker(cfg)
        self.broker_address = address
        self.publisher = Publisher(
            self.topics, address, cfg.mqtt.client_id or f"deskpulse-{cfg.device_id}",
            keepalive_s=cfg.mqtt.keepalive_s, protocol="3.1.1" if self.embedded else cfg.mqtt.protocol,
            queue_size=cfg.mqtt.queue_size, reconnect_max_s=cfg.mqtt.reconnect_max_s,
            extra_subscriptions=(self._ha_status_topic,) if self._ha_status_topic else (),
        )
        self.pause_state = self.pause_store.load(self.clock())
        self.capture = Capture(cfg.camera, opener=self._opener)
        if self.pause_state.paused:
            self.capture.pause()
            self.filter.reset("unknown", self.clock())
        log.info("device %s: source %s, view %s, %s", cfg.device_id, self.capture.spec.describe(),
                 cfg.posture.view, "calibrated" if self.baseline.calibrated else "default baseline")
        self._publish_state()  # queued until connected: the first retained state
        self._publish_stats(self.clock())
        self._publish_discovery()
        self.publisher.start()
        self.capture.start()
        for name, target in (("deskpulse-pipeline", self._pipeline), ("deskpulse-requests", self._serve_requests)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop everything: threads end, the camera is released, `offline` is published."""
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        if self.capture is not None:
            self.capture.stop()
        self._close_history()
        if self.publisher is not None:
            self.publisher.stop()
        if self._estimator is not None:
            self._estimator.close()
        if self.embedded is not None:
            self.embedded.stop()
        log.info("stopped")

    def wait(self, stop: threading.Event) -> int:
        """Block until `stop` is set (signal) or a thread dies. Returns the exit code."""
        while not stop.wait(0.5):
            dead = [t.name for t in self._threads if not t.is_alive()]
            if self.capture is not None and not self.capture.alive():
                dead.append("deskpulse-capture")
            if dead or self.fatal:
                log.critical("thread(s) died: %s%s; exiting so the service manager restarts us",
                             ", ".join(dead) or "-", f" ({self.fatal})" if self.fatal else "")
                return 1
        return 0

    # --- state -------------------------------------------------------------------------
    def posture(self) -> str:
        if self.pause_state.paused:
            return "paused"
        return self.filter.state.posture

    def state_payload(self, now: float) -> dict[str, Any]:
        st = self.filter.state
        reading = st.reading
        posture = self.posture()
        metrics: dict[str, Any] = dict(reading.metrics) if reading else {}
        metrics["reasons"] = list(reading.reasons) if reading else []
        return {
            "posture": posture,
            "confidence": reading.confidence if reading and posture in ("good", "bad") else (1.0 if posture in ("absent", "paused") else 0.0),
            "since": iso(st.since),
            "bad_for_s": self._bad_for(now) if posture == "bad" else 0.0,
            "metrics": metrics,
            "camera": self.camera,
            "view": self.config.posture.view,
            "calibrated": self.baseline.calibrated,
            "until": iso(self.pause_state.until) if self.pause_state.paused else None,
            "ts": iso(now),
            "seq": self._seq,
        }

    def _bad_for(self, now: float) -> float:
        tracked = self.tracker.bad_for_s(now) if self.tracker is not None else 0.0
        return round(max(tracked, self.filter.state.bad_for(now)), 1)

    @staticmethod
    def iso(ts: float | None) -> str | None:
        return iso(ts)

    def _publish_state(self) -> None:
        with self._lock:
            now = self.clock()
            self._seq += 1
            payload = self.state_payload(now)
            self._last_state_at = time.monotonic()
        if self.publisher is not None:
            self.publisher.publish_state(payload)

    def health_payload(self) -> dict[str, Any]:
        cap = self.capture
        pub = self.publisher
        return {
            "fps": round(self.fps.rate(), 2),
            "inference_ms": round(self.inference.mean(), 1),
            "dropped_frames": cap.dropped if cap else 0,
            "frames_processed": self.frames_processed,
            "frames_encoded": self.frames_encoded,
            "snapshots_encoded": self.snapshots_encoded,
            "frames_dropped_offline": pub.frames_dropped if pub else 0,
            "camera": self.camera,
            "camera_error": cap.last_error if cap else None,
            "source": cap.spec.describe() if cap else None,
            "cpu_temp_c": cpu_temp_c(),
            "rss_mb": rss_mb(),
            "uptime_s": round(time.monotonic() - self.started_at),
            "version": __version__,
            "streaming": self._streaming(time.monotonic()),
            "threads": {t.name.removeprefix("deskpulse-"): t.is_alive() for t in self._threads}
                       | {"capture": bool(cap and cap.alive())},
            "pipeline_errors": len(self.pipeline_errors),
            "ts": iso(self.clock()),
        }

    # --- the pipeline thread ---------------------------------------------------------------
    def _pipeline(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as exc:  # a bug: count it, and give up loudly if it keeps happening
                now = time.monotonic()
                self.pipeline_errors = [t for t in self.pipeline_errors if now - t < ERROR_WINDOW_S] + [now]
                log.exception("pipeline error")
                if len(self.pipeline_errors) >= MAX_PIPELINE_ERRORS:
                    self.fatal = f"pipeline failed {len(self.pipeline_errors)} times in {ERROR_WINDOW_S:.0f}s: {exc!r}"
                    return
                self._stop.wait(0.5)

    def _step(self) -> None:
        assert self.capture is not None and self.publisher is not None
        now = self.clock()
        with self._lock:
            if self.pause_state.expired(now):
                log.info("pause ended")
                self._resume_locked(now)
        if self.pause_state.paused:
            self._set_camera("released")
            self._tick(now)
            self._stop.wait(0.25)
            return
        frame = self.capture.latest(timeout=0.25)
        now = self.clock()
        camera = self.capture.camera_state()
        if camera == "disconnected" and self.camera != "disconnected":
            # Never keep showing the last posture from a camera that is gone.
            self.filter.reset("unknown", now)
            self._absent_since = None
        self._set_camera(camera)
        if frame is None:
            self._tick(now)
            return
        rgb = cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB)
        t0 = time.perf_counter()
        assert self._estimator is not None
        pose = self._estimator.estimate(rgb)
        self.inference.add((time.perf_counter() - t0) * 1000)
        self.fps.add()
        self.frames_processed += 1
        reading = classify(pose, self.config.posture, self.baseline) if pose is not None else None
        with self._lock:
            state = self.filter.update(reading, now)
        if state.changed:
            log.info("posture %s%s", state.posture,
                     f" ({', '.join(reading.reasons)})" if reading and reading.reasons else "")
            self._publish_state()
        self._feed_calibration(reading, now)
        self._adapt_rate(state.posture, now)
        self._maybe_send_frame(frame.image, pose, state.posture)
        self._maybe_send_snapshot(frame.image, pose, state.posture, state.changed)
        self._tick(now)

    def _set_camera(self, camera: str) -> None:
        if camera != self.camera:
            log.info("camera %s", camera)
            self.camera = camera
            self._publish_state()

    def _tick(self, now: float) -> None:
        mono = time.monotonic()
        if self.watcher is not None:
            edited = self.watcher.poll(self.config)
            if edited is not None:
                self.apply_config(edited)
        self._track(now, mono)
        if self._rediscover_at is not None and mono >= self._rediscover_at:
            self._rediscover_at = None
            assert self.publisher is not None
            self.publisher.republish(self._discovery_topics + [self.topics.state, self.topics.stats,
                                                                self.topics.health])
        refresh = self.config.mqtt.state_refresh_s
        if self.posture() == "bad":
            refresh = min(refresh, 5.0)  # keep bad_for_s moving for dashboards and HA
        if mono - self._last_state_at >= refresh:
            self._publish_state()
        if mono - self._last_health_at >= self.config.mqtt.health_interval_s:
            self._last_health_at = mono
            assert self.publisher is not None
            self.publisher.publish_retained(self.topics.health, self.health_payload(), qos=0)

    # --- tracker, history, stats ----------------------------------------------------------------
    def _open_history(self) -> None:
        cfg = self.config
        try:
            self.history = open_history(db_path(cfg.data_dir, cfg.history.path))
            now = self.clock()
            self.history.prune(cfg.history.retention_days, now)
            restored = self.history.day_totals(local_date(now, self.tz), self.tz)
        except HistoryError as exc:
            log.error("history disabled: %s", exc)
            self.history, restored = None, None
        self.tracker = Tracker(cfg.alerts, self.tz, restored=restored)

    def _close_history(self) -> None:
        if self.history is None or self.tracker is None:
            return
        try:
            now = self.clock()
            with self._lock:
                for event in self.tracker.update(self.posture(), now):
                    self._record(event)
                open_interval = self.tracker.open_interval(now)
            if open_interval is not None:
                self.history.checkpoint(*open_interval)
            self.history.close()
        except HistoryError as exc:
            log.warning("history not closed cleanly: %s", exc)

    def _record(self, event: Event) -> None:
        if self.history is not None:
            try:
                self.history.record(event)
            except HistoryError as exc:
                log.warning("history write failed: %s", exc)
        if event.kind == "alert" and self.publisher is not None:
            log.info("alert: %s", event.payload.get("message", event.payload.get("type")))
            self.publisher.publish_event(self.topics.alert, event.payload)

    def _track(self, now: float, mono: float) -> None:
        assert self.tracker is not None
        with self._lock:
            events = self.tracker.update(self.posture(), now)
        for event in events:
            self._record(event)
        hist = self.config.history
        if events and any(e.kind == "alert" for e in events) or mono - self._last_stats_at >= hist.stats_interval_s:
            self._publish_stats(now)
        if self.history is not None and mono - self._last_checkpoint_at >= hist.checkpoint_s:
            self._last_checkpoint_at = mono
            open_interval = self.tracker.open_interval(now)
            if open_interval is not None:
                try:
                    self.history.checkpoint(*open_interval)
                except HistoryError as exc:
                    log.warning("history checkpoint failed: %s", exc)
        if self.history is not None and mono - self._last_prune_at >= 24 * 3600:
            self._last_prune_at = mono
            try:
                self.history.prune(hist.retention_days, now)
            except HistoryError as exc:
                log.warning("history prune failed: %s", exc)

    def _publish_stats(self, now: float) -> None:
        assert self.tracker is not None
        self._last_stats_at = time.monotonic()
        if self.publisher is not None:
            self.publisher.publish_retained(self.topics.stats, self.tracker.stats(now), qos=1)

    # --- Home Assistant ------------------------------------------------------------------------
    def _publish_discovery(self) -> None:
        """Discovery (retained, resent on every reconnect), after removing stale topics."""
        assert self.publisher is not None
        cfg = self.config
        path = discovery.record_path(cfg)
        previous = discovery.read_published(path)
        messages: list[tuple[str, str]] = []
        if cfg.homeassistant.enabled:
            url = discovery.configuration_url(cfg, socket.gethostname())
            messages = discovery.discovery_messages(cfg, __version__, url)
        current = [topic for topic, _ in messages]
        for topic, payload in discovery.stale_messages(previous, current):
            self.publisher.publish_event(topic, payload, retain=True)
        for topic, payload in messages:
            self.publisher.publish_retained(topic, payload)
        self._discovery_topics = current
        if current != previous:
            try:
                discovery.write_published(path, current)
            except OSError as exc:
                log.warning("could not record the discovery topics in %s: %s", path, exc)

    def _maybe_send_snapshot(self, image: Any, pose: Any, posture: str, changed: bool) -> None:
        ha = self.config.homeassistant
        if not (ha.enabled and ha.camera) or self.publisher is None or not self.publisher.connected.is_set():
            return
        mono = time.monotonic()
        due = ha.snapshot_interval_s > 0 and mono - self._last_snapshot_at >= ha.snapshot_interval_s
        if not (due or (changed and ha.snapshot_on_change)):
            return
        self._last_snapshot_at = mono
        picture = draw(image, pose, posture, self.config.posture.min_visibility)
        self.snapshots_encoded += 1
        self.publisher.publish_frame(self.topics.snapshot, encode_jpeg(picture, self.config.frames.quality))

    def _adapt_rate(self, posture: str, now: float) -> None:
        assert self.capture is not None
        cam = self.config.camera
        if posture == "absent":
            self._absent_since = self._absent_since or now
        else:
            self._absent_since = None
        idle = (self._absent_since is not None and now - self._absent_since >= cam.idle_after_s
                and not self._streaming(time.monotonic()) and self._calibration is None)
        self.capture.set_fps(cam.idle_fps if idle else cam.fps)

    def _streaming(self, mono: float) -> bool:
        mode = self.config.frames.mode
        return mode == "always" or (mode == "on_demand" and mono < self._lease_until)

    def _maybe_send_frame(self, image: Any, pose: Any, posture: str) -> None:
        mono = time.monotonic()
        if not self._streaming(mono) or mono - self._last_frame_sent < 1.0 / self.config.frames.fps * 0.9:
            return
        assert self.publisher is not None
        if not self.publisher.connected.is_set():
            return  # frames from an outage are worthless: don't even encode them
        frames = self.config.frames
        picture = draw(image, pose, posture, self.config.posture.min_visibility) if frames.overlay else image
        jpeg = encode_jpeg(picture, frames.quality)
        self.frames_encoded += 1
        if self.publisher.publish_frame(self.topics.frame, jpeg):
            self._last_frame_sent = mono

    # --- calibration -------------------------------------------------------------------
    def _feed_calibration(self, reading: Reading | None, now: float) -> None:
        with self._lock:
            active = self._calibration
        if active is None:
            return
        cal, reply = active
        usable = reading if reading is not None and reading.metrics else None
        progress = cal.add(usable, now)
        if progress.percent // 10 != self._cal_last_percent // 10:
            self._cal_last_percent = progress.percent
            reply.progress({"stage": progress.stage, "percent": progress.percent})
        if not cal.done(now):
            return
        with self._lock:
            self._calibration = None
        try:
            baseline = cal.result(now)
        except CalibrationFailed as exc:
            log.info("calibration failed: %s", exc)
            reply.fail(str(exc))
            return
        self.baselines.save(self.config.posture.view, baseline)
        if self.history is not None:
            try:
                self.history.record_calibration(baseline.to_json(), now)
            except HistoryError as exc:
                log.warning("calibration not recorded in history: %s", exc)
        self.baseline = baseline
        log.info("calibrated: %s", baseline.to_json())
        reply.done({"stage": "done", "percent": 100, "baseline": baseline.to_json()})
        self._publish_state()

    # --- requests and control (called from the requests thread) ----------------------------
    def _serve_requests(self) -> None:
        assert self.publisher is not None
        inbox = self.publisher.incoming
        while not self._stop.is_set():
            try:
                msg = inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._handle_incoming(msg)
            except Exception:  # never let one message end request handling
                log.exception("error handling a message on %s", msg.topic)

    def _handle_incoming(self, msg: Incoming) -> None:
        assert self.publisher is not None
        if msg.topic == self._ha_status_topic:
            if msg.retain:
                return  # seen at subscribe time: the connect path already sent discovery
            if msg.payload.strip() == discovery.HA_ONLINE.encode():
                delay = random.uniform(*discovery.REDISCOVERY_DELAY_S)
                log.info("Home Assistant is online: sending discovery again in %.1fs", delay)
                self._rediscover_at = time.monotonic() + delay
            return
        verb = self.topics.verb_of(msg.topic)
        if verb is None:
            log.debug("ignoring message on %s", msg.topic)
            return
        if msg.retain:
            log.warning("ignoring retained request on %s (commands are never retained)", msg.topic)
            return
        origin = dict(msg.user_properties).get("client", "?")
        publisher = self.publisher
        response_topic = self.topics.response(verb[:64])
        self.router.handle(verb, msg.payload, lambda answer: publisher.respond(msg, response_topic, answer), origin)

    def pause(self, minutes: float | None) -> float | None:
        """Pause monitoring (until resumed, or for `minutes`): the camera is released."""
        now = self.clock()
        until = now + minutes * 60 if minutes else None
        with self._lock:
            assert self.capture is not None
            self.pause_state = PauseState(True, until)
            self.pause_store.save(self.pause_state)
            self.capture.pause()
            self._calibration = None
            self.filter.reset("unknown", now)
            self.camera = "released"
        log.info("paused%s", f" until {iso(until)}" if until else "")
        self._publish_state()
        return until

    def resume(self) -> None:
        with self._lock:
            was = self.pause_state.paused
            self._resume_locked(self.clock())
        log.info("resumed" if was else "resume: was not paused")
        self._publish_state()

    def _resume_locked(self, now: float) -> None:
        assert self.capture is not None
        self.pause_state = PauseState()
        self.pause_store.save(self.pause_state)
        self.filter.reset("unknown", now)
        self.capture.resume()
        self.camera = "starting"

    def set_lease(self, until_mono: float) -> None:
        with self._lock:
            self._lease_until = until_mono if until_mono == 0.0 else max(self._lease_until, until_mono)

    def start_calibration(self, calibrator: Calibrator, reply: Reply) -> None:
        with self._lock:
            if self._calibration is not None:
                raise RequestError("a calibration is already running")
            self._calibration = (calibrator, reply)
            self._cal_last_percent = -1

    def apply_config(self, new: Config) -> None:
        """Apply runtime settings (config/set) without a restart, and persist them."""
        with self._lock:
            self.config = new
            self.filter.cfg = new.posture
            if self.tracker is not None:
                self.tracker.apply_config(new.alerts)
        self.settings_store.save(new)
        log.info("settings changed: %s", settings.current(new))
