// The page's one MQTT connection (mqtt.js over WebSocket, via the relay to the broker).
// Owns connecting, reconnecting and the connection status; knows nothing of topics or the DOM.
// The page has no broker credentials: the relay admits it by its session cookie and logs in
// to the broker for it.

// mqtt.js retries every second, so "reconnecting" shows well within 3 s of losing the broker.
const RECONNECT_MS = 1000;
const CONNECT_TIMEOUT_MS = 4000;
// CONNACK codes that no retry will fix (bad credentials, not authorized).
const REFUSED = new Set([4, 5, 134, 135]);

function clientId() {
  const bytes = new Uint8Array(6);
  crypto.getRandomValues(bytes);
  return "deskpulse-web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Connect to cfg.ws_url. Callbacks:
 *   onStatus(status, detail): status is "connecting" | "connected" | "reconnecting" | "error".
 *   onConnect(): after every (re)connect; subscribe there (the session is clean each time).
 *   onMessage(topic, Uint8Array).
 * Returns {subscribe, unsubscribe, publish, connected(), end}.
 */
export function connectBroker(cfg, { onStatus, onConnect, onMessage }) {
  if (!globalThis.mqtt || typeof globalThis.mqtt.connect !== "function") {
    onStatus("error", "mqtt.js is missing on the server (run scripts/fetch_mqttjs.sh)");
    return null;
  }
  const client = globalThis.mqtt.connect(cfg.ws_url, {
    clientId: clientId(),
    protocolVersion: 4,
    clean: true,
    // A silent network loss (no TCP close) shows as "reconnecting" after ~1.5 keepalives.
    keepalive: 10,
    reconnectPeriod: RECONNECT_MS,
    connectTimeout: CONNECT_TIMEOUT_MS,
    // The page subscribes again itself on every connect (its filters change with the desk).
    resubscribe: false,
  });
  let refused = null;
  let ending = false;

  onStatus("connecting");
  client.on("connect", () => {
    refused = null;
    onStatus("connected");
    onConnect();
  });
  client.on("reconnect", () => onStatus(refused ? "error" : "reconnecting", refused));
  client.on("close", () => {
    if (!ending) onStatus(refused ? "error" : "reconnecting", refused);
  });
  client.on("offline", () => onStatus(refused ? "error" : "reconnecting", refused));
  client.on("error", (err) => {
    const message = err && err.message ? err.message : String(err);
    if (err && REFUSED.has(err.code)) refused = `broker refused the dashboard's login (${message})`;
    console.warn("deskpulse: mqtt error:", message);
    onStatus("error", refused || message);
  });
  client.on("message", (topic, payload) => onMessage(topic, payload));

  return {
    subscribe(filters) {
      if (filters.length) client.subscribe(filters, { qos: 1 });
    },
    unsubscribe(filters) {
      if (filters.length) client.unsubscribe(filters);
    },
    publish(topic, text) {
      client.publish(topic, text, { qos: 1, retain: false });
    },
    connected() {
      return client.connected;
    },
    end() {
      ending = true;
      client.end(true);
    },
  };
}

/** False once the server no longer knows this page's session (expired, logged out, restarted). */
export async function sessionAlive() {
  try {
    const resp = await fetch("config.json", { cache: "no-store" });
    return resp.status !== 401;
  } catch {
    return true; // the server is unreachable: that is a connection problem, not a logout
  }
}
