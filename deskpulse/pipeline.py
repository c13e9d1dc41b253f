"""The pipeline thread: the single writer of the agent's state.

It owns everything that makes up the published state: the debouncing filter, the pause,
the camera state, the baseline, a running calibration, the frame lease, the runtime
config and the state's `seq`. Nothing else writes them. Requests, timers and config
edits reach it as commands (`call`/`post`) that run on this thread between two frames,
so the state is published in the order it changes and `seq` is strictly increasing in
publish order.

Per frame: capture's latest frame -> pose -> classify -> filter -> publish state on a
change; the recorder (tracker, history, stats), Home Assistant (snapshots, discovery
again) and the frame stream's overlay and leases are fed from here (the stream's own
thread sends the pictures, so the live view never waits for pose). Durations use the
monotonic clock; wall time only stamps messages.
"""

from __future__ import annotations

import logging
import queue
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import cv2

from . import __version__
from .calibration import BaselineStore, CalibrationFailed, Calibrator
from .capture import Capture
from .clock import Clock, iso
from .config import Config
from .errors import RequestError
from .ha import HomeAssistant
from .health import RateMeter, cpu_temp_c, rss_mb
from .pacing import FrameFacts, Pacer
from .pause import PauseState, PauseStore
from .payloads import HealthView, StateView, health_payload, state_payload
from .pose import PoseEstimator
from .posture import Reading, classify
from .posture_filter import PostureFilter
from .publisher import Publisher
from .recorder import Recorder
from .requests import Reply
from .stream import FrameStream
from .topics import Topics
from .worker import ThreadOwner

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_PIPELINE_ERRORS = 5  # within ERROR_WINDOW_S: then the pipeline gives up loudly
ERROR_WINDOW_S = 30.0
COMMAND_TIMEOUT_S = 10.0
FRAME_WAIT_S = 0.1  # how long to wait for a frame before looking at commands again
BAD_REFRESH_S = 5.0  # keep bad_for_s moving for dashboards and Home Assistant


@dataclass
class _Calibration:
    calibrator: Calibrator
    reply: Reply
    last_percent: int = -1
    persist: bool = True  # False: the demo's own baseline, never saved or recorded


def _log_reply(answer: dict[str, Any]) -> None:
    log.debug("demo calibration: %s", answer)


class Pipeline(ThreadOwner):
    thread_name = "deskpulse-pipeline"

    def __init__(self, config: Config, *, clock: Clock, topics: Topics, capture: Capture,
                 estimator: PoseEstimator, publisher: Publisher, recorder: Recorder,
                 ha: HomeAssistant, stream: FrameStream, baselines: BaselineStore,
                 pause_store: PauseStore, apply_config: Callable[[Config], Config] | None = None,
                 poll_config: Callable[[Config], Config | None] | None = None) -> None:
        super().__init__()
        self.config = config
        self.clock = clock
        self.topics = topics
        self.capture = capture
        self.estimator = estimator
        self.publisher = publisher
        self.recorder = recorder
        self.ha = ha
        self.stream = stream
        self.baselines = baselines
        self.pause_store = pause_store
        self._persist_config = apply_config
        self._poll_config = poll_config
        mono = clock.mono()
        self.started_at = mono
        # --- the state this thread owns ---
        self.filter = PostureFilter(config.posture, mono)
        self.baseline = baselines.load(config.posture.view)
        self.pause = PauseState()
        self._pause_deadline: float | None = None  # monotonic end of a timed pause
        self.camera = "starting"
        self._seq = 0
        self._calibration: _Calibration | None = None
        self.pacer = Pacer(config.camera, config.frames)
        self._pace = (config.camera.fps, "active")
        # --- bookkeeping ---
        self._last_state_at = -1e9
        self._last_health_at = -1e9
        self.fps = RateMeter()
        self.inference = RateMeter()
        self.frames_processed = 0
        self.errors: list[float] = []
        self.fatal: str | None = None
        self._commands: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any] | None]] = queue.SimpleQueue()
        self.threads_alive: Callable[[], dict[str, bool]] = lambda: {}

    # --- lifecycle -------------------------------------------------------------------
    def calibrate_demo(self) -> None:
        """The demo scene calibrates itself on its first seconds of good posture, in memory
        only, the way a user presses Calibrate: uncalibrated defaults are deliberately lenient
        (docs/accuracy.md), and a new user should see the demo's slouch judged as bad."""
        if self.baseline.calibrated or self._calibration is not None:
            return
        log.info("demo scene: calibrating on its first seconds of good posture (not saved)")
        seconds = self.config.posture.calibration_s
        self._calibration = _Calibration(Calibrator(self.config.posture.view, seconds, self.clock.mono()),
                                         Reply("calibrate", None, _log_reply), persist=False)

    def restore(self) -> None:
        """Before the thread starts: the persisted pause, then the first (retained) state."""
        wall, mono = self.clock.wall(), self.clock.mono()
        self.pause = self.pause_store.load(wall)
        if self.pause.paused:
            self._pause_deadline = None if self.pause.until is None else mono + (self.pause.until - wall)
            self.capture.pause()
            self.camera = "released"
            self.filter.reset("unknown", mono)
        self._publish_state()

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        self._fail_pending("the agent is stopping")

    def close_recorder(self) -> None:
        """After the thread ended: the last interval into the history."""
        self.recorder.close(self.posture(), self.clock.wall())

    # --- commands: the only way other threads change the state -------------------------
    def post(self, fn: Callable[[], Any]) -> None:
        """Run fn on the pipeline thread soon; nobody waits for it."""
        self._commands.put((fn, None))
        self._wake.set()

    def call(self, fn: Callable[[], T], timeout: float = COMMAND_TIMEOUT_S) -> T:
        """Run fn on the pipeline thread and return its result (or raise its exception)."""
        if self.on_own_thread():
            return fn()
        if not self.alive():
            raise RequestError("the agent's pipeline is not running")
        future: Future[T] = Future()
        self._commands.put((fn, future))
        self._wake.set()
        try:
            return future.result(timeout)
        except TimeoutError:
            raise RequestError(f"the agent did not answer within {timeout:g}s (busy)") from None

    def _run_commands(self) -> None:
        while True:
            try:
                fn, future = self._commands.get_nowait()
            except queue.Empty:
                return
            if future is not None and not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn()
            except BaseException as exc:  # handed to the caller, or logged if nobody waits
                if future is not None:
                    future.set_exception(exc)
                elif not isinstance(exc, RequestError):
                    log.exception("command failed")
                continue
            if future is not None:
                future.set_result(result)

    def _fail_pending(self, reason: str) -> None:
        while True:
            try:
                _, future = self._commands.get_nowait()
            except queue.Empty:
                break
            if future is not None and future.set_running_or_notify_cancel():
                future.set_exception(RequestError(reason))
        if self._calibration is not None:
            self._calibration.reply.fail(f"calibration cancelled: {reason}")
            self._calibration = None

    # --- the thread --------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._run_commands()
                self._step()
            except Exception as exc:  # a bug: count it, and give up loudly if it keeps happening
                now = time.monotonic()
                self.errors = [t for t in self.errors if now - t < ERROR_WINDOW_S] + [now]
                log.exception("pipeline error")
                if len(self.errors) >= MAX_PIPELINE_ERRORS:
                    self.fatal = f"pipeline failed {len(self.errors)} times in {ERROR_WINDOW_S:.0f}s: {exc!r}"
                    self._fail_pending("the pipeline failed")
                    return
                self._stop.wait(0.5)

    def _step(self) -> None:
        mono = self.clock.mono()
        if self.pause.paused and self._pause_deadline is not None and mono >= self._pause_deadline:
            log.info("pause ended")
            self._resume()
        if self.pause.paused:
            self._set_camera("released")
            self._pace = (0.0, "idle")  # the camera is released: pose runs not at all
            self._tick()
            self._wake.wait(0.25)
            self._wake.clear()
            return
        self.capture.set_fps(self._pace[0])
        frame = self.capture.latest(timeout=FRAME_WAIT_S)
        mono = self.clock.mono()
        camera = self.capture.camera_state()
        if camera == "disconnected" and self.camera != "disconnected":
            # Never keep showing the last posture from a camera that is gone.
            self.filter.reset("unknown", mono)
            self.pacer.reset()
        self._set_camera(camera)
        if frame is None:
            self._tick()
            return
        rgb = cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB)
        t0 = time.perf_counter()
        pose = self.estimator.estimate(rgb)
        self.inference.add((time.perf_counter() - t0) * 1000)
        self.fps.add()
        self.frames_processed += 1
        reading = classify(pose, self.config.posture, self.baseline) if pose is not None else None
        state = self.filter.update(reading, mono)
        if state.changed:
            log.info("posture %s%s", state.posture,
                     f" ({', '.join(reading.reasons)})" if reading and reading.reasons else "")
            self._publish_state()
        self._feed_calibration(reading, mono)
        streaming = self.stream.active(mono)
        pace = self.pacer.decide(FrameFacts(
            now=mono, present=pose is not None, metrics=reading.metrics if reading else None,
            posture=state.posture, pending=self.filter.pending, streaming=streaming,
            calibrating=self._calibration is not None))
        self._pace = (pace.fps, pace.mode)
        self.capture.set_fps(pace.fps)  # a speed-up applies to the very next frame
        self.stream.show(pose, state.posture, frame.at)  # the stream thread draws it on the live view
        self.ha.maybe_snapshot(frame.image, pose, state.posture, state.changed, mono)
        self._tick()

    def _tick(self) -> None:
        mono, wall = self.clock.mono(), self.clock.wall()
        if self._poll_config is not None:
            edited = self._poll_config(self.config)
            if edited is not None:
                self._apply_config(edited)
        self.recorder.update(self.posture(), wall, mono)
        self.ha.tick(mono)
        refresh = self.config.mqtt.state_refresh_s
        if self.posture() == "bad":
            refresh = min(refresh, BAD_REFRESH_S)
        if mono - self._last_state_at >= refresh:
            self._publish_state()
        if mono - self._last_health_at >= self.config.mqtt.health_interval_s:
            self._last_health_at = mono
            self.publisher.publish_retained(self.topics.health, self.health_payload(), qos=0)

    # --- state and payloads ----------------------------------------------------------------
    def posture(self) -> str:
        return "paused" if self.pause.paused else self.filter.state.posture

    def _set_camera(self, camera: str) -> None:
        if camera != self.camera:
            log.info("camera %s", camera)
            self.camera = camera
            self._publish_state()

    def state_view(self) -> StateView:
        mono, wall = self.clock.mono(), self.clock.wall()
        st = self.filter.state
        posture = self.posture()
        return StateView(
            posture=posture, since=wall - max(0.0, mono - st.since), reading=st.reading,
            bad_for_s=st.bad_for(mono) if posture == "bad" else 0.0, camera=self.camera,
            view=self.config.posture.view, calibrated=self.baseline.calibrated,
            until=self.pause.until, ts=wall, seq=self._seq,
            pose_fps=round(self._pace[0], 2), mode=self._pace[1])

    def _publish_state(self) -> None:
        """Only ever called on the pipeline thread (or before it starts)."""
        self._seq += 1
        self._last_state_at = self.clock.mono()
        self.publisher.publish_state(state_payload(self.state_view()))

    def health_payload(self) -> dict[str, Any]:
        cap, pub = self.capture, self.publisher
        mono = self.clock.mono()
        threads = {"pipeline": self.alive(), "capture": cap.alive()} | self.threads_alive()
        return health_payload(HealthView(
            fps=self.fps.rate(), inference_ms=self.inference.mean(), dropped_frames=cap.dropped,
            frames_processed=self.frames_processed, frames_encoded=self.stream.encoded,
            snapshots_encoded=self.ha.snapshots_encoded, frames_dropped_offline=pub.frames_dropped,
            camera=self.camera, camera_error=cap.last_error, source=cap.spec.describe(),
            cpu_temp_c=cpu_temp_c(), rss_mb=rss_mb(), uptime_s=mono - self.started_at,
            version=__version__, streaming=self.stream.active(mono), threads=threads,
            pipeline_errors=len(self.errors), callback_errors=pub.callback_errors + self.stream.errors,
            ts=self.clock.wall(), pose_fps=round(self._pace[0], 2), mode=self._pace[1]))

    # --- calibration -------------------------------------------------------------------
    def _feed_calibration(self, reading: Reading | None, mono: float) -> None:
        cal = self._calibration
        if cal is None:
            return
        usable = reading if reading is not None and reading.metrics else None
        progress = cal.calibrator.add(usable, mono)
        if progress.percent // 10 != cal.last_percent // 10:
            cal.last_percent = progress.percent
            cal.reply.progress({"stage": progress.stage, "percent": progress.percent})
        if not cal.calibrator.done(mono):
            return
        self._calibration = None
        try:
            baseline = cal.calibrator.result(self.clock.wall())
        except CalibrationFailed as exc:
            log.info("calibration failed: %s", exc)
            cal.reply.fail(str(exc))
            return
        if cal.persist:
            self.baselines.save(self.config.posture.view, baseline)
            self.recorder.record_calibration(baseline.to_json(), self.clock.wall())
        self.baseline = baseline
        log.info("calibrated: %s", baseline.to_json())
        cal.reply.done({"stage": "done", "percent": 100, "baseline": baseline.to_json()})
        self._publish_state()

    def _cancel_calibration(self, reason: str) -> None:
        if self._calibration is not None:
            log.info("calibration cancelled: %s", reason)
            self._calibration.reply.fail(f"calibration cancelled: {reason}")
            self._calibration = None

    # --- commands (run on the pipeline thread through call/post) --------------------------
    def do_pause(self, minutes: float | None) -> float | None:
        mono, wall = self.clock.mono(), self.clock.wall()
        until = wall + minutes * 60 if minutes else None
        self.pause = PauseState(True, until)
        self._pause_deadline = mono + minutes * 60 if minutes else None
        self.pause_store.save(self.pause)
        self.capture.pause()
        self._cancel_calibration("paused")
        self.filter.reset("unknown", mono)
        self.camera = "released"
        log.info("paused%s", f" until {iso(until)}" if until else "")
        self._publish_state()
        return until

    def do_resume(self) -> bool:
        was = self.pause.paused
        self._resume()
        log.info("resumed" if was else "resume: was not paused")
        self._publish_state()
        return was

    def _resume(self) -> None:
        self.pause = PauseState()
        self._pause_deadline = None
        self.pause_store.save(self.pause)
        self.filter.reset("unknown", self.clock.mono())
        self.pacer.reset()
        self.capture.resume()
        self.camera = "starting"

    def do_start_calibration(self, seconds: float, reply: Reply) -> None:
        if self.pause.paused:
            raise RequestError("monitoring is paused: resume before calibrating")
        if self.camera == "disconnected":
            raise RequestError("the camera is disconnected")
        if self._calibration is not None:
            raise RequestError("a calibration is already running")
        self._calibration = _Calibration(Calibrator(self.config.posture.view, seconds, self.clock.mono()), reply)
        reply.progress({"stage": "starting", "percent": 0, "seconds": seconds})

    def do_set_lease(self, lease_s: float | None, viewer: str | None = None) -> None:
        self.stream.set_lease(None if lease_s is None else self.clock.mono() + lease_s, viewer)

    def do_apply_config(self, new: Config) -> Config:
        return self._apply_config(new)

    def _apply_config(self, new: Config) -> Config:
        if self._persist_config is not None:
            new = self._persist_config(new)
        self.config = new
        self.filter.cfg = new.posture
        self.pacer.camera, self.pacer.frames = new.camera, new.frames
        self.recorder.apply_config(new)
        return new
