#!/usr/bin/env bash
# DeskPulse installer for Debian 12 / Raspberry Pi OS bookworm (mosquitto 2.0.11, Python 3.11).
#
# System mode (default, as root): Debian packages, a `deskpulse` system user in the video group,
# a venv in /opt/deskpulse, config and secrets in /etc/deskpulse, a locked-down mosquitto
# drop-in, and two systemd services. --prefix DIR installs the same files under DIR without
# touching the system (no apt, no users, no systemd, nothing outside DIR).
#
# Idempotent: every file is written only when its content or mode differs, passwords are kept
# once generated, and services restart only when something they use changed. The broker
# passwords are never printed; the dashboard password is printed once, when it is made, and
# stored only as its argon2 hash. No password is ever passed on a command line.
set -euo pipefail
umask 022

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROG="install.sh"

usage() {
    cat <<'EOF'
Usage: sudo ./install.sh [options]          install or update DeskPulse on this machine
       ./install.sh --prefix DIR [options]  install everything under DIR, as a normal user
       sudo ./install.sh --uninstall [--purge]

Options:
  --prefix DIR          install under DIR (implies --no-systemd; touches nothing outside DIR)
  --no-systemd          do not install, enable or (re)start any service
  --skip-deps           skip Debian packages, mqtt.js and the Python venv (tests, images)
  --device-id ID        the device's topic name, [a-z0-9_-]+ (default: the hostname)
  --mqtt-port N         mosquitto's LAN listener (default 1883)
  --mqtt-bind ADDR      address of the LAN listener (default: all interfaces)
  --mqtt-local-port N   mosquitto's loopback listener for the agent and the web relay (default 1884)
  --web-port N          the dashboard's HTTP port (default 8080)
  --ws-port N           the browsers' MQTT-over-WebSocket port (default 9001)
  --uninstall           remove the services, the broker drop-in, the secrets, the venv and
                        the Home Assistant discovery topics; keep the config and history
  --purge               with --uninstall: also delete the config, the history and the
                        retained DeskPulse state on the broker
  -h, --help            show this help

Ports, --mqtt-bind and --device-id are remembered: a later ./install.sh (an update) keeps them.
See docs/install.md.
EOF
}

die() {
    echo "$PROG: $*" >&2
    exit 1
}

usage_error() {
    echo "$PROG: $*; see ./install.sh --help" >&2
    exit 2
}

say() {
    echo "==> $*"
}

warn() {
    echo "$PROG: warning: $*" >&2
}

# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------
PREFIX=""
NO_SYSTEMD=0
SKIP_DEPS=0
UNINSTALL=0
PURGE=0
OPT_DEVICE_ID=""
OPT_MQTT_PORT=""
OPT_MQTT_BIND=""
OPT_MQTT_BIND_SET=0
OPT_MQTT_LOCAL_PORT=""
OPT_WEB_PORT=""
OPT_WS_PORT=""

need_value() {
    [[ $# -ge 2 && -n "$2" ]] || usage_error "$1 needs a value"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --prefix) need_value "$@"; PREFIX="$2"; shift 2 ;;
        --prefix=*) PREFIX="${1#*=}"; shift ;;
        --no-systemd) NO_SYSTEMD=1; shift ;;
        --skip-deps) SKIP_DEPS=1; shift ;;
        --device-id) need_value "$@"; OPT_DEVICE_ID="$2"; shift 2 ;;
        --mqtt-port) need_value "$@"; OPT_MQTT_PORT="$2"; shift 2 ;;
        --mqtt-bind) [[ $# -ge 2 ]] || usage_error "--mqtt-bind needs a value"; OPT_MQTT_BIND="$2"; OPT_MQTT_BIND_SET=1; shift 2 ;;
        --mqtt-local-port) need_value "$@"; OPT_MQTT_LOCAL_PORT="$2"; shift 2 ;;
        --web-port) need_value "$@"; OPT_WEB_PORT="$2"; shift 2 ;;
        --ws-port) need_value "$@"; OPT_WS_PORT="$2"; shift 2 ;;
        --uninstall) UNINSTALL=1; shift ;;
        --purge) PURGE=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage_error "unknown option '$1'" ;;
    esac
done

[[ $PURGE -eq 0 || $UNINSTALL -eq 1 ]] || usage_error "--purge only goes with --uninstall"

check_port() {
    local name="$1" value="$2"
    [[ -z "$value" ]] && return 0
    if [[ ! "$value" =~ ^[0-9]{1,5}$ ]] || ((value < 1 || value > 65535)); then
        usage_error "$name must be a port number 1-65535, got '$value'"
    fi
}
check_port --mqtt-port "$OPT_MQTT_PORT"
check_port --mqtt-local-port "$OPT_MQTT_LOCAL_PORT"
check_port --web-port "$OPT_WEB_PORT"
check_port --ws-port "$OPT_WS_PORT"
if [[ -n "$OPT_DEVICE_ID" && ! "$OPT_DEVICE_ID" =~ ^[a-z0-9_-]+$ ]]; then
    usage_error "--device-id must match [a-z0-9_-]+ (it becomes a topic level), got '$OPT_DEVICE_ID'"
fi
if [[ -n "$OPT_MQTT_BIND" && ! "$OPT_MQTT_BIND" =~ ^[A-Za-z0-9.:-]+$ ]]; then
    usage_error "--mqtt-bind must be an address or host name, got '$OPT_MQTT_BIND'"
fi

# ---------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------
if [[ -n "$PREFIX" ]]; then
    SYSTEM=0
    NO_SYSTEMD=1
    PREFIX="$(realpath -m -- "$PREFIX")"
    # The paths end up unquoted in mosquitto's config and in env files: keep them plain.
    [[ "$PREFIX" =~ ^/[A-Za-z0-9._/+-]+$ && "$PREFIX" != "/" ]] ||
        usage_error "--prefix must be a directory path of letters, digits and ._/+- (got '$PREFIX')"
    ETC="$PREFIX/etc/deskpulse"
    MOSQ_ETC="$PREFIX/etc/mosquitto"
    VENV="$PREFIX/venv"
    DATA="$PREFIX/var/lib/deskpulse"
    MOSQ_DATA="$PREFIX/var/lib/mosquitto"
    BIN="$PREFIX/bin"
    # In a prefix everything belongs to whoever runs the installer.
    OWN_ROOT="" OWN_CONF="" OWN_MOSQ="" OWN_DATA=""
    MODE_ETC=0700 MODE_MOSQ_DIR=0700 MODE_BROKER_FILE=0600 MODE_CONF=0644 MODE_DASH=0600
else
    SYSTEM=1
    ETC="/etc/deskpulse"
    MOSQ_ETC="/etc/mosquitto"
    VENV="/opt/deskpulse/venv"
    DATA="/var/lib/deskpulse"
    MOSQ_DATA=""
    BIN=""
    SERVICE_USER="deskpulse"
    UNIT_DIR="/etc/systemd/system"
    OWN_ROOT="root:root" OWN_CONF="root:$SERVICE_USER" OWN_MOSQ="root:mosquitto" OWN_DATA="$SERVICE_USER:$SERVICE_USER"
    # /etc/deskpulse: the services read the config; the env files are root's (systemd reads them).
    # The dashboard password's hash: written by root (deskpulse passwd), read by deskpulse-web.
    MODE_ETC=0750 MODE_MOSQ_DIR=0750 MODE_BROKER_FILE=0640 MODE_CONF=0640 MODE_DASH=0640
fi
CONFIG="$ETC/deskpulse.toml"
AGENT_ENV="$ETC/agent.env"
WEB_ENV="$ETC/web.env"
HA_SECRET="$ETC/homeassistant.secret"
DASH_PW_FILE="$ETC/dashboard-password"
INSTALL_STATE="$ETC/install.state"
MOSQ_OWN_DIR="$MOSQ_ETC/deskpulse"
PASSWD_FILE="$MOSQ_OWN_DIR/passwd"
ACL_FILE="$MOSQ_OWN_DIR/acl"
DROPIN_DIR="$MOSQ_ETC/conf.d"
DROPIN="$DROPIN_DIR/deskpulse.conf"
MOSQ_MAIN="$MOSQ_ETC/mosquitto.conf" # only written in a prefix; Debian owns /etc/mosquitto/mosquitto.conf
UNITS=(deskpulse-agent deskpulse-web)
MQTT_USERS=(agent viewer homeassistant)

if [[ $SYSTEM -eq 1 && $EUID -ne 0 ]]; then
    die "system install needs root: run 'sudo ./install.sh', or './install.sh --prefix DIR' for a user install"
fi

# ---------------------------------------------------------------------------------------------
# A small Python helper (the system python3, 3.11 on bookworm) for what bash cannot do safely:
# editing TOML, reading it back, and checking mosquitto's password hashes.
# ---------------------------------------------------------------------------------------------
read -r -d '' PYHELPER <<'PYEOF' || true
import base64, hashlib, json, os, re, socket, sys, tomllib

def default_device_id():
    # The same rule as deskpulse.config.default_device_id.
    name = re.sub(r"[^a-z0-9_-]+", "-", socket.gethostname().split(".")[0].lower()).strip("-")
    return name or "deskpulse"

def is_header(line, commented=False):
    pattern = r"^\s*#?\s*\[[^\]]+\]" if commented else r"^\s*\[[^\]]+\]"
    return re.match(pattern, line) is not None

def set_key(lines, dotted, value):
    section, _, key = dotted.rpartition(".")
    new = f"{key} = {json.dumps(value) if isinstance(value, str) else value}"
    key_re = re.compile(rf"^\s*{re.escape(key)}\s*=")
    commented_re = re.compile(rf"^\s*#\s*{re.escape(key)}\s*=")
    if section:
        head_re = re.compile(rf"^\s*\[\s*{re.escape(section)}\s*\]\s*(#.*)?$")
        start = next((i + 1 for i, l in enumerate(lines) if head_re.match(l)), None)
        if start is None:
            while lines and not lines[-1].strip():
                lines.pop()
            lines += ["", f"[{section}]", new]
            return
    else:
        start = 0
    end = next((i for i in range(start, len(lines)) if is_header(lines[i])), len(lines))
    hit = next((i for i in range(start, end) if key_re.match(lines[i])), None)
    if hit is None:
        # A commented-out example of the key ("# key = ..."), unless it sits under a
        # commented-out table header, where it would belong to another table.
        near = next((i for i in range(start, end) if is_header(lines[i], commented=True)), end)
        hit = next((i for i in range(start, near) if commented_re.match(lines[i])), None)
    if hit is not None:
        lines[hit] = new
    elif section:
        lines.insert(start, new)
    else:
        # Top-level keys must precede every table; put them above the first (even commented) one.
        at = next((i for i, l in enumerate(lines) if is_header(l, commented=True)), len(lines))
        lines[at:at] = [new, ""]

def lookup(data, dotted):
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data

def render(base, pairs):
    text = open(base, encoding="utf-8").read() if base != "-" else ""
    lines = text.splitlines()
    wanted = {}
    for pair in pairs:
        kind, _, rest = pair.partition(":")
        dotted, _, raw = rest.partition("=")
        value = int(raw) if kind == "i" else raw
        wanted[dotted] = value
        set_key(lines, dotted, value)
    out = "\n".join(lines).rstrip("\n") + "\n"
    try:
        data = tomllib.loads(out)
    except tomllib.TOMLDecodeError as exc:
        sys.exit(f"cannot apply the install settings to {base}: {exc}")
    for dotted, value in wanted.items():
        if lookup(data, dotted) != value:
            sys.exit(f"cannot apply the install setting {dotted} to {base}")
    sys.stdout.write(out)

def read(path):
    try:
        data = tomllib.loads(open(path, encoding="utf-8").read())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        sys.exit(f"{path}: {exc}")
    values = {
        "device_id": lookup(data, "device_id") or default_device_id(),
        "prefix": lookup(data, "mqtt.prefix") or "deskpulse",
        "ha_prefix": lookup(data, "homeassistant.prefix") or "homeassistant",
        "web_port": lookup(data, "web.port") or 8080,
    }
    checks = {"device_id": r"[a-z0-9_-]+", "prefix": r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*",
              "ha_prefix": r"[A-Za-z0-9_-]+", "web_port": r"[0-9]+"}
    for name, pattern in checks.items():
        if not re.fullmatch(pattern, str(values[name])):
            sys.exit(f"{path}: {name} {values[name]!r} is not valid")
        print(f"{name}={values[name]}")

def passwd_ok(path, users):
    # mosquitto 2.0's format: user:$7$<iterations>$<salt b64>$<pbkdf2-sha512 b64>
    try:
        lines = [l.strip() for l in open(path, encoding="utf-8") if l.strip()]
    except OSError:
        return False
    entries = dict(l.split(":", 1) for l in lines if ":" in l)
    if sorted(entries) != sorted(users) or len(lines) != len(users):
        return False
    for user in users:
        parts = entries[user].split("$")
        if len(parts) != 5 or parts[1] != "7":
            return False
        digest = hashlib.pbkdf2_hmac("sha512", os.environ["DP_PW_" + user].encode(),
                                     base64.b64decode(parts[3]), int(parts[2]))
        if digest != base64.b64decode(parts[4]):
            return False
    return True

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "default-device-id":
    print(default_device_id())
elif cmd == "render":
    render(args[0], args[1:])
elif cmd == "read":
    read(args[0])
elif cmd == "passwd-ok":
    sys.exit(0 if passwd_ok(args[0], args[1:]) else 1)
else:
    sys.exit(f"unknown helper command {cmd}")
PYEOF

pyhelper() {
    python3 -c "$PYHELPER" "$@"
}

# ---------------------------------------------------------------------------------------------
# Idempotent file writing. CHANGED[group] records what changed, to restart only what needs it.
# ---------------------------------------------------------------------------------------------
declare -A CHANGED=()
TMP_FILE=""
TMP_DIR=""
cleanup() {
    [[ -n "$TMP_FILE" ]] && rm -f -- "$TMP_FILE"
    [[ -n "$TMP_DIR" ]] && rm -rf -- "$TMP_DIR"
    return 0
}
trap cleanup EXIT

# ensure_mode PATH MODE OWNER[:GROUP]   (OWNER empty: leave ownership alone)
ensure_mode() {
    local path="$1" mode="$2" owner="$3" group="${4:-}"
    if [[ "$(stat -c '%a' -- "$path")" != "${mode#0}" ]]; then
        chmod "$mode" -- "$path"
        [[ -n "$group" ]] && CHANGED[$group]=1
    fi
    if [[ -n "$owner" && "$(stat -c '%U:%G' -- "$path")" != "$owner" ]]; then
        chown "$owner" -- "$path"
        [[ -n "$group" ]] && CHANGED[$group]=1
    fi
    return 0
}

# ensure_dir PATH MODE OWNER
ensure_dir() {
    [[ -d "$1" ]] || mkdir -p -- "$1"
    ensure_mode "$1" "$2" "$3"
}

# install_file DEST MODE OWNER GROUP < content
# Unchanged content touches nothing (not even the directory's mtime). New content goes to a
# mktemp file (0600) next to DEST and is renamed over it, so a secret is never world-readable.
install_file() {
    local dest="$1" mode="$2" owner="$3" group="$4" content
    content="$(cat; printf x)"
    content="${content%x}"
    if [[ ! -f "$dest" ]] || ! cmp -s -- <(printf '%s' "$content") "$dest"; then
        TMP_FILE="$(mktemp "$(dirname -- "$dest")/.install.XXXXXX")"
        printf '%s' "$content" >"$TMP_FILE"
        chmod "$mode" -- "$TMP_FILE"
        [[ -n "$owner" ]] && chown "$owner" -- "$TMP_FILE"
        mv -f -- "$TMP_FILE" "$dest"
        TMP_FILE=""
        CHANGED[$group]=1
    fi
    ensure_mode "$dest" "$mode" "$owner" "$group"
}

# KEY=value lines (env files, install.state): the value of KEY, or nothing.
read_value() {
    local file="$1" key="$2"
    [[ -f "$file" ]] || return 0
    sed -n "s/^$key=//p" -- "$file" | tail -n 1
}

gen_password() {
    local raw=""
    while [[ ${#raw} -lt 32 ]]; do
        raw="$(head -c 48 /dev/urandom | base64 -w 0)"
        raw="${raw//[^A-Za-z0-9]/}"
    done
    printf '%s' "${raw:0:32}"
}

# The stored password, or a new one. Stored ones must be plain so env files need no quoting.
password_from() {
    local file="$1" key="$2" value
    value="$(read_value "$file" "$key")"
    if [[ -z "$value" ]]; then
        gen_password
    elif [[ "$value" =~ ^[A-Za-z0-9._~-]+$ ]]; then
        printf '%s' "$value"
    else
        die "$file: $key may only contain letters, digits and ._~- (delete the line to generate a new one)"
    fi
}

# Runs a command with an env file's variables exported; the secrets never reach argv.
with_env() {
    local file="$1"
    shift
    (
        set -a
        # shellcheck source=/dev/null
        . "$file"
        set +a
        exec "$@"
    )
}

# ---------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------
check_platform() {
    python3 -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' 2>/dev/null ||
        die "python3 3.11 or newer is needed (Debian 12 / Raspberry Pi OS bookworm ship 3.11)"
    if [[ $SYSTEM -eq 1 && $SKIP_DEPS -eq 0 ]]; then
        case "$(uname -m)" in
            aarch64 | x86_64) ;;
            *) die "MediaPipe has wheels for 64-bit systems only (aarch64, x86_64), not $(uname -m): use the 64-bit Raspberry Pi OS" ;;
        esac
    fi
}

install_packages() {
    # OpenCV is the headless wheel (no libGL); v4l-utils gives v4l2-ctl for camera checks;
    # avahi-daemon makes <hostname>.local resolve; npm fetches the pinned mqtt.js once.
    local wanted=(mosquitto mosquitto-clients python3 python3-venv v4l-utils avahi-daemon)
    local missing=() pkg
    command -v npm >/dev/null 2>&1 || wanted+=(npm)
    for pkg in "${wanted[@]}"; do
        if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]]; then
            missing+=("$pkg")
        fi
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        say "Debian packages already installed"
        return 0
    fi
    say "installing Debian packages: ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

create_user() {
    if ! getent passwd "$SERVICE_USER" >/dev/null; then
        say "creating system user $SERVICE_USER"
        useradd --system --user-group --home-dir "$DATA" --no-create-home \
            --shell /usr/sbin/nologin --comment "DeskPulse" "$SERVICE_USER"
    fi
    if [[ " $(id -nG "$SERVICE_USER") " != *" video "* ]]; then
        usermod -a -G video "$SERVICE_USER"
    fi
}

make_dirs() {
    if [[ $SYSTEM -eq 1 ]]; then
        ensure_dir "$ETC" "$MODE_ETC" "$OWN_CONF"
        ensure_dir "$MOSQ_OWN_DIR" "$MODE_MOSQ_DIR" "$OWN_MOSQ"
        ensure_dir "$DROPIN_DIR" 0755 "$OWN_ROOT"
        ensure_dir "$DATA" 0750 "$OWN_DATA"
        ensure_dir "$(dirname "$VENV")" 0755 "$OWN_ROOT"
    else
        mkdir -p -- "$PREFIX" "$BIN"
        ensure_dir "$ETC" "$MODE_ETC" ""
        ensure_dir "$MOSQ_ETC" 0755 ""
        ensure_dir "$DROPIN_DIR" 0755 ""
        ensure_dir "$MOSQ_OWN_DIR" "$MODE_MOSQ_DIR" ""
        ensure_dir "$DATA" 0750 ""
        ensure_dir "$MOSQ_DATA" 0700 ""
    fi
}

install_python() {
    local bundle="$REPO/web/static/vendor/mqtt.min.js" lock="$REPO/web/package-lock.json"
    # mqtt.js is fetched once per lockfile (npm ci checks its integrity hashes): an update
    # without internet still works.
    if [[ -s "$bundle" && "$bundle" -nt "$lock" ]]; then
        say "mqtt.js already fetched"
    else
        say "fetching the pinned mqtt.js"
        "$REPO/scripts/fetch_mqttjs.sh"
    fi
    local before
    before="$(cat "$VENV/.deskpulse-stamp" 2>/dev/null || true)"
    say "setting up the Python venv in $VENV"
    "$REPO/scripts/setup_venv.sh" "$VENV"
    [[ "$(cat "$VENV/.deskpulse-stamp")" == "$before" ]] || CHANGED[code]=1
}

write_config() {
    local base pairs=() random
    # Always ours: where the data lives and how the processes reach the broker.
    pairs+=("s:data_dir=$DATA" "s:mqtt.broker=mqtt://127.0.0.1:$MQTT_LOCAL_PORT"
        "s:web.relay_target=127.0.0.1:$MQTT_LOCAL_PORT" "s:web.viewer_username=viewer"
        "s:web.auth=password" "s:web.password_file=$DASH_PW_FILE")
    if [[ -f "$CONFIG" ]]; then
        base="$CONFIG"
        [[ -n "$OPT_DEVICE_ID" ]] && pairs+=("s:device_id=$OPT_DEVICE_ID")
        [[ -n "$OPT_WEB_PORT" ]] && pairs+=("i:web.port=$OPT_WEB_PORT")
        [[ -n "$OPT_WS_PORT" ]] && pairs+=("i:web.ws_port=$OPT_WS_PORT")
    else
        base="$REPO/config/deskpulse.toml"
        if [[ ! -f "$base" ]]; then
            warn "$base is missing; writing only the install settings"
            base="-"
        fi
        # mosquitto lets any authenticated client take over a connected client id (the relay
        # gives browsers ids of its own, but Home Assistant or a leaked login could pick one):
        # an unguessable id keeps them from kicking the agent off.
        random="$(gen_password)"
        pairs+=("s:device_id=${OPT_DEVICE_ID:-$(pyhelper default-device-id)}"
            "s:mqtt.client_id=deskpulse-${random:0:12}"
            "i:web.port=${OPT_WEB_PORT:-8080}" "i:web.ws_port=${OPT_WS_PORT:-9001}")
    fi
    local content
    content="$(pyhelper render "$base" "${pairs[@]}")" || die "could not write $CONFIG"
    printf '%s\n' "$content" | install_file "$CONFIG" "$MODE_CONF" "$OWN_CONF" config
    local key value
    while IFS='=' read -r key value; do
        case "$key" in
            device_id) DEVICE_ID="$value" ;;
            prefix) TOPIC_PREFIX="$value" ;;
            ha_prefix) HA_PREFIX="$value" ;;
            web_port) WEB_PORT="$value" ;;
        esac
    done < <(pyhelper read "$CONFIG" || echo "error=1")
    [[ -n "${DEVICE_ID:-}" && -n "${TOPIC_PREFIX:-}" ]] || die "could not read $CONFIG"
}

write_state() {
    install_file "$INSTALL_STATE" 0644 "$OWN_ROOT" state <<EOF
# Options of the last ./install.sh run, reused by the next one (an update).
MQTT_PORT=$MQTT_PORT
MQTT_BIND=$MQTT_BIND
MQTT_LOCAL_PORT=$MQTT_LOCAL_PORT
EOF
}

write_secrets() {
    AGENT_PW="$(password_from "$AGENT_ENV" DESKPULSE_MQTT_PASSWORD)"
    VIEWER_PW="$(password_from "$WEB_ENV" DESKPULSE_WEB_VIEWER_PASSWORD)"
    HA_PW="$(password_from "$HA_SECRET" password)"
    # systemd reads EnvironmentFile= as root before dropping privileges: root-only is enough.
    install_file "$AGENT_ENV" 0600 "$OWN_ROOT" agent <<EOF
# The agent's login to mosquitto. Generated by install.sh; secret.
# To change the password: delete this file and run ./install.sh again.
DESKPULSE_MQTT_USERNAME=agent
DESKPULSE_MQTT_PASSWORD=$AGENT_PW
EOF
    install_file "$WEB_ENV" 0600 "$OWN_ROOT" web <<EOF
# The dashboard's broker login. Only deskpulse-web reads it: its relay logs in with it for
# every logged-in browser (browsers never see it); it may only read and send the page's
# requests. Generated by install.sh.
# To change the password: delete this file and run ./install.sh again.
DESKPULSE_WEB_VIEWER_USERNAME=viewer
DESKPULSE_WEB_VIEWER_PASSWORD=$VIEWER_PW
EOF
    install_file "$HA_SECRET" 0600 "$OWN_ROOT" homeassistant <<EOF
# Home Assistant's login to this DeskPulse broker. Generated by install.sh; secret.
# In Home Assistant: Settings > Devices & services > Add integration > MQTT, with
# broker = this machine's address, port = $MQTT_PORT, and the username and password below.
# To change the password: delete this file and run ./install.sh again.
username=homeassistant
password=$HA_PW
EOF
}

# The dashboard's login password: generated once, stored only as its argon2 hash (written by
# `deskpulse passwd`, the one place that knows the hash parameters), printed once in summary().
write_dashboard_password() {
    DASH_PW=""
    if [[ -s "$DASH_PW_FILE" ]] && grep -q '^[$]argon2' "$DASH_PW_FILE"; then
        ensure_mode "$DASH_PW_FILE" "$MODE_DASH" "$OWN_CONF" web
        return 0
    fi
    local py
    if [[ -x "$VENV/bin/python" ]]; then
        py="$VENV/bin/python"
    elif [[ -x "$REPO/.venv/bin/python" ]]; then
        py="$REPO/.venv/bin/python" # --skip-deps: the checkout's own venv
    else
        die "no Python environment to hash the dashboard password with (run without --skip-deps)"
    fi
    DASH_PW="$(gen_password)"
    DASH_PW="${DASH_PW:0:20}"
    # Through stdin (printf is a builtin), never through argv.
    printf '%s\n' "$DASH_PW" | PYTHONPATH="$REPO" "$py" -m deskpulse passwd --config "$CONFIG" --stdin >/dev/null ||
        die "could not set the dashboard password"
    ensure_mode "$DASH_PW_FILE" "$MODE_DASH" "$OWN_CONF" web
    CHANGED[web]=1
}

write_broker() {
    # The password file: kept as long as it holds exactly our users with the current passwords
    # (mosquitto_passwd salts every hash, so rewriting it would never be idempotent).
    if ! DP_PW_agent="$AGENT_PW" DP_PW_viewer="$VIEWER_PW" DP_PW_homeassistant="$HA_PW" \
        pyhelper passwd-ok "$PASSWD_FILE" "${MQTT_USERS[@]}"; then
        command -v mosquitto_passwd >/dev/null 2>&1 || die "mosquitto_passwd not found (apt-get install mosquitto)"
        TMP_DIR="$(mktemp -d)"
        local user pw create=(-c)
        for user in "${MQTT_USERS[@]}"; do
            case "$user" in
                agent) pw="$AGENT_PW" ;;
                viewer) pw="$VIEWER_PW" ;;
                homeassistant) pw="$HA_PW" ;;
            esac
            # The password goes through stdin (printf is a builtin), never through argv (-b).
            printf '%s\n%s\n' "$pw" "$pw" | mosquitto_passwd "${create[@]}" "$TMP_DIR/passwd" "$user" >/dev/null
            create=()
        done
        install_file "$PASSWD_FILE" "$MODE_BROKER_FILE" "$OWN_MOSQ" broker <"$TMP_DIR/passwd"
        rm -rf -- "$TMP_DIR"
        TMP_DIR=""
    fi
    ensure_mode "$PASSWD_FILE" "$MODE_BROKER_FILE" "$OWN_MOSQ" broker

    sed -e "s|@PREFIX@|$TOPIC_PREFIX|g" -e "s|@DEVICE_ID@|$DEVICE_ID|g" -e "s|@HA_PREFIX@|$HA_PREFIX|g" \
        "$REPO/config/acl" | install_file "$ACL_FILE" "$MODE_BROKER_FILE" "$OWN_MOSQ" broker

    local dropin
    dropin="$(sed -e "s|@PASSWORD_FILE@|$PASSWD_FILE|g" -e "s|@ACL_FILE@|$ACL_FILE|g" \
        -e "s|@MQTT_PORT@|$MQTT_PORT|g" -e "s|@MQTT_BIND@|$MQTT_BIND|g" \
        -e "s|@MQTT_LOCAL_PORT@|$MQTT_LOCAL_PORT|g" -e 's/[[:space:]]*$//' "$REPO/mosquitto.conf")"
    if grep -q '@[A-Z_]*@' <<<"$dropin"; then
        die "mosquitto.conf has a placeholder install.sh does not know"
    fi
    printf '# Rendered by install.sh from %s; edit that and re-run.\n%s\n' \
        "mosquitto.conf" "$dropin" | install_file "$DROPIN" 0644 "$OWN_ROOT" broker

    if [[ $SYSTEM -eq 1 ]]; then
        local other
        for other in "$DROPIN_DIR"/*.conf; do
            [[ -f "$other" && "$other" != "$DROPIN" ]] || continue
            if grep -Eq '^[[:space:]]*(listener|port|allow_anonymous|password_file|acl_file|per_listener_settings)[[:space:]]' "$other"; then
                warn "$other also sets listeners or authentication; it may conflict with $DROPIN"
            fi
        done
    else
        install_file "$MOSQ_MAIN" 0644 "" broker <<EOF
# A standalone mosquitto for the DeskPulse install in $PREFIX (generated by install.sh).
# Start it with $BIN/deskpulse-broker, or: mosquitto -c $MOSQ_MAIN
# Run as the installing user: never drop to the mosquitto user, which cannot read this prefix.
user $(id -un)
persistence true
persistence_location $MOSQ_DATA/
log_dest stderr
include_dir $DROPIN_DIR
EOF
    fi
}

write_wrappers() {
    local name cmd env
    for name in agent web; do
        if [[ $name == agent ]]; then cmd=run env="$AGENT_ENV"; else cmd=web env="$WEB_ENV"; fi
        install_file "$BIN/deskpulse-$name" 0755 "" wrappers <<EOF
#!/bin/sh
# Runs \`deskpulse $cmd\` of the install in $PREFIX with its credentials (generated by install.sh).
set -a
# shellcheck source=/dev/null
. "$env"
set +a
exec "$VENV/bin/deskpulse" $cmd --config "$CONFIG" "\$@"
EOF
    done
    install_file "$BIN/deskpulse-broker" 0755 "" wrappers <<EOF
#!/bin/sh
# Runs the DeskPulse mosquitto of the install in $PREFIX (generated by install.sh).
PATH="\$PATH:/usr/sbin"
exec mosquitto -c "$MOSQ_MAIN" "\$@"
EOF
}

install_units() {
    local unit
    for unit in "${UNITS[@]}"; do
        install_file "$UNIT_DIR/$unit.service" 0644 "$OWN_ROOT" "unit-$unit" <"$REPO/systemd/$unit.service"
    done
}

check_config() {
    say "checking $CONFIG"
    with_env "$AGENT_ENV" "$VENV/bin/deskpulse" check-config --config "$CONFIG" ||
        die "$CONFIG is not valid (see above); fix it and run ./install.sh again"
}

changed() {
    local group
    for group in "$@"; do
        [[ -n "${CHANGED[$group]:-}" ]] && return 0
    done
    return 1
}

start_services() {
    if changed unit-deskpulse-agent unit-deskpulse-web; then
        systemctl daemon-reload
    fi
    systemctl enable --quiet mosquitto "${UNITS[@]}"
    if changed broker; then
        say "restarting mosquitto"
        systemctl restart mosquitto
    else
        systemctl start mosquitto
    fi
    systemctl is-active --quiet mosquitto ||
        die "mosquitto did not start: see 'journalctl -u mosquitto' and /var/log/mosquitto/mosquitto.log"
    if changed code config agent unit-deskpulse-agent; then
        say "restarting deskpulse-agent"
        systemctl restart deskpulse-agent
    else
        systemctl start deskpulse-agent
    fi
    if changed code config web unit-deskpulse-web; then
        say "restarting deskpulse-web"
        systemctl restart deskpulse-web
    else
        systemctl start deskpulse-web
    fi
}

summary() {
    local host ip
    host="$(hostname)"
    ip="$(hostname -I 2>/dev/null | awk '{print $1}')" || ip=""
    echo
    echo "DeskPulse is installed."
    echo "  config:          $CONFIG"
    echo "  history, data:   $DATA"
    echo "  broker:          $DROPIN (users and ACL in $MOSQ_OWN_DIR/)"
    echo "  MQTT:            port $MQTT_PORT on the LAN${MQTT_BIND:+ ($MQTT_BIND)}, 127.0.0.1:$MQTT_LOCAL_PORT locally; topics $TOPIC_PREFIX/$DEVICE_ID/#"
    echo "  Home Assistant:  its MQTT login is in $HA_SECRET (readable by $(if [[ $SYSTEM -eq 1 ]]; then echo root; else echo you; fi) only)"
    if [[ $SYSTEM -eq 1 ]]; then
        echo "  services:        ${UNITS[*]} (logs: journalctl -u deskpulse-agent -f)"
    else
        echo "  python venv:     $VENV"
        echo
        echo "Start each in its own terminal:"
        echo "  $BIN/deskpulse-broker"
        echo "  $BIN/deskpulse-agent"
        echo "  $BIN/deskpulse-web"
    fi
    echo
    echo "Dashboard: http://$host.local:$WEB_PORT/${ip:+  or  http://$ip:$WEB_PORT/}"
    if [[ -n "$DASH_PW" ]]; then
        local passwd_cmd="$VENV/bin/deskpulse passwd --config $CONFIG"
        [[ $SYSTEM -eq 1 ]] && passwd_cmd="sudo $passwd_cmd"
        echo
        echo "Dashboard password (shown only this once; it is stored only as a hash): $DASH_PW"
        echo "  To change it: $passwd_cmd"
    fi
}

# ---------------------------------------------------------------------------------------------
# Uninstall
# ---------------------------------------------------------------------------------------------
uninstall() {
    local unit
    if [[ $SYSTEM -eq 1 && $NO_SYSTEMD -eq 0 ]]; then
        for unit in "${UNITS[@]}"; do
            systemctl disable --now --quiet "$unit" 2>/dev/null || true
        done
    fi
    # With the agent stopped, nothing republishes discovery after we clear it.
    if [[ -x "$VENV/bin/deskpulse" && -f "$AGENT_ENV" && -f "$CONFIG" ]]; then
        say "removing the Home Assistant discovery topics"
        with_env "$AGENT_ENV" timeout 30 "$VENV/bin/deskpulse" ha-remove --config "$CONFIG" ||
            warn "could not remove the Home Assistant discovery topics (is the broker running?)"
        if [[ $PURGE -eq 1 ]]; then
            say "clearing DeskPulse's retained state on the broker"
            with_env "$AGENT_ENV" timeout 30 "$VENV/bin/python" - "$CONFIG" <<'PYEOF' ||
import sys
import paho.mqtt.client as mqtt
from deskpulse.config import load_config
from deskpulse.topics import Topics

config = load_config(sys.argv[1])
topics = Topics(config.mqtt.prefix, config.device_id)
address = config.mqtt.address()
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
client.username_pw_set(address.username, address.password.get_secret_value())
client.connect(address.host, address.port)
client.loop_start()
for topic in (topics.availability, topics.state, topics.stats, topics.health):
    client.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)
client.disconnect()
client.loop_stop()
PYEOF
                warn "could not clear the retained state (is the broker running?)"
        fi
    fi
    if [[ $SYSTEM -eq 1 && $NO_SYSTEMD -eq 0 ]]; then
        for unit in "${UNITS[@]}"; do
            rm -f -- "$UNIT_DIR/$unit.service"
        done
        systemctl daemon-reload
    fi
    say "removing the broker drop-in, users and ACL"
    rm -f -- "$DROPIN" "$PASSWD_FILE" "$ACL_FILE" "$MOSQ_MAIN"
    rmdir -- "$MOSQ_OWN_DIR" 2>/dev/null || true
    if [[ $SYSTEM -eq 1 && $NO_SYSTEMD -eq 0 ]] && systemctl is-active --quiet mosquitto; then
        # Back to Debian's stock broker (loopback only).
        systemctl restart mosquitto || warn "mosquitto did not restart: see journalctl -u mosquitto"
    fi
    say "removing the secrets and the venv"
    rm -f -- "$AGENT_ENV" "$WEB_ENV" "$HA_SECRET" "$DASH_PW_FILE" "$INSTALL_STATE"
    rm -rf -- "$VENV"
    if [[ $SYSTEM -eq 1 ]]; then
        rmdir -- "$(dirname "$VENV")" 2>/dev/null || true
    else
        rm -f -- "$BIN/deskpulse-agent" "$BIN/deskpulse-web" "$BIN/deskpulse-broker"
        rmdir -- "$DROPIN_DIR" "$MOSQ_ETC" 2>/dev/null || true
    fi
    if [[ $PURGE -eq 1 ]]; then
        say "deleting the config and the history"
        rm -f -- "$CONFIG"
        rm -rf -- "$DATA"
        [[ $SYSTEM -eq 0 ]] && rm -rf -- "$MOSQ_DATA"
        rmdir -- "$ETC" 2>/dev/null || true
        if [[ $SYSTEM -eq 1 ]]; then
            echo "DeskPulse is removed. The system user '$SERVICE_USER' and the Debian packages stay."
        else
            echo "DeskPulse is removed from $PREFIX."
        fi
    else
        echo "DeskPulse is removed. Kept: $CONFIG and the history in $DATA (--purge deletes them)."
    fi
}

# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
if [[ $UNINSTALL -eq 1 ]]; then
    uninstall
    exit 0
fi

check_platform
MQTT_PORT="${OPT_MQTT_PORT:-$(read_value "$INSTALL_STATE" MQTT_PORT)}"
MQTT_PORT="${MQTT_PORT:-1883}"
MQTT_LOCAL_PORT="${OPT_MQTT_LOCAL_PORT:-$(read_value "$INSTALL_STATE" MQTT_LOCAL_PORT)}"
MQTT_LOCAL_PORT="${MQTT_LOCAL_PORT:-1884}"
if [[ $OPT_MQTT_BIND_SET -eq 1 ]]; then
    MQTT_BIND="$OPT_MQTT_BIND"
else
    MQTT_BIND="$(read_value "$INSTALL_STATE" MQTT_BIND)"
fi
[[ "$MQTT_PORT" != "$MQTT_LOCAL_PORT" ]] || usage_error "--mqtt-port and --mqtt-local-port must differ"

if [[ $SYSTEM -eq 1 && $SKIP_DEPS -eq 0 ]]; then
    install_packages
fi
if [[ $SYSTEM -eq 1 ]]; then
    getent group mosquitto >/dev/null || die "the mosquitto group is missing (apt-get install mosquitto)"
    create_user
fi
make_dirs
if [[ $SKIP_DEPS -eq 0 ]]; then
    install_python
fi
write_config
write_state
write_secrets
write_dashboard_password
write_broker
if [[ $SYSTEM -eq 0 ]]; then
    write_wrappers
fi
if [[ $SKIP_DEPS -eq 0 ]]; then
    check_config
fi
if [[ $NO_SYSTEMD -eq 0 ]]; then
    install_units
    start_services
fi
summary
