"""`deskpulse passwd`: set the dashboard password (stored only as an argon2id hash).

Asks twice on a terminal without echo, or reads one line from standard input with --stdin
(for scripts and install.sh). Writes web.password_file (default <data_dir>/dashboard-password)
atomically, keeping an existing file's owner and mode. A running dashboard picks the new hash
up at once and ends the sessions opened with the old password. The password itself is never
echoed, logged, or passed on a command line.
"""

from __future__ import annotations

import getpass
import sys
from typing import TextIO

from .config import Config

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _read_stdin(stdin: TextIO) -> str:
    line = stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def _ask_twice() -> str | None:
    first = getpass.getpass("New dashboard password: ")
    second = getpass.getpass("Repeat it: ")
    return first if first == second else None


def passwd_command(config: Config, *, from_stdin: bool, stdin: TextIO | None = None,
                   out: TextIO | None = None, err: TextIO | None = None) -> int:
    from web.auth import hash_password, password_path, write_secret_file

    stdin = stdin or sys.stdin
    out, err = out or sys.stdout, err or sys.stderr
    if from_stdin:
        password = _read_stdin(stdin)
    elif stdin.isatty():
        try:
            asked = _ask_twice()
        except (EOFError, KeyboardInterrupt):
            print("\ndeskpulse passwd: nothing changed", file=err)
            return EXIT_FAIL
        if asked is None:
            print("deskpulse passwd: the two passwords differ; nothing changed", file=err)
            return EXIT_USAGE
        password = asked
    else:
        print("deskpulse passwd: no terminal to ask on; pass the new password on standard input "
              "with --stdin", file=err)
        return EXIT_USAGE
    try:
        hashed = hash_password(password)
    except ValueError as exc:
        print(f"deskpulse passwd: {exc}; nothing changed", file=err)
        return EXIT_USAGE
    path = password_path(config)
    try:
        write_secret_file(path, hashed + "\n")
    except OSError as exc:
        print(f"deskpulse passwd: cannot write {path}: {exc.strerror or exc}", file=err)
        return EXIT_FAIL
    print(f"dashboard password set ({path}); browsers logged in with the old one must log in again",
          file=out)
    return EXIT_OK
