"""install.sh in --prefix mode (layout, modes, idempotency, config, uninstall), the systemd units
and shellcheck. The broker's behaviour with the generated files is in test_mosquitto_acl.py.

System mode (apt, useradd, systemctl) cannot run here: it is covered by shellcheck and reading.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import stat
import subprocess
import time
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from deskpulse.config import load_config

from .support import MOSQUITTO, ROOT, Recorder, free_port

INSTALL = ROOT / "install.sh"
DEVICE = "testdesk"


@dataclass
class Installed:
    """A --prefix install: its paths, ports and generated passwords."""

    prefix: Path
    lan_port: int
    local_port: int
    result: subprocess.CompletedProcess[str]

    @property
    def ports(self) -> tuple[int, int]:
        return (self.lan_port, self.local_port)

    @property
    def etc(self) -> Path:
        return self.prefix / "etc" / "deskpulse"

    @property
    def config(self) -> Path:
        return self.etc / "deskpulse.toml"

    @property
    def main_conf(self) -> Path:
        return self.prefix / "etc" / "mosquitto" / "mosquitto.conf"

    @property
    def dropin(self) -> Path:
        return self.prefix / "etc" / "mosquitto" / "conf.d" / "deskpulse.conf"

    @property
    def passwd(self) -> Path:
        return self.prefix / "etc" / "mosquitto" / "deskpulse" / "passwd"

    @property
    def acl(self) -> Path:
        return self.prefix / "etc" / "mosquitto" / "deskpulse" / "acl"

    def value(self, name: str, key: str) -> str:
        for line in (self.etc / name).read_text().splitlines():
            if line.startswith(key + "="):
                return line.split("=", 1)[1]
        raise KeyError(f"{key} not in {name}")

    @property
    def passwords(self) -> dict[str, str]:
        return {
            "agent": self.value("agent.env", "DESKPULSE_MQTT_PASSWORD"),
            "viewer": self.value("web.env", "DESKPULSE_WEB_VIEWER_PASSWORD"),
            "homeassistant": self.value("homeassistant.secret", "password"),
        }

    def env(self) -> dict[str, str]:
        out = {}
        for name in ("agent.env", "web.env"):
            for line in (self.etc / name).read_text().splitlines():
                if line and not line.startswith("#"):
                    key, _, value = line.partition("=")
                    out[key] = value
        return out


def run_install(prefix: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(INSTALL), "--prefix", str(prefix), "--no-systemd", "--skip-deps", *args],
        capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("DESKPULSE_")},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"install.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def install_prefix(prefix: Path, device_id: str = DEVICE) -> Installed:
    """Install into prefix with both listeners on free loopback ports."""
    lan, local = free_port(), free_port()
    while local == lan:
        local = free_port()
    result = run_install(prefix, "--mqtt-bind", "127.0.0.1", "--mqtt-port", str(lan),
                         "--mqtt-local-port", str(local), "--device-id", device_id)
    return Installed(prefix, lan, local, result)


def snapshot(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every path under root: mode, owner, mtime and content hash."""
    out = {}
    for path in sorted([root, *root.rglob("*")]):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        out[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_mtime_ns, digest)
    return out


@contextmanager
def running_broker(conf: Path, ports: tuple[int, ...], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Debian's mosquitto with a config file as generated (support.Mosquitto would add its own
    listener and allow_anonymous to a config without `listener` in it)."""
    with open(log, "ab") as out:
        proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        waiting = list(ports)
        while waiting:
            if proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"mosquitto is not listening on {waiting}")
            try:
                with socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.2):
                    waiting.pop(0)
            except OSError:
                time.sleep(0.05)  # polling for the listener, not an assertion
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


needs_mosquitto = pytest.mark.mosquitto  # mosquitto_passwd comes with Debian's mosquitto


@pytest.fixture
def installed(tmp_path: Path) -> Installed:
    return install_prefix(tmp_path / "dp")


# --- options --------------------------------------------------------------------------------


def test_help() -> None:
    proc = subprocess.run([str(INSTALL), "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    for option in ("--prefix", "--no-systemd", "--uninstall", "--purge", "--mqtt-local-port"):
        assert option in proc.stdout


@pytest.mark.parametrize("args, says", [
    (["--bogus"], "unknown option '--bogus'"),
    (["--purge"], "--purge only goes with --uninstall"),
    (["--mqtt-port", "70000"], "--mqtt-port must be a port number"),
    (["--device-id", "My Desk"], "--device-id must match [a-z0-9_-]+"),
    (["--prefix"], "--prefix needs a value"),
    (["--prefix", "/tmp/has space"], "--prefix must be a directory path"),
])
def test_bad_options_get_one_clear_line(args: list[str], says: str) -> None:
    proc = subprocess.run([str(INSTALL), *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert says in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


# --- the prefix install ---------------------------------------------------------------------


@needs_mosquitto
def test_layout_modes_and_owners(installed: Installed) -> None:
    p = installed.prefix
    expected = {
        "etc/deskpulse": 0o700,
        "etc/deskpulse/deskpulse.toml": 0o644,
        "etc/deskpulse/agent.env": 0o600,
        "etc/deskpulse/web.env": 0o600,
        "etc/deskpulse/homeassistant.secret": 0o600,
        "etc/deskpulse/dashboard-password": 0o600,
        "etc/mosquitto/mosquitto.conf": 0o644,
        "etc/mosquitto/conf.d/deskpulse.conf": 0o644,
        "etc/mosquitto/deskpulse": 0o700,
        "etc/mosquitto/deskpulse/passwd": 0o600,
        "etc/mosquitto/deskpulse/acl": 0o600,
        "var/lib/deskpulse": 0o750,
        "var/lib/mosquitto": 0o700,
        "bin/deskpulse-agent": 0o755,
        "bin/deskpulse-web": 0o755,
        "bin/deskpulse-broker": 0o755,
    }
    for rel, mode in expected.items():
        assert _mode(p / rel) == mode, f"{rel}: {oct(_mode(p / rel))}, expected {oct(mode)}"
    for path in [p, *p.rglob("*")]:
        assert path.stat().st_uid == os.getuid(), f"{path} is not owned by the installing user"
        assert not stat.S_IMODE(path.stat().st_mode) & stat.S_IWOTH, f"{path} is world-writable"
    # Nothing but the documented tree.
    top = {x.name for x in p.iterdir()}
    assert top == {"bin", "etc", "var"}


@needs_mosquitto
def test_second_run_changes_nothing(installed: Installed) -> None:
    before = snapshot(installed.prefix)
    # No port flags this time: an update must remember them.
    proc = run_install(installed.prefix)
    assert snapshot(installed.prefix) == before
    assert f"127.0.0.1:{installed.local_port}" in proc.stdout


@needs_mosquitto
def test_passwords_are_random_and_never_printed(installed: Installed, tmp_path: Path) -> None:
    passwords = installed.passwords
    assert len(set(passwords.values())) == 3
    for pw in passwords.values():
        assert re.fullmatch(r"[A-Za-z0-9]{32}", pw)
        assert pw not in installed.result.stdout + installed.result.stderr
        assert pw not in installed.passwd.read_text()
        assert pw not in installed.config.read_text()
    other = install_prefix(tmp_path / "other")
    assert set(other.passwords.values()).isdisjoint(passwords.values())
    # The HA secret's path is printed so the user can find it.
    assert str(installed.etc / "homeassistant.secret") in installed.result.stdout


DASHBOARD_LINE = re.compile(r"^Dashboard password \(shown only this once; it is stored only as a hash\): "
                            r"([A-Za-z0-9]{20})$", re.M)


@needs_mosquitto
def test_dashboard_password_is_printed_once_and_stored_only_as_a_hash(installed: Installed) -> None:
    from argon2 import PasswordHasher

    printed = DASHBOARD_LINE.findall(installed.result.stdout)
    assert len(printed) == 1, installed.result.stdout
    password = printed[0]
    stored = (installed.etc / "dashboard-password").read_text().strip()
    assert stored.startswith("$argon2id$") and PasswordHasher().verify(stored, password)
    assert f"{installed.prefix}/venv/bin/deskpulse passwd --config {installed.config}" in installed.result.stdout
    for path in installed.prefix.rglob("*"):
        if path.is_file():
            assert password not in path.read_text(errors="replace"), path
    # An update keeps it and does not print it again.
    again = run_install(installed.prefix)
    assert not DASHBOARD_LINE.search(again.stdout) and password not in again.stdout
    assert (installed.etc / "dashboard-password").read_text().strip() == stored
    # Deleting the hash makes (and prints) a new one.
    (installed.etc / "dashboard-password").unlink()
    renewed = DASHBOARD_LINE.findall(run_install(installed.prefix).stdout)
    assert len(renewed) == 1 and renewed[0] != password
    assert PasswordHasher().verify((installed.etc / "dashboard-password").read_text().strip(), renewed[0])


@needs_mosquitto
def test_the_installed_dashboard_logs_in_with_that_password(installed: Installed) -> None:
    """The installed config and hash, loaded as deskpulse-web loads them."""
    from web.auth import Credentials

    password = DASHBOARD_LINE.findall(installed.result.stdout)[0]
    creds = Credentials.from_config(load_config(installed.config, env=installed.env()))
    assert creds.mode == "password"
    assert creds.check(password) and not creds.check(password[:-1])


@needs_mosquitto
def test_config_is_the_example_plus_the_install_settings(installed: Installed) -> None:
    data = tomllib.loads(installed.config.read_text())
    assert data["device_id"] == DEVICE
    assert data["data_dir"] == str(installed.prefix / "var/lib/deskpulse")
    assert data["mqtt"]["broker"] == f"mqtt://127.0.0.1:{installed.local_port}"
    assert data["web"]["relay_target"] == f"127.0.0.1:{installed.local_port}"
    assert data["web"]["viewer_username"] == "viewer"
    assert (data["web"]["port"], data["web"]["ws_port"]) == (8080, 9001)
    assert data["web"]["auth"] == "password"
    assert data["web"]["password_file"] == str(installed.etc / "dashboard-password")
    # An unguessable client id: the viewer's password is public, and mosquitto lets any user
    # take over a connected client id.
    assert re.fullmatch(r"deskpulse-[A-Za-z0-9]{12}", data["mqtt"]["client_id"])
    assert "password" not in data["mqtt"] and "viewer_password" not in data["web"]

    example = ROOT / "config" / "deskpulse.toml"
    if example.exists():
        ours = {"device_id", "data_dir", "mqtt.broker", "mqtt.client_id", "web.relay_target",
                "web.viewer_username", "web.port", "web.ws_port", "web.auth", "web.password_file"}
        flat_example, flat_installed = _flatten(tomllib.loads(example.read_text())), _flatten(data)
        for key, value in flat_example.items():
            if key not in ours:
                assert flat_installed.get(key) == value, f"{key} changed"

    config = load_config(installed.config, env=installed.env())
    assert config.device_id == DEVICE
    address = config.mqtt.address()
    assert address is not None and address.port == installed.local_port
    assert address.username == "agent"


def _flatten(data: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


@needs_mosquitto
def test_user_edits_survive_and_a_renamed_device_moves_the_acl(installed: Installed) -> None:
    text = installed.config.read_text()
    text = re.sub(r'(?m)^device_id = .*$', 'device_id = "renamed"', text)
    text = re.sub(r'(?m)^log_level = .*$', 'log_level = "debug"', text)
    installed.config.write_text(text)
    run_install(installed.prefix)
    data = tomllib.loads(installed.config.read_text())
    assert (data["device_id"], data["log_level"]) == ("renamed", "debug")
    acl = installed.acl.read_text()
    assert "topic readwrite deskpulse/renamed/#" in acl
    assert f"deskpulse/{DEVICE}/" not in acl


@needs_mosquitto
def test_deleting_an_env_file_rotates_only_that_password(installed: Installed) -> None:
    old = installed.passwords
    (installed.etc / "web.env").unlink()
    run_install(installed.prefix)
    new = installed.passwords
    assert new["viewer"] != old["viewer"]
    assert (new["agent"], new["homeassistant"]) == (old["agent"], old["homeassistant"])


@needs_mosquitto
def test_rendered_broker_files(installed: Installed) -> None:
    dropin = installed.dropin.read_text()
    assert not re.search(r"@[A-Z_]+@", dropin)
    assert f"password_file {installed.passwd}" in dropin
    assert f"acl_file {installed.acl}" in dropin
    assert f"listener {installed.lan_port} 127.0.0.1" in dropin
    assert f"listener {installed.local_port} 127.0.0.1" in dropin
    assert "allow_anonymous false" in dropin
    # Debian's stock main config sets these; a duplicate is a fatal error in mosquitto.
    for option in ("persistence_location", "pid_file", "log_dest", "include_dir", "user"):
        assert not re.search(rf"(?m)^{option}\b", dropin)
    acl = installed.acl.read_text()
    assert not re.search(r"@[A-Z_]+@", acl)
    assert f"user agent\ntopic readwrite deskpulse/{DEVICE}/#\ntopic readwrite homeassistant/#" in acl
    users = [line.split(":", 1)[0] for line in installed.passwd.read_text().splitlines()]
    assert users == ["agent", "viewer", "homeassistant"]


@needs_mosquitto
def test_uninstall_keeps_config_and_history_and_purge_deletes_them(installed: Installed) -> None:
    p = installed.prefix
    history = p / "var/lib/deskpulse/history.db"
    history.write_bytes(b"history")
    bystander = p / "bin" / "someone-elses-tool"
    bystander.write_text("#!/bin/sh\n")

    proc = run_install(p, "--uninstall")
    assert "Kept:" in proc.stdout
    assert installed.config.exists() and history.exists()
    for gone in ("etc/deskpulse/agent.env", "etc/deskpulse/web.env", "etc/deskpulse/homeassistant.secret",
                 "etc/deskpulse/dashboard-password",
                 "etc/mosquitto", "bin/deskpulse-agent", "bin/deskpulse-broker", "venv"):
        assert not (p / gone).exists(), gone

    run_install(p, "--uninstall", "--purge")
    assert not installed.config.exists() and not history.parent.exists()
    assert not (p / "var/lib/mosquitto").exists()
    assert bystander.exists(), "uninstall must only remove what it installed"

    # And it installs again from scratch afterwards.
    run_install(p)
    assert installed.config.exists()


# --- mosquitto with the generated files ------------------------------------------------------


@needs_mosquitto
def test_generated_config_starts_mosquitto(installed: Installed, tmp_path: Path) -> None:
    with running_broker(installed.main_conf, installed.ports, tmp_path / "mosquitto.log") as proc:
        assert proc.poll() is None
    assert "Error" not in (tmp_path / "mosquitto.log").read_text()


@needs_mosquitto
def test_dropin_fits_debian_stock_main_config(installed: Installed, tmp_path: Path) -> None:
    """The drop-in next to Debian's own /etc/mosquitto/mosquitto.conf, paths moved to tmp."""
    stock = Path("/etc/mosquitto/mosquitto.conf")
    text = stock.read_text() if stock.exists() else (
        "pid_file /run/mosquitto/mosquitto.pid\npersistence true\n"
        "persistence_location /var/lib/mosquitto/\nlog_dest file /var/log/mosquitto/mosquitto.log\n"
        "include_dir /etc/mosquitto/conf.d\n")
    text = re.sub(r"(?m)^pid_file .*$", f"pid_file {tmp_path}/mosquitto.pid", text)
    text = re.sub(r"(?m)^persistence_location .*$", f"persistence_location {tmp_path}/", text)
    text = re.sub(r"(?m)^log_dest .*$", "log_dest stderr", text)
    text = re.sub(r"(?m)^include_dir .*$", f"include_dir {installed.dropin.parent}", text)
    assert f"include_dir {installed.dropin.parent}" in text
    # Debian runs it as the mosquitto user; here the files belong to the test's user.
    text = f"user {_username()}\n{text}"
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text)
    with running_broker(conf, installed.ports, tmp_path / "mosquitto.log") as proc:
        assert proc.poll() is None
    assert "Error" not in (tmp_path / "mosquitto.log").read_text()


def _username() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


# --- static checks ----------------------------------------------------------------------------


def _shellcheck() -> str:
    path = shutil.which("shellcheck")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("shellcheck is not installed (apt-get install shellcheck)")
        pytest.skip("shellcheck is not installed")
    return path


def test_shellcheck_clean() -> None:
    scripts = [INSTALL, *sorted((ROOT / "scripts").glob("*.sh"))]
    proc = subprocess.run([_shellcheck(), *map(str, scripts)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_mosquitto
def test_generated_wrappers_are_shellcheck_clean(installed: Installed) -> None:
    wrappers = sorted((installed.prefix / "bin").iterdir())
    assert len(wrappers) == 3
    proc = subprocess.run([_shellcheck(), *map(str, wrappers)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _unit(name: str) -> dict[str, list[str]]:
    """A systemd unit as {"Section.Key": [values]} (keys may repeat)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in (ROOT / "systemd" / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key}", []).append(value)
    return out


@pytest.mark.parametrize("name, env, command", [
    ("deskpulse-agent.service", "/etc/deskpulse/agent.env", "run"),
    ("deskpulse-web.service", "/etc/deskpulse/web.env", "web"),
])
def test_units(name: str, env: str, command: str) -> None:
    unit = _unit(name)
    one = {key: values[-1] for key, values in unit.items()}
    assert one["Service.ExecStart"] == (
        f"/opt/deskpulse/venv/bin/deskpulse {command} --config /etc/deskpulse/deskpulse.toml")
    assert one["Service.User"] == "deskpulse"
    assert one["Service.EnvironmentFile"] == env
    assert one["Service.Restart"] == "on-failure"
    assert one["Service.RestartPreventExitStatus"] == "2"
    assert int(one["Unit.StartLimitBurst"]) > 1 and int(one["Service.RestartSec"]) >= 5
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert one[f"Service.{key}"] == "yes"
    assert one["Service.ProtectSystem"] == "strict"
    assert "mosquitto.service" in one["Unit.After"]
    assert one["Install.WantedBy"] == "multi-user.target"
    if command == "run":
        assert one["Service.SupplementaryGroups"] == "video"
        assert one["Service.ReadWritePaths"] == "/var/lib/deskpulse"
        # Any of these would hide /dev/video* (ProtectClock implies a device allow-list).
        for key in ("PrivateDevices", "DevicePolicy", "DeviceAllow", "ProtectClock"):
            assert f"Service.{key}" not in unit, key


def test_units_match_install_paths() -> None:
    text = INSTALL.read_text()
    for fragment in ('ETC="/etc/deskpulse"', 'VENV="/opt/deskpulse/venv"', 'DATA="/var/lib/deskpulse"',
                     'SERVICE_USER="deskpulse"'):
        assert fragment in text


def test_units_verify_with_systemd() -> None:
    """systemd-analyze (252 here, as on bookworm) knows every key: no newer-systemd options."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    units = [str(ROOT / "systemd" / n) for n in ("deskpulse-agent.service", "deskpulse-web.service")]
    proc = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, timeout=60)
    # The venv only exists on an installed machine.
    problems = [line for line in (proc.stdout + proc.stderr).splitlines()
                if line.strip() and "/opt/deskpulse/venv/bin/deskpulse is not executable" not in line]
    assert not problems, "\n".join(problems)


@needs_mosquitto
def test_system_mode_owners_let_mosquitto_read_its_files(installed: Installed) -> None:
    """System mode's passwd/acl ownership (root:mosquitto, 0640 in a 0750 dir) with the real
    privilege drop: mosquitto started as root reads them as the mosquitto user."""
    import grp
    import pwd
    import tempfile

    if os.getuid() != 0:
        pytest.skip("needs root to start mosquitto the way systemd does")
    try:
        mosq = pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no mosquitto user")
    text = INSTALL.read_text()
    assert 'OWN_MOSQ="root:mosquitto"' in text and "MODE_MOSQ_DIR=0750 MODE_BROKER_FILE=0640" in text

    base = Path(tempfile.mkdtemp(prefix="dp-sysmode-"))
    try:
        base.chmod(0o755)  # mkdtemp's 0700 would stop the mosquitto user at the door
        own, confd, data = base / "deskpulse", base / "conf.d", base / "data"
        for d in (own, confd, data):
            d.mkdir()
        shutil.copy(installed.passwd, own / "passwd")
        shutil.copy(installed.acl, own / "acl")
        gid = grp.getgrnam("mosquitto").gr_gid
        for path, mode in ((own, 0o750), (own / "passwd", 0o640), (own / "acl", 0o640)):
            os.chown(path, 0, gid)
            path.chmod(mode)
        os.chown(data, mosq.pw_uid, gid)
        dropin = installed.dropin.read_text().replace(str(installed.passwd), str(own / "passwd"))
        (confd / "deskpulse.conf").write_text(dropin.replace(str(installed.acl), str(own / "acl")))
        main = base / "mosquitto.conf"
        main.write_text(f"persistence true\npersistence_location {data}/\nlog_dest stderr\n"
                        f"include_dir {confd}\n")
        with running_broker(main, installed.ports, base / "mosquitto.log"):
            login = Recorder(installed.local_port, "x", username="agent",
                             password=installed.passwords["agent"])
            login.close()
        # The control: root-only files are what 2.0 cannot read after dropping privileges.
        (own / "passwd").chmod(0o600)
        with pytest.raises(RuntimeError, match="Unable to open pwfile"):
            with running_broker(main, installed.ports, base / "mosquitto.log"):
                pass
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize("args", [[], ["venv", "--bogus"], ["a", "b", "c"]])
def test_setup_venv_usage(args: list[str]) -> None:
    proc = subprocess.run([str(ROOT / "scripts" / "setup_venv.sh"), *args], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage:")
