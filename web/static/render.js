// Rendering: the model (as the store holds it) -> the DOM. No MQTT, no topics, no timers.

import { hourTicks, normalizeTimeline } from "./timeline.js";

const $ = (id) => document.getElementById(id);

// One hint per reason code the classifier can emit (deskpulse/posture.py REASONS; the state
// schema's reason enum). tests/test_schema.py fails when a code is missing on either side.
export const REASONS = {
  head_down: "Your head has dropped: lift your chin and bring it back over your shoulders.",
  slumped: "You are slumping in your chair: sit up and straighten your back.",
  shoulder_tilt: "Your shoulders are tilted: level them.",
  lean_in: "You are leaning in toward the screen: sit back.",
  neck_forward: "Your neck is bent forward: lift your head over your shoulders.",
  torso_lean: "You are leaning forward: sit back and straighten your back.",
  reclined: "You are leaning far back: sit upright with your back supported.",
  low_visibility: "The camera can't see you well: face it and check the light.",
};

// ---------- formatting ----------

export function fmtClock(iso) {
  const t = Date.parse(iso);
  return Number.isFinite(t) ? new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
}

export function fmtDuration(s) {
  if (!Number.isFinite(s) || s < 0) return "–";
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

/** The current bad streak in seconds, counting on from the last state message. */
export function badStreak(state, receivedAt, now = Date.now()) {
  if (!state || state.posture !== "bad") return 0;
  const base = Number(state.bad_for_s) || 0;
  // Trust the agent's timestamp when the clocks agree; else count from when it arrived.
  const sinceTs = (now - Date.parse(state.ts)) / 1000;
  const elapsed = Number.isFinite(sinceTs) && sinceTs >= 0 && sinceTs < 120 ? sinceTs : (now - receivedAt) / 1000;
  return Math.max(0, base + Math.max(0, elapsed));
}

// ---------- what the posture card says ----------

/** {key, icon, title, message} for the card; never a stale "good" when the agent is gone. */
export function postureView(connection, device, entry) {
  if (connection !== "connected") {
    return connection === "connecting"
      ? { key: "offline", icon: "i-search", title: "Connecting…", message: "Reaching the broker." }
      : { key: "offline", icon: "i-cloud-off", title: "Connection lost", message: "Reconnecting to the broker…" };
  }
  const { state, availability } = entry;
  if (availability === "offline") {
    return { key: "offline", icon: "i-plug", title: "Agent offline",
      message: `The DeskPulse agent on “${device}” is not running.` };
  }
  if (!state) {
    return { key: "offline", icon: "i-search", title: "Waiting for the agent",
      message: `Nothing from “${device}” yet.` };
  }
  if (state.camera === "disconnected") {
    return { key: "offline", icon: "i-camera-off", title: "Camera disconnected",
      message: "Check the camera; DeskPulse reconnects by itself." };
  }
  switch (state.posture) {
    case "paused":
      return { key: "paused", icon: "i-pause", title: "Paused",
        message: state.until ? `Monitoring resumes at ${fmtClock(state.until)}.` : "Monitoring is paused until you resume it." };
    case "absent":
      return { key: "absent", icon: "i-person", title: "No one at the desk",
        message: "Step into the camera view to start monitoring." };
    case "unknown":
      return { key: "unknown", icon: "i-search", title: "Detecting posture…",
        message: reasonHint(state) || "Sit at your desk, facing the camera." };
    case "good":
      return { key: "good", icon: "i-check", title: "Good posture", message: "Keep it up." };
    case "bad":
      return { key: "bad", icon: "i-warn", title: "Bad posture",
        message: reasonHint(state) || "Sit up straight and relax your shoulders." };
    default:
      return { key: "offline", icon: "i-search", title: "Unknown state", message: "" };
  }
}

/** The hint for the first reason the state gives that the table knows, or undefined. */
function reasonHint(state) {
  const reasons = (state.metrics && state.metrics.reasons) || [];
  return reasons.map((r) => REASONS[r]).find(Boolean);
}

export function renderPosture(view, entry, now = Date.now()) {
  const card = $("posture");
  card.dataset.state = view.key;
  $("posture-icon").setAttribute("href", "#" + view.icon);
  $("posture-title").textContent = view.title;
  $("posture-message").textContent = view.message;
  const state = entry.state;
  const showMeta = state && ["good", "bad", "unknown", "absent", "paused"].includes(view.key);
  const meta = [];
  if (showMeta) {
    if (state.since) meta.push(`since ${fmtClock(state.since)}`);
    if (["good", "bad"].includes(state.posture) && Number.isFinite(state.confidence)) {
      meta.push(`${Math.round(state.confidence * 100)}% sure`);
    }
    if (state.calibrated === false) meta.push("not calibrated");
  }
  $("posture-meta").textContent = meta.join(" · ");
  renderStreak(view.key === "bad" ? badStreak(state, entry.stateAt, now) : null);
  document.title = view.key === "bad" ? "⚠ Bad posture · DeskPulse" : `${view.title} · DeskPulse`;
}

export function renderStreak(seconds) {
  const box = $("streak");
  box.hidden = seconds === null;
  if (seconds !== null) $("streak-value").textContent = String(Math.floor(seconds));
}

// ---------- header ----------

const CONN_TEXT = { connecting: "Connecting…", connected: "Connected", reconnecting: "Reconnecting…", error: "Error" };

export function renderConnection(status, detail) {
  const box = $("conn");
  box.dataset.status = status;
  $("conn-text").textContent = status === "error" && detail ? `Error: ${detail}` : CONN_TEXT[status] || status;
  box.title = detail || "";
}

export function renderDevices(devices, selected) {
  const select = $("device-select");
  const ids = [...devices.keys()].sort();
  const label = (id) => {
    const d = devices.get(id);
    const state = d.availability === "offline" ? "offline" : d.state ? d.state.posture : "…";
    return `${id} · ${state}`;
  };
  // Rebuild only when the set of desks or a label changed, so an open picker isn't reset.
  const want = ids.map((id) => `${id}\u0000${label(id)}`).join("\u0001");
  if (select.dataset.sig !== want) {
    select.replaceChildren(...ids.map((id) => new Option(label(id), id)));
    select.dataset.sig = want;
  }
  select.value = selected;
  $("device-picker").classList.toggle("single", ids.length <= 1);
}

// ---------- feed ----------

/** The live image: one Blob URL at a time, revoked when replaced or cleared. */
export class FeedView {
  constructor() {
    this.img = $("feed-img");
    this.url = null;
    this.lastAt = 0;
  }

  show(bytes, now = Date.now()) {
    const url = URL.createObjectURL(new Blob([bytes], { type: "image/jpeg" }));
    const old = this.url;
    this.url = url;
    this.img.src = url;
    if (old) URL.revokeObjectURL(old);
    this.lastAt = now;
    this.img.hidden = false;
    $("feed-placeholder").hidden = true;
    $("live").hidden = false;
  }

  /** No frame for a while (or not wanted): drop the image and say why. */
  clear(reason) {
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = null;
    this.img.hidden = true;
    this.img.removeAttribute("src");
    $("live").hidden = true;
    $("feed-placeholder").hidden = false;
    $("feed-placeholder-text").textContent = reason;
  }

  get flowing() {
    return this.url !== null;
  }
}

// ---------- today ----------

export function renderStats(stats, now = Date.now()) {
  const pct = stats && Number.isFinite(stats.good_pct) ? stats.good_pct : null;
  $("good-pct").textContent = pct === null ? "–" : `${Math.round(pct)}%`;
  const arc = pct === null ? 0 : Math.max(0, Math.min(100, pct));
  $("ring-good").setAttribute("stroke-dasharray", `${arc} 100`);
  // A round line cap would draw a dot for 0%.
  $("ring-good").classList.toggle("empty", arc === 0);
  $("fig-good").textContent = stats ? fmtDuration(stats.good_s) : "–";
  $("fig-bad").textContent = stats ? fmtDuration(stats.bad_s) : "–";
  $("fig-alerts").textContent = stats && Number.isFinite(stats.alerts) ? String(stats.alerts) : "–";
  $("fig-streak").textContent = stats ? fmtDuration(stats.longest_good_streak_s) : "–";
  $("stats-date").textContent = stats && stats.date ? stats.date : "";
  renderTimeline(stats ? normalizeTimeline(stats.timeline, now) : null);
}

function renderTimeline(tl) {
  const bar = $("timeline-bar");
  const axis = $("timeline-axis");
  $("timeline-empty").hidden = Boolean(tl);
  $("timeline").classList.toggle("empty", !tl);
  if (!tl) {
    bar.replaceChildren();
    axis.replaceChildren();
    return;
  }
  const [from, to] = tl.span;
  const pos = (s) => `${(100 * (Math.min(to, Math.max(from, s)) - from)) / (to - from)}%`;
  const width = (a, b) => `${(100 * (Math.min(to, b) - Math.max(from, a))) / (to - from)}%`;
  const segs = tl.runs.map((r) => {
    const el = document.createElement("span");
    el.className = `seg seg-${r.posture}`;
    el.style.left = pos(r.from);
    el.style.width = width(r.from, r.to);
    el.title = `${hhmm(r.from)}–${hhmm(r.to)} ${r.posture}`;
    return el;
  });
  if (tl.now !== null && tl.now > from && tl.now < to) {
    const marker = document.createElement("span");
    marker.className = "now";
    marker.style.left = pos(tl.now);
    segs.push(marker);
  }
  bar.replaceChildren(...segs);
  bar.setAttribute("aria-label", "Today's timeline: " + tl.runs.map((r) => `${hhmm(r.from)} ${r.posture}`).join(", "));
  // About one label per 64 px, so a phone gets fewer hours than a desktop.
  const maxTicks = Math.max(3, Math.floor((bar.clientWidth || 640) / 64));
  axis.replaceChildren(...hourTicks(tl.span, maxTicks).map((h) => {
    const el = document.createElement("span");
    el.textContent = `${String(h % 24).padStart(2, "0")}:00`;
    el.style.left = pos(h * 3600);
    return el;
  }));
}

function hhmm(s) {
  const m = Math.floor(s / 60);
  return `${String(Math.floor(m / 60) % 24).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;
}

// ---------- footer ----------

export function renderHealth(health) {
  const el = $("health");
  if (!health) {
    el.textContent = "No health report yet";
    return;
  }
  const parts = [];
  if (Number.isFinite(health.fps)) parts.push(`${health.fps.toFixed(1)} fps`);
  if (Number.isFinite(health.inference_ms)) parts.push(`inference ${Math.round(health.inference_ms)} ms`);
  if (health.camera) parts.push(`camera ${health.camera}`);
  if (Number.isFinite(health.cpu_temp_c)) parts.push(`${Math.round(health.cpu_temp_c)} °C`);
  if (Number.isFinite(health.uptime_s)) parts.push(`up ${fmtDuration(health.uptime_s)}`);
  if (health.version) parts.push(`agent ${health.version}`);
  el.textContent = parts.join(" · ");
}

// ---------- alerts, results, controls ----------

const ALERT_TITLES = { bad_posture: "Posture alert", recovered: "Back on track", break_reminder: "Time for a break" };

export function showAlert(alert) {
  const banner = $("alert-banner");
  banner.dataset.kind = alert.type || "bad_posture";
  $("alert-title").textContent = ALERT_TITLES[alert.type] || "DeskPulse";
  $("alert-text").textContent = alert.message || (alert.duration_s ? `Slouching for ${fmtDuration(alert.duration_s)}.` : "");
  banner.hidden = false;
}

export function hideAlert() {
  $("alert-banner").hidden = true;
}

export function alertTitle(alert) {
  return ALERT_TITLES[alert.type] || "DeskPulse";
}

export function showResult(text, kind = "ok") {
  const el = $("result");
  el.textContent = text;
  el.dataset.kind = kind;
  el.hidden = false;
}

/** The pause button doubles as resume while the desk is paused. */
export function renderControls({ enabled, paused, busy }) {
  $("pause-label").textContent = paused ? "Resume" : "Pause";
  $("pause-icon").setAttribute("href", paused ? "#i-play" : "#i-pause");
  $("pause-btn").dataset.action = paused ? "resume" : "pause";
  $("pause-minutes").hidden = paused;
  $("pause-btn").disabled = !enabled || busy.has("pause") || busy.has("resume");
  $("pause-minutes").disabled = !enabled;
  $("calibrate-btn").disabled = !enabled || busy.has("calibrate");
}

export function renderCalibration(progress) {
  const box = $("calibrate-progress");
  if (progress === null) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  const pct = Math.max(0, Math.min(100, Number(progress.percent) || 0));
  $("calibrate-bar").style.width = `${pct}%`;
  $("calibrate-text").textContent = `${progress.stage ? capital(progress.stage) : "Calibrating"}… ${Math.round(pct)}%`;
}

function capital(s) {
  return String(s).charAt(0).toUpperCase() + String(s).slice(1);
}
