// The dashboard's wiring: config.json -> connection -> store -> render, plus the controls,
// the frame lease and the timers. Topic names live in topics.js, DOM writes in render.js.

import { connectBroker, sessionAlive } from "./connection.js";
import { Requests } from "./requests.js";
import * as view from "./render.js";
import { Trend } from "./trend.js";
import { Store, detailFilters, deviceTopics, overviewFilters } from "./topics.js";

const LEASE_S = 45; // the agent encodes frames while any page's lease is live...
const RENEW_MS = 20000; // ...each page renews its own in time even if one renewal is lost
const CONFIRM_MS = 300000; // renewals are quiet (unanswered) but for one this often
const STALE_MS = 2000; // no frame for this long: the feed has stopped
const SESSION_CHECK_MS = 5000; // while disconnected, ask at most this often whether we are logged out
const TICK_MS = 500;
const KEY_DEVICE = "deskpulse.device";
const KEY_STREAM = "deskpulse.stream";

const storage = {
  get(key) {
    try {
      return localStorage.getItem(key);
    } catch {
      return null; // storage disabled: fall back to defaults
    }
  },
  set(key, value) {
    try {
      localStorage.setItem(key, value);
    } catch {
      /* storage disabled: the choice lasts this visit only */
    }
  },
};

const $ = (id) => document.getElementById(id);

function toLogin() {
  window.location.assign("login");
}

async function loadConfig() {
  const resp = await fetch("config.json", { cache: "no-store" });
  if (resp.status === 401) {
    toLogin();
    throw new Error("logged out");
  }
  if (!resp.ok) throw new Error(`config.json: HTTP ${resp.status}`);
  return resp.json();
}

class Dashboard {
  constructor(cfg) {
    this.cfg = cfg;
    this.store = new Store(cfg.prefix, storage.get(KEY_DEVICE) || cfg.device);
    this.status = "connecting";
    this.busy = new Set();
    this.feed = new view.FeedView();
    this.streamOn = storage.get(KEY_STREAM) !== "off";
    this.streamError = null;
    this.lastStatsAt = 0;
    this.sessionCheckedAt = 0;
    this.conn = null;
    this.requests = new Requests((verb, text) => {
      if (!this.conn || !this.conn.connected()) throw new Error("not connected to the broker");
      this.conn.publish(deviceTopics(this.cfg.prefix, this.store.device).request(verb), text);
    });
    this.trend = new Trend((verb, payload, options) => this.requests.send(verb, payload, options));
  }

  start() {
    this.bindStore();
    this.bindControls();
    this.conn = connectBroker(this.cfg, {
      onStatus: (status, detail) => this.onStatus(status, detail),
      onConnect: () => this.conn.subscribe([...overviewFilters(this.cfg.prefix), ...this.details()]),
      onMessage: (topic, payload) => this.store.handle(topic, payload),
    });
    setInterval(() => this.tick(), TICK_MS);
    setInterval(() => this.renewLease(), RENEW_MS);
    window.addEventListener("resize", () => this.renderStats());
    document.addEventListener("visibilitychange", () => {
      this.renewLease();
      this.refresh();
    });
    view.renderDevices(this.store.devices, this.store.device);
    this.refresh();
  }

  details() {
    return detailFilters(this.cfg.prefix, this.store.device);
  }

  onStatus(status, detail) {
    const was = this.status;
    this.status = status;
    view.renderConnection(status, detail);
    if (status === "reconnecting" || status === "error") this.checkSession();
    if (status === "connected" && was !== "connected") {
      this.renewLease();
      this.trend.refresh();
    }
    this.refresh();
  }

  /** The relay refuses a page whose session ended: go to the login page instead of retrying. */
  checkSession() {
    const now = Date.now();
    if (now - this.sessionCheckedAt < SESSION_CHECK_MS) return;
    this.sessionCheckedAt = now;
    sessionAlive().then((alive) => {
      if (!alive) {
        if (this.conn) this.conn.end();
        toLogin();
      }
    });
  }

  bindStore() {
    const s = this.store;
    s.addEventListener("devices", () => view.renderDevices(s.devices, s.device));
    s.addEventListener("state", () => this.refresh());
    s.addEventListener("availability", () => {
      this.renewLease();
      if (this.trend.failed && s.current.availability === "online") this.trend.refresh();
      this.refresh();
    });
    s.addEventListener("stats", () => this.renderStats());
    s.addEventListener("health", (e) => view.renderHealth(e.detail));
    s.addEventListener("response", (e) => this.requests.handle(e.detail.verb, e.detail.body));
    s.addEventListener("alert", (e) => this.onAlert(e.detail));
    s.addEventListener("frame", (e) => {
      // Another page may hold the lease; this one shows frames only if it wants them.
      if (this.streamOn && document.visibilityState === "visible") this.feed.show(e.detail);
    });
  }

  bindControls() {
    $("device-select").addEventListener("change", (e) => this.selectDevice(e.target.value));
    $("pause-btn").addEventListener("click", () => this.pauseOrResume());
    $("calibrate-btn").addEventListener("click", () => this.calibrate());
    $("alert-dismiss").addEventListener("click", () => view.hideAlert());
    const toggle = $("stream-toggle");
    toggle.checked = this.streamOn;
    toggle.addEventListener("change", () => {
      this.streamOn = toggle.checked;
      storage.set(KEY_STREAM, this.streamOn ? "on" : "off");
      this.streamError = null;
      if (!this.streamOn) this.feed.clear(this.feedReason());
      this.renewLease();
      this.refresh();
    });
    this.bindNotifications();
  }

  selectDevice(device) {
    if (device === this.store.device) return;
    const old = this.details();
    this.requests.cancelAll("switched to another desk");
    this.store.select(device);
    storage.set(KEY_DEVICE, device);
    if (this.conn && this.conn.connected()) {
      this.conn.unsubscribe(old);
      this.conn.subscribe(this.details());
    }
    this.feed.clear("Waiting for frames…");
    view.hideAlert();
    view.renderHealth(null);
    this.renderStats();
    this.trend.reset();
    view.renderDevices(this.store.devices, device);
    this.renewLease();
    this.refresh();
  }

  /** Everything derived from connection + selected desk. */
  refresh() {
    const entry = this.store.current;
    view.renderPosture(view.postureView(this.status, this.store.device, entry), entry);
    const usable = this.status === "connected" && entry.availability !== "offline";
    const paused = Boolean(entry.state && entry.state.posture === "paused");
    view.renderControls({ enabled: usable, paused, busy: this.busy });
    if (!this.feed.flowing || !usable || !this.streamOn) this.feed.clear(this.feedReason());
  }

  feedReason() {
    const state = this.store.current.state;
    if (this.status !== "connected") return "Not connected to the broker";
    if (this.store.current.availability === "offline") return "Agent offline";
    if (!this.streamOn) return "Live view is off";
    if (state && state.posture === "paused") return "Paused: the camera is released";
    if (state && state.camera === "disconnected") return "Camera disconnected";
    if (this.streamError) return this.streamError;
    return "Waiting for frames…";
  }

  tick() {
    const now = Date.now();
    if (this.feed.flowing && now - this.feed.lastAt > STALE_MS) this.feed.clear(this.feedReason());
    const entry = this.store.current;
    if (this.status === "connected" && entry.availability !== "offline" && entry.state && entry.state.posture === "bad") {
      view.renderStreak(view.badStreak(entry.state, entry.stateAt, now));
    }
    // Keep the "now" marker of today's timeline moving.
    if (now - this.lastStatsAt > 60000) this.renderStats();
  }

  renderStats() {
    this.lastStatsAt = Date.now();
    view.renderStats(this.store.stats);
  }

  wantFrames() {
    return this.streamOn && this.status === "connected" && document.visibilityState === "visible"
      && this.store.current.availability !== "offline";
  }

  /**
   * This page's own frame lease on the selected desk (`viewer` names it), kept while the page
   * wants frames. The first request for a desk, and one every CONFIRM_MS, are answered (so an
   * error such as "frames disabled" shows); the renewals in between are quiet: the agent does
   * not answer them, so open pages cost it next to nothing. The lease is released as soon as
   * the page stops wanting frames (tab hidden, live view off, another desk, disconnected);
   * a page that is closed tries to on pagehide (best effort: the socket may close first), and
   * otherwise its lease runs out LEASE_S after its last renewal. An agent that refuses the
   * `viewer` field gets the old answered renewals and no release.
   */
  renewLease() {
    const lease = this.lease || this.initLease();
    const device = this.store.device;
    if (lease.device !== null && (lease.device !== device || !this.wantFrames())) this.releaseLease();
    if (!this.wantFrames()) return;
    if (!lease.legacy && lease.device === device && Date.now() - lease.confirmedAt < CONFIRM_MS) {
      this.publishLease(device, { lease_s: LEASE_S, viewer: lease.viewer, quiet: true });
      return;
    }
    lease.device = device; // from now on the agent may hold it: release it even if no answer comes
    const payload = lease.legacy ? { lease_s: LEASE_S } : { lease_s: LEASE_S, viewer: lease.viewer };
    this.requests.send("stream", payload).then(
      () => {
        if (lease.device === device) lease.confirmedAt = Date.now();
        this.streamError = null;
      },
      (err) => {
        if (!lease.legacy && /unknown field/.test(err.message)) {
          lease.legacy = true; // an agent from before per-page leases
          lease.device = null;
          this.renewLease();
          return;
        }
        this.streamError = `No live view: ${err.message}`;
        if (!this.feed.flowing) this.feed.clear(this.feedReason());
      },
    );
  }

  initLease() {
    const bytes = new Uint8Array(6);
    crypto.getRandomValues(bytes);
    const viewer = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    this.lease = { viewer, device: null, confirmedAt: 0, legacy: false };
    window.addEventListener("pagehide", () => this.releaseLease());
    return this.lease;
  }

  releaseLease() {
    const lease = this.lease;
    if (!lease || lease.device === null) return;
    if (!lease.legacy) this.publishLease(lease.device, { enable: false, viewer: lease.viewer, quiet: true });
    lease.device = null;
    lease.confirmedAt = 0;
  }

  /** A fire-and-forget stream request to `device` (quiet: the agent sends no answer). */
  publishLease(device, payload) {
    if (!this.conn || !this.conn.connected()) return;
    this.conn.publish(deviceTopics(this.cfg.prefix, device).request("stream"), JSON.stringify(payload));
  }

  pauseOrResume() {
    const action = $("pause-btn").dataset.action === "resume" ? "resume" : "pause";
    const minutes = $("pause-minutes").value;
    const payload = action === "pause" && minutes ? { minutes: Number(minutes) } : {};
    this.run(action, payload, (body) => {
      if (action === "resume") return "Monitoring resumed.";
      const until = (body.data && body.data.until) || null;
      return until ? `Paused until ${view.fmtClock(until)}.` : "Paused until you resume.";
    });
  }

  calibrate() {
    view.renderCalibration({ stage: "starting", percent: 0 });
    this.run("calibrate", {}, () => "Calibrated: your good posture is the new baseline.", {
      onProgress: (data) => view.renderCalibration(data),
      timeoutMs: 20000,
    }).finally(() => view.renderCalibration(null));
  }

  /** Send a request, keep its button busy, and tell the user how it went. */
  run(verb, payload, describe, options = {}) {
    this.busy.add(verb);
    this.refresh();
    view.showResult(`${capital(verb)}: waiting for the agent…`, "pending");
    return this.requests.send(verb, payload, options).then(
      (body) => view.showResult(describe(body), "ok"),
      (err) => view.showResult(`${capital(verb)} failed: ${err.message}`, "error"),
    ).finally(() => {
      this.busy.delete(verb);
      this.refresh();
    });
  }

  onAlert(alert) {
    view.showAlert(alert);
    clearTimeout(this.alertTimer);
    if (alert.type === "recovered") this.alertTimer = setTimeout(() => view.hideAlert(), 10000);
    if ("Notification" in window && Notification.permission === "granted") {
      try {
        new Notification(view.alertTitle(alert), { body: alert.message || "", tag: "deskpulse-alert", icon: "static/favicon.svg" });
      } catch (err) {
        console.warn("deskpulse: notification failed:", err);
      }
    }
  }

  bindNotifications() {
    const btn = $("notify-btn");
    // Notifications need a secure context (https or localhost); the banner always works.
    const supported = "Notification" in window && window.isSecureContext;
    const update = () => {
      btn.hidden = !supported || Notification.permission !== "default";
    };
    update();
    btn.addEventListener("click", () => {
      // Asked only on this click, never on load.
      Notification.requestPermission().then(update, update);
    });
  }
}

function capital(s) {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

loadConfig().then(
  (cfg) => new Dashboard(cfg).start(),
  (err) => view.renderConnection("error", `cannot load settings (${err.message})`),
);
