// Requests to the agent on .../request/<verb>, matched to .../response/<verb> by transaction.
// Owns the pending transactions and their timeouts; knows nothing of the DOM.

const IDLE_TIMEOUT_MS = 10000;

export class RequestError extends Error {}

export class Requests {
  /** publish(verb, text) sends on the selected desk's request topic. */
  constructor(publish) {
    this._publish = publish;
    this._pending = new Map();
    this._tag = Math.random().toString(36).slice(2, 8);
    this._n = 0;
  }

  /**
   * Send a request; resolves with the final response body, rejects with RequestError
   * (the agent's error text, or a timeout). onProgress(data) sees intermediate responses
   * (calibrate reports {stage, percent} before its final answer).
   */
  send(verb, payload = {}, { onProgress = null, timeoutMs = IDLE_TIMEOUT_MS } = {}) {
    const transaction = `web-${this._tag}-${++this._n}`;
    return new Promise((resolve, reject) => {
      const entry = { verb, resolve, reject, onProgress, timeoutMs, timer: 0 };
      this._arm(transaction, entry);
      this._pending.set(transaction, entry);
      try {
        this._publish(verb, JSON.stringify({ ...payload, transaction }));
      } catch (err) {
        this._settle(transaction);
        reject(new RequestError(`could not send: ${err.message || err}`));
      }
    });
  }

  /** Feed a response in; responses to other pages' transactions are ignored. */
  handle(verb, body) {
    const entry = this._pending.get(body.transaction);
    if (!entry || entry.verb !== verb) return;
    if (body.status === "error") {
      this._settle(body.transaction);
      entry.reject(new RequestError(body.error || "the agent refused the request"));
    } else if (isFinal(verb, body)) {
      this._settle(body.transaction);
      entry.resolve(body);
    } else {
      this._arm(body.transaction, entry);
      if (entry.onProgress) entry.onProgress(body.data || {});
    }
  }

  /** Fail everything in flight (the desk changed or the page is leaving). */
  cancelAll(reason) {
    for (const [transaction, entry] of this._pending) {
      this._settle(transaction);
      entry.reject(new RequestError(reason));
    }
  }

  _arm(transaction, entry) {
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => {
      this._settle(transaction);
      entry.reject(new RequestError("no answer from the agent"));
    }, entry.timeoutMs);
  }

  _settle(transaction) {
    const entry = this._pending.get(transaction);
    if (entry) clearTimeout(entry.timer);
    this._pending.delete(transaction);
  }
}

/** Progress answers say "final": false (calibrate); without the flag, guess from the data. */
export function isFinal(verb, body) {
  if ("final" in body) return body.final !== false;
  if (verb !== "calibrate") return true;
  const data = body.data;
  if (!data || typeof data !== "object") return true;
  if ("baseline" in data) return true;
  if (["done", "complete", "completed", "finished"].includes(data.stage)) return true;
  return !("percent" in data) && !("stage" in data);
}
