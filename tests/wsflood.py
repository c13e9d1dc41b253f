"""A WebSocket connection flood, run as its own process so its sockets don't count against the
relay's process: `python -m tests.wsflood --url ws://127.0.0.1:PORT/mqtt --count 500 ...`.

Opens `--count` TCP connections at once, and only when all are open sends every WebSocket
upgrade (websockets' asyncio client), so the server holds them all at the same time; optionally
sends an MQTT CONNECT on each accepted one and waits for the broker's CONNACK; then prints one
JSON line:
{"accepted": n, "connacked": n, "status": {"503": n, ...}, "failed": {"<error>": n}}.
With --hold it keeps the accepted connections open until stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus


async def tcp(host: str, port: int, failed: Counter[str]) -> socket.socket | None:
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except OSError as exc:
        failed["tcp:" + type(exc).__name__] += 1
        sock.close()
        return None
    return sock


async def one(args: argparse.Namespace, sock: socket.socket, headers: list[tuple[str, str]], out: Counter[str],
              status: Counter[str], failed: Counter[str], keep: list[ClientConnection]) -> None:
    try:
        ws = await connect(args.url, sock=sock, additional_headers=headers,
                           subprotocols=["mqtt"],  # type: ignore[list-item]
                           open_timeout=args.timeout, max_size=None, compression=None)
    except InvalidStatus as exc:
        status[str(exc.response.status_code)] += 1
        return
    except Exception as exc:  # refused, reset, dropped before the handshake
        failed[type(exc).__name__] += 1
        return
    out["accepted"] += 1
    keep.append(ws)
    if args.connect_hex:
        try:
            await ws.send(bytes.fromhex(args.connect_hex))
            answer = await asyncio.wait_for(ws.recv(), args.timeout)
            if isinstance(answer, bytes) and answer[:1] == b"\x20":
                out["connacked"] += 1
        except Exception as exc:
            failed["after-upgrade:" + type(exc).__name__] += 1


async def main(args: argparse.Namespace) -> None:
    headers = [tuple(h.split(": ", 1)) for h in args.header]
    out: Counter[str] = Counter()
    status: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    keep: list[ClientConnection] = []
    url = urlsplit(args.url)
    socks = await asyncio.gather(*(tcp(url.hostname or "127.0.0.1", url.port or 80, failed)
                                   for _ in range(args.count)))
    await asyncio.gather(*(one(args, sock, headers, out, status, failed, keep)  # type: ignore[arg-type]
                           for sock in socks if sock is not None))
    report: dict[str, Any] = {"accepted": out["accepted"], "connacked": out["connacked"],
                              "status": dict(status), "failed": dict(failed)}
    print(json.dumps(report), flush=True)
    if args.hold:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await asyncio.gather(*(ws.close() for ws in keep), return_exceptions=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--connect-hex", default="", help="an MQTT CONNECT to send on each accepted connection")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--hold", action="store_true", help="keep accepted connections open until stdin closes")
    asyncio.run(main(parser.parse_args()))
