"""Frame latency to a browser-equivalent subscriber through stock Debian mosquitto 2.0.11.

A publisher (paho, TCP, a separate process) sends stamped ~38 KB frames at 10 fps plus state
updates; an mqtt.js subscriber under node (bench/node/frame_sub.mjs) receives them over
WebSockets, once through mosquitto's own websockets listener and once through
deskpulse.wsrelay.WsRelay in front of mosquitto's TCP listener. The harness's own TCP
subscriber gives the baseline and the "sent" count (frames the broker forwarded in the window).
Each path gets a fresh mosquitto and publisher. Prints a markdown table.

  .venv/bin/python bench/frame_latency.py [--duration 30] [--fps 10] [--frame-bytes 38000]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from needs import need

need(modules=("paho", "psutil"), tools=("node", "mosquitto", "mosquitto_passwd"), mqttjs=True)

import benchkit as bk  # noqa: E402


def run_path(path: str, a: argparse.Namespace) -> dict[str, Any]:
    mosq = bk.start_mosquitto(ws=(path == "mosquitto-ws"), auth=a.auth)
    procs: list[bk.Proc] = []
    harness = None
    try:
        pub = bk.publisher_proc(mosq.port, a.fps, a.frame_bytes, a.state_hz, a.auth)
        procs.append(pub)
        pub.wait_ready(15)
        relay_cpu = None
        if path == "relay":
            relay, relay_port = bk.relay_proc(mosq.port)
            procs.append(relay)
            url = f"ws://127.0.0.1:{relay_port}/mqtt"
        else:
            url = f"ws://127.0.0.1:{mosq.ws_port}/mqtt"  # type: ignore[attr-defined]
        t = bk.topics()
        subs = bk.node_subscribers(url, 1, t, a.auth, timeout_s=a.duration + a.grace + 60)
        procs.append(subs)
        subs.wait_ready(30)
        harness = bk.Harness(mosq.port, t, a.auth)
        cpu0 = relay.cpu_seconds() if path == "relay" else 0.0
        ref = harness.run_window(a.duration)
        if path == "relay":
            relay_cpu = relay.cpu_seconds() - cpu0
        result = node_result_or_partial(subs, a.grace)
        client = result["clients"][0]
        return {"path": path, "sent": ref.frames, "received": client["frames"], "lat": client["latency_ms"],
                "ended": client["ended"], "bad": client["bad_frames"], "errors": client["errors"],
                "ref_lat": ref.latency_ms, "relay_cpu": relay_cpu, "state_sent": len(ref.state_seqs),
                "state_received": len(set(client["state_seqs"]) & set(ref.state_seqs))}
    finally:
        bk.teardown(harness, procs, mosq)


def node_result_or_partial(subs: bk.Proc, grace: float) -> dict[str, Any]:
    """The subscriber's result once it saw the end marker, or, if a backlog keeps the marker
    from arriving within `grace` seconds, whatever it had received by then."""
    try:
        return bk.node_result(subs, grace)
    except TimeoutError:
        subs.proc.send_signal(signal.SIGTERM)
        return bk.node_result(subs, 10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=30.0, help="counting window, seconds")
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--frame-bytes", type=int, default=38_000)
    ap.add_argument("--state-hz", type=float, default=2.0)
    ap.add_argument("--grace", type=float, default=10.0,
                    help="seconds to wait for the last frames after the window closes")
    ap.add_argument("--no-auth", dest="auth", action="store_false",
                    help="anonymous mosquitto instead of production-like accounts + ACL")
    ap.add_argument("--paths", default="mosquitto-ws,relay")
    a = ap.parse_args(argv)
    if not bk.WEB_NODE_MODULES.exists():
        print("web/node_modules/mqtt is missing: run scripts/fetch_mqttjs.sh first", file=sys.stderr)
        return 2

    rows = [run_path(p, a) for p in a.paths.split(",")]
    print(f"\nFrame latency, {a.fps:g} fps x {a.frame_bytes} B frames, {a.duration:g} s window, "
          f"mosquitto {'with accounts + ACL' if a.auth else 'anonymous'}, mqtt.js 5.16.0 under node\n")
    print("| path | frames received / sent | p50 ms | p95 ms | max ms | p50 1st half -> 2nd half | "
          "state received / sent |")
    print("|---|---|---|---|---|---|---|")
    base = rows[0]["ref_lat"]
    print(f"| TCP baseline (paho, direct) | {rows[0]['sent']} / {rows[0]['sent']} | "
          f"{bk.fmt_ms(bk.percentile(base, 50))} | {bk.fmt_ms(bk.percentile(base, 95))} | "
          f"{bk.fmt_ms(max(base) if base else None)} | | |")
    names = {"mosquitto-ws": "mosquitto 2.0.11 websockets listener", "relay": "WsRelay -> mosquitto TCP"}
    for r in rows:
        lat = r["lat"]
        pct = 100.0 * r["received"] / r["sent"] if r["sent"] else 0.0
        note = "" if r["ended"] else " (end not reached: backlog)"
        print(f"| {names.get(r['path'], r['path'])}{note} | {r['received']} / {r['sent']} ({pct:.1f}%) | "
              f"{bk.fmt_ms(lat['p50'])} | {bk.fmt_ms(lat['p95'])} | {bk.fmt_ms(lat['max'])} | "
              f"{bk.fmt_ms(lat['p50_first_half'])} -> {bk.fmt_ms(lat['p50_second_half'])} | "
              f"{r['state_received']} / {r['state_sent']} |")
    print(f"\nLoad average (1, 5, 15 min) at the end: {os.getloadavg()}")
    for r in rows:
        if r["relay_cpu"] is not None:
            print(f"\nRelay process CPU during the window: {r['relay_cpu']:.2f} s over {a.duration:g} s "
                  f"({100 * r['relay_cpu'] / a.duration:.1f}% of one core) for one viewer")
        if r["errors"] or r["bad"]:
            print(f"\n{r['path']}: subscriber errors {r['errors'][:3]}, bad frames {r['bad']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
