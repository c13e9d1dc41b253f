"""The `deskpulse` command line: parses arguments, loads config, runs one command.

Exit codes: 0 success, 1 runtime failure (a thread died, a request failed), 2 bad
configuration or arguments. User mistakes print one line, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .config import Config, load_config
from .errors import ConfigError, DeskPulseError

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    debug = level == "debug"
    # Third-party chatter stays at warning unless we debug.
    for noisy in ("transitions", "werkzeug", "websockets"):
        logging.getLogger(noisy).setLevel(logging.INFO if debug else logging.WARNING)
    # The embedded amqtt broker warns twice about every client it turns away: another agent's
    # MQTT 5 probe ("Invalid protocol ...: 5", after which paho falls back to 3.1.1), a port
    # check that closes before CONNECT. Those clients report their own failures.
    logging.getLogger("amqtt").setLevel(logging.INFO if debug else logging.ERROR)
    # glog and TensorFlow read these; MediaPipe 0.10.18's absl lines do not (deskpulse/nativelog.py).
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _config_path(args: argparse.Namespace) -> str | None:
    return args.config or os.environ.get("DESKPULSE_CONFIG") or None


def _load(args: argparse.Namespace, **overrides: Any) -> Config:
    return load_config(_config_path(args), overrides)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help="TOML config (default: $DESKPULSE_CONFIG)")


def _add_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", metavar="URL", help="mqtt://[user:pass@]host:port or auto")
    p.add_argument("--device-id", metavar="ID", help="the device's topic level, [a-z0-9_-]+")


def _signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: Any) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def cmd_run(args: argparse.Namespace, with_web: bool = False) -> int:
    from . import allocator, storage

    allocator.tune()  # before the camera and MediaPipe allocate anything
    from .config import load_layers
    from .settings import RuntimeConfig, SettingsStore, with_saved

    overrides = {"camera.source": args.source, "mqtt.broker": args.broker, "device_id": args.device_id}
    path = _config_path(args)
    layers = load_layers(path, overrides)
    setup_logging(args.log_level or layers.config.log_level)
    try:
        directory = storage.prepare(layers.config)
    except OSError as exc:
        log.error("cannot use the data dir %s: %s", layers.config.data_dir, exc)
        return EXIT_FAIL
    store = SettingsStore(directory)
    runtime = RuntimeConfig(with_saved(layers, store), store)
    config = runtime.layers.config
    from .agent import Agent
    from .configwatch import ConfigWatcher

    stop = threading.Event()
    _signals(stop)
    agent = Agent(config, runtime=runtime, watcher=ConfigWatcher(runtime) if path else None)
    web = None
    try:
        agent.start()
        if with_web:
            from web.server import WebServer

            addr = agent.broker_address
            web = WebServer(config, relay_target=(addr.host, addr.port)).start()
            print(web.banner(), flush=True)
        code = agent.wait(stop, also={"deskpulse-web": web.alive} if web is not None else None)
    except DeskPulseError as exc:
        log.error("%s", exc)
        code = EXIT_FAIL
    finally:
        if web is not None:
            web.stop()
        agent.stop()
    return code


def cmd_web(args: argparse.Namespace) -> int:
    config = _load(args)
    setup_logging(args.log_level or config.log_level)
    from web.server import WebServer

    stop = threading.Event()
    _signals(stop)
    try:
        server = WebServer(config).start()
    except ConfigError:
        raise  # exit 2: systemd must not retry a bad configuration
    except DeskPulseError as exc:
        log.error("%s", exc)
        return EXIT_FAIL
    print(server.banner(), flush=True)
    code = server.wait(stop)  # 1 if the relay or the HTTP server dies
    server.stop()
    return code


def cmd_passwd(args: argparse.Namespace) -> int:
    from .passwd import passwd_command

    return passwd_command(_load(args), from_stdin=args.stdin)


def cmd_check_config(args: argparse.Namespace) -> int:
    path = _config_path(args)
    config = _load(args)
    print(f"ok: {path or 'defaults'} (device {config.device_id}, source {config.camera.source}, "
          f"broker {config.mqtt.broker})")
    return EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Ask the running agent to calibrate, over MQTT, and show its progress."""
    config = _load(args, **{"mqtt.broker": args.broker, "device_id": args.device_id})
    setup_logging(args.log_level or "warning")
    body: dict[str, Any] = {"transaction": uuid.uuid4().hex[:12]}
    if args.seconds:
        body["seconds"] = args.seconds

    def show(answer: dict[str, Any]) -> bool:
        data = answer.get("data") or {}
        if answer.get("status") != "ok":
            print(f"calibration failed: {answer.get('error')}", file=sys.stderr)
            return True
        if answer.get("final", True):
            print(f"calibrated: {json.dumps(data.get('baseline', data))}")
            return True
        print(f"{data.get('stage', '?')}: {data.get('percent', 0)}%", flush=True)
        return False

    print("Sit in your good posture and hold still...", flush=True)
    return _request(config, "calibrate", body, show, timeout=args.timeout)


def cmd_stats(args: argparse.Namespace) -> int:
    from .report import stats_command

    config = _load(args)
    return stats_command(config, args.days)


def cmd_ha_remove(args: argparse.Namespace) -> int:
    """Delete this device's Home Assistant discovery topics (empty retained payloads)."""
    from . import discovery
    from .mqttclient import connect, target_address

    # The device to remove (default: the configured one); its own record lists what it published.
    config = _load(args, **{"mqtt.broker": args.broker, "device_id": args.device_id})
    setup_logging(args.log_level or "warning")
    path = discovery.record_path(config)
    messages = discovery.removal_messages(config, None, previous=discovery.read_published(path))
    client = connect(target_address(config))
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
    if path.exists():
        try:
            discovery.write_published(path, [])
        except OSError as exc:
            print(f"warning: could not clear {path}: {exc}", file=sys.stderr)
    print(f"removed {len(messages)} Home Assistant discovery topics for {config.device_id}")
    return EXIT_OK


def cmd_fleet(args: argparse.Namespace) -> int:
    from .fleet import fleet_command

    config = _load(args, **{"mqtt.broker": args.broker})
    setup_logging(args.log_level or "warning")
    return fleet_command(config, args.timeout, as_json=args.json)


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import doctor_command

    config = _load(args)
    setup_logging(args.log_level or "error")
    return doctor_command(config, sys.stdout)


def _request(config: Config, verb: str, body: dict[str, Any], on_answer: Callable[[dict[str, Any]], bool],
             timeout: float) -> int:
    from .mqttclient import request

    try:
        ok = request(config, verb, body, on_answer, timeout)
    except DeskPulseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK if ok else EXIT_FAIL


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deskpulse", description="Posture monitoring over MQTT.")
    parser.add_argument("--version", action="version", version=f"deskpulse {__version__}")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, helptext in (("run", "run the agent"), ("up", "run the agent and the dashboard in one process")):
        p = sub.add_parser(name, help=helptext)
        _add_common(p)
        _add_target(p)
        p.add_argument("--source", metavar="SRC",
                       help="auto, demo, 0, /dev/video0, a video/image file, a directory of images, or a URL")
        p.set_defaults(func=cmd_run, with_web=name == "up")

    p = sub.add_parser("web", help="serve the dashboard and the browsers' broker relay")
    _add_common(p)
    p.set_defaults(func=cmd_web)

    p = sub.add_parser("passwd", help="set the dashboard password (asks twice; --stdin for scripts)")
    _add_common(p)
    p.add_argument("--stdin", action="store_true", help="read the new password from standard input")
    p.set_defaults(func=cmd_passwd)

    p = sub.add_parser("check-config", help="validate a config file; exit 2 with one line per problem")
    _add_common(p)
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("calibrate", help="ask the running agent to record your good posture")
    _add_common(p)
    _add_target(p)
    p.add_argument("--seconds", type=float, help="how long to record (default posture.calibration_s)")
    p.add_argument("--timeout", type=float, default=60.0)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("stats", help="print daily totals from the history")
    _add_common(p)
    p.add_argument("--days", type=int, default=7)
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("ha-remove", help="remove this device from Home Assistant (discovery topics)")
    _add_common(p)
    p.add_argument("--broker", metavar="URL", help="mqtt://[user:pass@]host:port")
    p.add_argument("--device-id", metavar="ID", help="remove an old device id instead of the configured one")
    p.set_defaults(func=cmd_ha_remove)

    p = sub.add_parser("fleet", help="summarise every device under the prefix")
    _add_common(p)
    p.add_argument("--broker", metavar="URL", help="mqtt://[user:pass@]host:port")
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fleet)

    p = sub.add_parser("doctor", help="check camera, broker, browser path, model, disk and clock")
    _add_common(p)
    p.set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "with_web", False):
            return cmd_run(args, with_web=True)
        return int(args.func(args))
    except ConfigError as exc:
        for line in exc.problems:
            print(f"config error: {line}", file=sys.stderr)
        return EXIT_CONFIG
    except DeskPulseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
