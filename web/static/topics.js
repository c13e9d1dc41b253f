// Topic contract v1 -> the page's model. The one place that knows topic names and payloads.
// Owns no DOM and no connection: it turns (topic, bytes) into model changes and events.

export const POSTURES = ["good", "bad", "absent", "unknown", "paused"];

/** The filters that list every desk under the prefix. */
export function overviewFilters(prefix) {
  return [`${prefix}/+/state`, `${prefix}/+/availability`];
}

/** The selected desk's own topics (state and availability come through the overview). */
export function deviceTopics(prefix, device) {
  const base = `${prefix}/${device}`;
  return {
    frame: `${base}/frame`,
    stats: `${base}/stats`,
    health: `${base}/health`,
    alert: `${base}/alert`,
    responses: `${base}/response/#`,
    request: (verb) => `${base}/request/${verb}`,
  };
}

export function detailFilters(prefix, device) {
  const t = deviceTopics(prefix, device);
  return [t.frame, t.stats, t.health, t.alert, t.responses];
}

/** {device, kind, verb?} for a topic under prefix, or null. */
export function parseTopic(prefix, topic) {
  if (!topic.startsWith(prefix + "/")) return null;
  const [device, kind, ...rest] = topic.slice(prefix.length + 1).split("/");
  if (!device || !kind) return null;
  if (kind === "response") return rest.length ? { device, kind, verb: rest.join("/") } : null;
  return rest.length ? null : { device, kind };
}

const decoder = new TextDecoder();

function json(payload) {
  try {
    return JSON.parse(decoder.decode(payload));
  } catch {
    return undefined;
  }
}

/** A state payload checked against the contract; null if it isn't one. */
export function parseState(payload) {
  const s = json(payload);
  if (!s || typeof s !== "object" || !POSTURES.includes(s.posture)) return null;
  return s;
}

/**
 * The page's model. Events (CustomEvent, detail as noted):
 *   devices, state, availability, stats, health, frame (Uint8Array), alert, response ({verb, body}),
 *   device (selection changed).
 */
export class Store extends EventTarget {
  constructor(prefix, device) {
    super();
    this.prefix = prefix;
    this.device = device;
    // Every desk seen under the prefix: id -> {state, availability, stateAt}.
    this.devices = new Map();
    this.stats = null;
    this.health = null;
    this._ensure(device);
  }

  _ensure(id) {
    if (!this.devices.has(id)) this.devices.set(id, { state: null, availability: null, stateAt: 0 });
    return this.devices.get(id);
  }

  get current() {
    return this._ensure(this.device);
  }

  select(device) {
    if (device === this.device) return;
    this.device = device;
    this._ensure(device);
    this.stats = null;
    this.health = null;
    this._emit("device", device);
  }

  /** Feed one MQTT message in. Unknown or malformed messages are ignored (logged). */
  handle(topic, payload) {
    const t = parseTopic(this.prefix, topic);
    if (!t) return;
    if (t.kind === "state" || t.kind === "availability") {
      this._overview(t, payload);
      return;
    }
    if (t.device !== this.device) return;
    switch (t.kind) {
      case "frame":
        if (payload.length) this._emit("frame", payload);
        break;
      case "stats":
        this.stats = payload.length ? json(payload) ?? null : null;
        this._emit("stats", this.stats);
        break;
      case "health":
        this.health = payload.length ? json(payload) ?? null : null;
        this._emit("health", this.health);
        break;
      case "alert": {
        const alert = json(payload);
        if (alert && typeof alert === "object") this._emit("alert", alert);
        else console.warn("deskpulse: ignoring malformed alert on", topic);
        break;
      }
      case "response": {
        const body = json(payload);
        if (body && typeof body === "object") this._emit("response", { verb: t.verb, body });
        break;
      }
      default:
        break;
    }
  }

  _overview(t, payload) {
    if (!payload.length) {
      // An empty retained payload clears the topic: forget a desk once nothing of it is left.
      const d = this.devices.get(t.device);
      if (d) {
        d[t.kind] = null;
        if (!d.state && !d.availability && t.device !== this.device) this.devices.delete(t.device);
      }
    } else if (t.kind === "state") {
      const state = parseState(payload);
      if (!state) {
        console.warn("deskpulse: ignoring malformed state on", `${t.device}/state`);
        return;
      }
      const d = this._ensure(t.device);
      d.state = state;
      d.stateAt = Date.now();
    } else {
      const value = decoder.decode(payload).trim();
      this._ensure(t.device).availability = value === "online" ? "online" : "offline";
    }
    this._emit("devices", this.devices);
    if (t.device === this.device) this._emit(t.kind, this.current[t.kind]);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
