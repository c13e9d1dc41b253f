"""Fan-out: many WebSocket viewers through WsRelay -> stock mosquitto 2.0.11, one publisher.

One mosquitto (production-like accounts + ACL), one relay process (as in `deskpulse web`) and
one publisher process run for the whole benchmark. Phase 1 has 1 viewer, phase 2 has
--viewers (100) viewers: mqtt.js clients under node, --clients-per-proc per node process. Each
phase counts between start/end markers; the harness's TCP reference subscriber gives "sent".

Per viewer: % of state updates received (target 100%) and % of frames (target >= 95%).
CPU seconds during each window for the publisher (target: 100 viewers within 5% of 1 viewer),
the relay process, mosquitto and the node viewers (which on this box share the same 2 cores).

The publisher is pluggable: --publisher-cmd "deskpulse ... --broker mqtt://{host}:{port}" runs
any command ({host} {port} {prefix} {device} {username} {password} are filled in; the synthetic
one is `benchkit.py publish`). Viewers renew a frame lease on request/stream every
--renew-every seconds, as pages do, so a real agent keeps streaming.

  .venv/bin/python bench/fanout.py [--viewers 100] [--duration 20] [--publisher-cmd CMD]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from typing import Any

from needs import need

need(modules=("paho", "psutil"), tools=("node", "mosquitto", "mosquitto_passwd"), mqttjs=True)

import psutil  # noqa: E402

import benchkit as bk  # noqa: E402




def phase(n: int, a: argparse.Namespace, url: str, harness: bk.Harness, pub: bk.Proc, relay: bk.Proc,
          mosq_ps: psutil.Process) -> dict[str, Any]:
    t = bk.topics()
    per = max(1, a.clients_per_proc)
    sizes = [min(per, n - i) for i in range(0, n, per)]
    extra = (["--renew-topic", t.request("stream"), "--renew-every", str(a.renew_every),
              "--renew-payload", a.renew_payload] if a.renew_every > 0 else [])
    subs = [bk.node_subscribers(url, k, t, a.auth, timeout_s=a.duration + a.grace + 120,
                                extra=[*extra, "--id-prefix", f"v{n}p{i}"]) for i, k in enumerate(sizes)]
    try:
        for s in subs:
            s.wait_ready(60)
        if a.renew_every > 0:  # a page asks for frames as it opens; the viewers only renew later
            harness.client.publish(t.request("stream"), a.renew_payload.replace("{viewer}", "harness"),
                                   qos=1).wait_for_publish(10)
        time.sleep(a.settle)  # let connection set-up CPU pass before the window opens
        node_ps = [s.ps for s in subs]
        before = {"publisher_sched": pub.cpu_seconds_precise(), "publisher": pub.cpu_seconds(), "relay": relay.cpu_seconds(), "mosquitto": bk.cpu_of([mosq_ps]),
                  "viewers": bk.cpu_of(node_ps)}
        wall0 = time.monotonic()
        ref = harness.run_window(a.duration)
        wall = time.monotonic() - wall0
        after = {"publisher_sched": pub.cpu_seconds_precise(), "publisher": pub.cpu_seconds(), "relay": relay.cpu_seconds(), "mosquitto": bk.cpu_of([mosq_ps]),
                 "viewers": bk.cpu_of(node_ps)}
        results = []
        for s in subs:
            try:
                results.append(bk.node_result(s, a.grace))
            except TimeoutError:
                s.proc.send_signal(signal.SIGTERM)
                results.append(bk.node_result(s, 10))
    finally:
        for s in subs:
            s.stop()
    clients = [c for r in results for c in r["clients"]]
    ref_seqs = set(ref.state_seqs)
    frames_pct = [100.0 * c["frames"] / ref.frames if ref.frames else 0.0 for c in clients]
    state_pct = [100.0 * len(set(c["state_seqs"]) & ref_seqs) / len(ref_seqs) if ref_seqs else 0.0 for c in clients]
    p95s = [c["latency_ms"]["p95"] for c in clients if c["latency_ms"]["p95"] is not None]
    all_lat = {"p50": [c["latency_ms"]["p50"] for c in clients if c["latency_ms"]["p50"] is not None]}
    return {
        "viewers": n, "connected": len(clients), "frames_sent": ref.frames, "states_sent": len(ref_seqs),
        "frames_pct": frames_pct, "state_pct": state_pct, "p95s": p95s, "p50s": all_lat["p50"],
        "max_lat": max((c["latency_ms"]["max"] or 0) for c in clients) if clients else None,
        "ended": sum(1 for c in clients if c["ended"]), "errors": sorted({e for c in clients for e in c["errors"]}),
        "cpu": {k: after[k] - before[k] for k in before}, "wall": wall,
        "aggregate_latency": [r["latency_ms"] for r in results],
    }


def summary_rows(ph: dict[str, Any], a: argparse.Namespace) -> list[str]:
    fp, sp = ph["frames_pct"], ph["state_pct"]
    ok_states = sum(1 for v in sp if v >= 100.0)
    ok_frames = sum(1 for v in fp if v >= 95.0)
    cpu, wall = ph["cpu"], ph["wall"]
    worst_p95 = max(ph["p95s"]) if ph["p95s"] else None
    med_p95 = statistics.median(ph["p95s"]) if ph["p95s"] else None
    return [
        f"| {ph['viewers']} | {ph['connected']} | {ph['frames_sent']} | {ph['states_sent']} | "
        f"{min(sp):.1f} / {statistics.median(sp):.1f} ({ok_states}/{len(sp)} at 100%) | "
        f"{min(fp):.1f} / {statistics.median(fp):.1f} ({ok_frames}/{len(fp)} >= 95%) | "
        f"{bk.fmt_ms(statistics.median(ph['p50s']) if ph['p50s'] else None)} | {bk.fmt_ms(med_p95)} / "
        f"{bk.fmt_ms(worst_p95)} | {bk.fmt_ms(ph['max_lat'])} | "
        f"{cpu['publisher']:.2f} | {cpu['relay']:.2f} ({100 * cpu['relay'] / wall:.0f}%) | "
        f"{cpu['mosquitto']:.2f} ({100 * cpu['mosquitto'] / wall:.0f}%) | "
        f"{cpu['viewers']:.2f} ({100 * cpu['viewers'] / wall:.0f}%) |"
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--viewers", type=int, default=100)
    ap.add_argument("--clients-per-proc", type=int, default=50)
    ap.add_argument("--duration", type=float, default=20.0, help="counting window per phase, seconds")
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--frame-bytes", type=int, default=38_000)
    ap.add_argument("--state-hz", type=float, default=2.0)
    ap.add_argument("--renew-every", type=float, default=20.0,
                    help="lease renewal period per viewer, as web/static/app.js RENEW_MS; 0 = off")
    ap.add_argument("--renew-payload", default='{"lease_s": 45}',
                    help='renewal body ({viewer} becomes each viewer\'s id); pages send '
                         '{"lease_s": 45, "viewer": "{viewer}", "quiet": true}')
    ap.add_argument("--grace", type=float, default=15.0)
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--publisher-cmd", help="command template for the publisher, e.g. the real agent")
    ap.add_argument("--publisher-warmup", type=float, default=5.0,
                    help="seconds to let a --publisher-cmd start (it need not print READY)")
    ap.add_argument("--no-auth", dest="auth", action="store_false")
    ap.add_argument("--json", help="also write the raw figures to this file")
    a = ap.parse_args(argv)
    if not bk.WEB_NODE_MODULES.exists():
        print("web/node_modules/mqtt is missing: run scripts/fetch_mqttjs.sh first", file=sys.stderr)
        return 2

    mosq = bk.start_mosquitto(auth=a.auth)
    procs: list[bk.Proc] = []
    harness = None
    try:
        assert mosq.proc is not None
        mosq_ps = psutil.Process(mosq.proc.pid)
        pub = bk.publisher_proc(mosq.port, a.fps, a.frame_bytes, a.state_hz, a.auth, a.publisher_cmd)
        procs.append(pub)
        if a.publisher_cmd:
            time.sleep(a.publisher_warmup)  # an arbitrary command has no READY handshake
            if pub.proc.poll() is not None:
                print(f"publisher command exited with {pub.proc.returncode}", file=sys.stderr)
                return 1
        else:
            pub.wait_ready(15)
        relay, relay_port = bk.relay_proc(mosq.port)
        procs.append(relay)
        url = f"ws://127.0.0.1:{relay_port}/mqtt"
        harness = bk.Harness(mosq.port, bk.topics(), a.auth)
        phases = [phase(n, a, url, harness, pub, relay, mosq_ps) for n in (1, a.viewers)]
    finally:
        bk.teardown(harness, procs, mosq)

    print(f"\nFan-out through WsRelay -> mosquitto 2.0.11 TCP, {a.fps:g} fps x {a.frame_bytes} B frames + "
          f"state at {a.state_hz:g}/s, {a.duration:g} s window per phase, {a.clients_per_proc} mqtt.js "
          f"clients per node process, lease renewal every {a.renew_every:g} s per viewer\n")
    print("| viewers | connected | frames sent | states sent | state % min / median | frame % min / median | "
          "p50 ms (median viewer) | p95 ms median / worst viewer | max ms | publisher CPU s | relay CPU s (% core) | "
          "mosquitto CPU s | node viewers CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for ph in phases:
        for row in summary_rows(ph, a):
            print(row)
    one, many = phases
    ratio = many["cpu"]["publisher"] / one["cpu"]["publisher"] if one["cpu"]["publisher"] > 0 else float("nan")
    sched = (many["cpu"]["publisher_sched"] / one["cpu"]["publisher_sched"]
             if one["cpu"]["publisher_sched"] > 0 else float("nan"))
    print(f"\nPublisher CPU, {a.viewers} viewers / 1 viewer: {sched:.3f} by scheduler run time "
          f"({one['cpu']['publisher_sched']:.3f} s -> {many['cpu']['publisher_sched']:.3f} s), "
          f"{ratio:.3f} by psutil clock ticks (target <= 1.05)")
    print(f"Load average (1, 5, 15 min) at the end: {os.getloadavg()}: other work on this box shares the 2 cores")
    print(f"Relay CPU at {a.viewers} viewers: {many['cpu']['relay']:.2f} s over {many['wall']:.1f} s = "
          f"{100 * many['cpu']['relay'] / many['wall']:.0f}% of one core; at 1 viewer "
          f"{100 * one['cpu']['relay'] / one['wall']:.1f}%")
    errors = one["errors"] + many["errors"]
    if errors:
        print(f"Viewer errors: {errors[:5]}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "phases": phases, "publisher_cpu_ratio": ratio, "publisher_sched_ratio": sched}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
