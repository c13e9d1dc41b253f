"""Who may see the dashboard: the login secret, the sessions it opens, the limit on guessing.

Owns the dashboard password (an argon2id hash in a file, set by `deskpulse passwd`) or the
login token (Jupyter style: generated once, kept 0600 in the data dir), the in-memory session
store, the rate limit on failed logins, and the checks both servers share: the session cookie
and the page's own Origin. Thread-safe: the HTTP threads and the relay's thread all ask it.

It never speaks HTTP or MQTT, and it never stores or logs a password or a session id in
clear: sessions are kept by the SHA-256 of their cookie value.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from deskpulse.config import Config
from deskpulse.errors import ConfigError
from deskpulse.ratelimit import TokenBucket

log = logging.getLogger(__name__)

COOKIE = "deskpulse_session"
PASSWORD_FILE = "dashboard-password"
TOKEN_FILE = "dashboard-token"
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
# OWASP's argon2id minimum (19 MiB, 2 passes, 1 lane): 0.12-0.14 s per check measured on this
# busy 2-core x86, and memory a Pi can spare. Checks run one at a time (see Credentials), so a
# login flood costs one check's memory.
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
# Failed logins: each client may try 5 times at once, then once per 12 s; everyone together
# 20 at once, then once per 3 s (so many addresses cannot guess faster than that either).
CLIENT_BURST, CLIENT_EVERY_S = 5, 12.0
GLOBAL_BURST, GLOBAL_EVERY_S = 20, 3.0
MAX_TRACKED_CLIENTS = 4096
MAX_SESSIONS = 1000

Mode = Literal["password", "token"]


def hash_password(password: str) -> str:
    """The argon2id hash of a dashboard password; ValueError names what is wrong with it."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ValueError(f"the password must have at most {MAX_PASSWORD} characters")
    return HASHER.hash(password)


def password_path(config: Config) -> Path:
    return Path(config.web.password_file).expanduser() if config.web.password_file else (
        config.data_dir / PASSWORD_FILE)


def token_path(config: Config) -> Path:
    return config.data_dir / TOKEN_FILE


def write_secret_file(path: Path, text: str) -> None:
    """Replace path atomically, keeping an existing file's mode and owner (0600 when new)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        old = path.stat()
    except FileNotFoundError:
        old = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if old is not None:
            os.chmod(tmp, old.st_mode & 0o777)
            if os.geteuid() == 0:
                os.chown(tmp, old.st_uid, old.st_gid)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


class Credentials:
    """The one secret that opens a session: the password (hash file) or the token.

    The hash file is re-read when it changes, so `deskpulse passwd` takes effect at once, and
    `generation` changes with it: sessions opened with an older secret stop being valid.
    """

    def __init__(self, mode: Mode, *, password_file: Path | None = None, token: str | None = None) -> None:
        self.mode = mode
        self.password_file = password_file
        self.token = token
        # One argon2 verification at a time; the file cache has its own lock, so the relay's
        # session checks (generation) never wait behind a verification.
        self._verify_lock = threading.Lock()
        self._file_lock = threading.Lock()
        self._stat: tuple[int, int, int] | None = None
        self._hash: str | None = None

    @classmethod
    def from_config(cls, config: Config) -> "Credentials":
        """Password or token per web.auth; ConfigError (one line) when that cannot work."""
        web = config.web
        pw_file = password_path(config)
        mode: Mode
        if web.auth == "auto":
            mode = "password" if pw_file.exists() else "token"
        else:
            mode = web.auth
        if mode == "password":
            creds = cls("password", password_file=pw_file)
            if creds._current_hash() is None:
                problem = "holds no argon2 password hash" if pw_file.exists() else "is missing"
                raise ConfigError(f"web.password_file: {pw_file} {problem}: "
                                  f"set the dashboard password with `deskpulse passwd`")
            return creds
        return cls("token", token=_load_token(config))

    # --- the secret -------------------------------------------------------------------------------

    def _current_hash(self) -> str | None:
        """The hash in the password file, re-read when the file changed; None if unusable."""
        assert self.password_file is not None
        with self._file_lock:
            try:
                st = self.password_file.stat()
            except OSError:
                self._stat, self._hash = None, None
                return None
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            if key != self._stat:
                try:
                    text = self.password_file.read_text(encoding="utf-8").strip()
                except (OSError, UnicodeDecodeError) as exc:
                    log.warning("cannot read the dashboard password file %s: %s", self.password_file, exc)
                    text = ""
                self._stat, self._hash = key, (text if text.startswith("$argon2") else None)
            return self._hash

    def generation(self) -> str:
        """Changes whenever the secret does; '' while no login is possible."""
        if self.mode == "token":
            return _digest(self.token or "")[:16]
        current = self._current_hash()
        return _digest(current)[:16] if current else ""

    def check(self, attempt: str) -> bool:
        if not attempt or len(attempt) > MAX_PASSWORD:
            return False
        if self.mode == "token":
            return bool(self.token) and hmac.compare_digest(attempt.encode(), (self.token or "").encode())
        current = self._current_hash()
        if current is None:
            return False
        with self._verify_lock:
            try:
                return HASHER.verify(current, attempt)
            except (VerificationError, InvalidHashError):
                return False


def _load_token(config: Config) -> str:
    """web.token, else the kept token, else a new one written to <data_dir>/dashboard-token."""
    configured = config.web.token.get_secret_value() if config.web.token else ""
    if configured:
        return configured
    path = token_path(config)
    try:
        kept = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        kept = ""
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("cannot read the login token %s (%s); a new one is made", path, exc)
        kept = ""
    if len(kept) >= 16:
        return kept
    token = secrets.token_hex(24)
    try:
        write_secret_file(path, token + "\n")
    except OSError as exc:
        log.warning("cannot keep the login token in %s (%s): it lasts until this process stops", path, exc)
    return token


# --- sessions -------------------------------------------------------------------------------------


@dataclass
class _Session:
    expires: float  # monotonic
    generation: str


class Sessions:
    """Logged-in browsers: cookie value -> expiry, kept in memory by the value's SHA-256."""

    def __init__(self, credentials: Credentials, lifetime_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.credentials = credentials
        self.lifetime_s = lifetime_s
        self._clock = clock
        self._lock = threading.Lock()
        self._by_digest: dict[str, _Session] = {}

    def open(self) -> str:
        """A new session; returns the cookie value."""
        value = secrets.token_urlsafe(32)
        now = self._clock()
        generation = self.credentials.generation()
        with self._lock:
            self._by_digest = {k: s for k, s in self._by_digest.items() if s.expires > now}
            while len(self._by_digest) >= MAX_SESSIONS:
                oldest = min(self._by_digest, key=lambda k: self._by_digest[k].expires)
                del self._by_digest[oldest]
            self._by_digest[_digest(value)] = _Session(now + self.lifetime_s, generation)
        return value

    def valid(self, value: str | None) -> bool:
        if not value or len(value) > 256:
            return False
        key = _digest(value)
        with self._lock:
            session = self._by_digest.get(key)
            if session is None:
                return False
            if session.expires <= self._clock():
                del self._by_digest[key]
                return False
        return session.generation != "" and session.generation == self.credentials.generation()

    def close(self, value: str | None) -> bool:
        """End a session (logout); True if there was one."""
        if not value:
            return False
        with self._lock:
            return self._by_digest.pop(_digest(value), None) is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_digest)


# --- failed logins ----------------------------------------------------------------------------


class LoginLimiter:
    """Token buckets on failed logins, per client address and for everyone together."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._global = TokenBucket(1 / GLOBAL_EVERY_S, GLOBAL_BURST, clock())
        self._clients: dict[str, TokenBucket] = {}

    def _bucket(self, client: str, now: float) -> TokenBucket:
        bucket = self._clients.get(client)
        if bucket is None:
            if len(self._clients) >= MAX_TRACKED_CLIENTS:
                # Forget the clients whose bucket has refilled; failing that, the oldest one.
                for known, b in list(self._clients.items()):
                    b.take(now, 0)
                    if b.retry_after(CLIENT_BURST) == 0:
                        del self._clients[known]
                if len(self._clients) >= MAX_TRACKED_CLIENTS:
                    del self._clients[next(iter(self._clients))]
            bucket = self._clients[client] = TokenBucket(1 / CLIENT_EVERY_S, CLIENT_BURST, now)
        return bucket

    def retry_after(self, client: str) -> int:
        """0 if client may try now, else whole seconds to wait (for Retry-After)."""
        now = self._clock()
        with self._lock:
            self._global.take(now, 0)
            bucket = self._bucket(client, now)
            bucket.take(now, 0)
            wait = max(self._global.retry_after(), bucket.retry_after())
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, client: str) -> None:
        now = self._clock()
        with self._lock:
            self._global.take(now)
            self._bucket(client, now).take(now)


# --- the checks both servers make ---------------------------------------------------------------


def cookie_value(header: str | None) -> str | None:
    """The session cookie's value from a Cookie header, or None."""
    if not header:
        return None
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == COOKIE:
            return value.strip().strip('"') or None
    return None


_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def parse_origin(value: str | None) -> tuple[str, str, int] | None:
    """(scheme, hostname, port) of an http(s) origin; None for 'null', junk or other schemes."""
    if not value or value == "null":
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        return None
    return (parts.scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[parts.scheme])


def split_host(host_header: str | None) -> tuple[str, int | None] | None:
    """(hostname lowered, port or None) of a Host header; None if it is not one."""
    if not host_header:
        return None
    try:
        parts = urlsplit("//" + host_header.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.path or parts.query or parts.username is not None:
        return None
    return (parts.hostname.lower(), port)


class Guard:
    """The login state shared by the HTTP app and the relay: credentials, sessions, limiter."""

    def __init__(self, config: Config, credentials: Credentials | None = None) -> None:
        self.config = config
        self.credentials = credentials or Credentials.from_config(config)
        self.sessions = Sessions(self.credentials, config.web.session_hours * 3600)
        self.limiter = LoginLimiter()
        # Limit check, verification and the failure's record happen as one step, so concurrent
        # guesses cannot all pass the check before the first failure is counted.
        self._attempt_lock = threading.Lock()
        self.public_origin = parse_origin(config.web.public_url) if config.web.public_url else None
        # The HTTP server's real port (web.port may be 0); WebServer sets it once bound.
        self.http_port = config.web.port

    @property
    def mode(self) -> Mode:
        return self.credentials.mode

    def attempt(self, client: str, secret: str) -> tuple[bool, int]:
        """(logged in, Retry-After seconds): one login attempt by a client address."""
        with self._attempt_lock:
            wait = self.limiter.retry_after(client)
            if wait:
                return False, wait
            if self.credentials.check(secret):
                return True, 0
            self.limiter.failed(client)
            return False, 0

    def page_origin_ok(self, origin: str | None, host_header: str | None, scheme: str) -> bool:
        """A POST to the page: Origin is the page itself (same scheme, Host and port)."""
        seen = parse_origin(origin)
        if seen is None:
            return False
        if seen == self.public_origin:
            return True
        host = split_host(host_header)
        return host is not None and seen == (scheme, host[0], host[1] or _DEFAULT_PORTS.get(scheme, 0))

    def ws_origin_ok(self, origin: str | None, host_header: str | None) -> bool:
        """A WebSocket upgrade: Origin is the page, i.e. http(s)://<the ws request's host>:<our
        HTTP port>, or web.public_url. Anything else (another site, 'null', none) is refused."""
        seen = parse_origin(origin)
        if seen is None:
            return False
        if seen == self.public_origin:
            return True
        host = split_host(host_header)
        return host is not None and seen[1] == host[0] and seen[2] == self.http_port

    def session_ok(self, cookie_header: str | None) -> bool:
        return self.sessions.valid(cookie_value(cookie_header))
