// The 7-day trend: good % per day from the agent's `history` request, drawn as bars.
// Owns when to ask (load, every few minutes, desk change) and the chart's DOM; answers are
// matched by transaction in requests.js. Knows no topics and no MQTT.

const REFRESH_MS = 5 * 60 * 1000;
const RETRY_MS = 30 * 1000; // after a failure (agent offline, timeout), try again sooner
const DAYS = 7;
const WEEKDAY = new Intl.DateTimeFormat([], { weekday: "short", timeZone: "UTC" });

const $ = (id) => document.getElementById(id);

/**
 * The `history` answer's data -> [{date, label, pct, goodS, badS, alerts}], oldest first,
 * at most `DAYS` entries (the newest). `pct` is null for a day with no monitored time.
 * Malformed entries are skipped; returns [] for anything that isn't a history answer.
 */
export function trendDays(data) {
  const days = data && Array.isArray(data.days) ? data.days : [];
  const out = [];
  for (const d of days) {
    if (!d || typeof d !== "object" || !/^\d{4}-\d{2}-\d{2}$/.test(String(d.date))) continue;
    const t = Date.parse(`${d.date}T00:00:00Z`);
    if (!Number.isFinite(t)) continue;
    const pct = Number.isFinite(d.good_pct) ? Math.max(0, Math.min(100, d.good_pct)) : null;
    out.push({
      date: d.date,
      label: WEEKDAY.format(new Date(t)),
      pct,
      goodS: Number(d.good_s) || 0,
      badS: Number(d.bad_s) || 0,
      alerts: Number.isFinite(d.alerts) ? d.alerts : 0,
    });
  }
  out.sort((a, b) => (a.date < b.date ? -1 : a.date > b.date ? 1 : 0));
  return out.slice(-DAYS);
}

/** Draw the bars (or say why there are none). `days` as from trendDays(); null = not loaded. */
export function renderTrend(days, message = "") {
  const chart = $("trend-chart");
  const note = $("trend-note");
  const monitored = (days || []).filter((d) => d.pct !== null);
  if (!days || !days.length) {
    chart.replaceChildren();
    chart.hidden = true;
    note.textContent = message || "Loading the last 7 days…";
    note.hidden = false;
    $("trend-avg").textContent = "";
    return;
  }
  chart.hidden = false;
  chart.replaceChildren(...days.map((d, i) => bar(d, i === days.length - 1)));
  chart.setAttribute("aria-label", "Good posture per day: " + days.map(
    (d) => `${d.label} ${d.date}: ${d.pct === null ? "no data" : `${Math.round(d.pct)}%`}`).join(", "));
  note.hidden = monitored.length > 0 && !message;
  note.textContent = message || (monitored.length ? "" : "No monitored time in the last 7 days yet.");
  // The week's good share, weighted by monitored time (not an average of percentages).
  const good = monitored.reduce((s, d) => s + d.goodS, 0);
  const bad = monitored.reduce((s, d) => s + d.badS, 0);
  $("trend-avg").textContent = good + bad > 0 ? `${Math.round((100 * good) / (good + bad))}% good this week` : "";
}

function bar(d, today) {
  const col = document.createElement("div");
  col.className = "trend-day" + (today ? " today" : "");
  col.dataset.date = d.date;
  col.title = d.pct === null
    ? `${d.date}: no monitored time`
    : `${d.date}: ${Math.round(d.pct)}% good, ${Math.round(d.badS / 60)} min slouching, ${d.alerts} alert${d.alerts === 1 ? "" : "s"}`;
  const value = document.createElement("span");
  value.className = "trend-value";
  value.textContent = d.pct === null ? "–" : `${Math.round(d.pct)}%`;
  const track = document.createElement("div");
  track.className = "trend-track";
  if (d.pct === null) {
    const none = document.createElement("span");
    none.className = "trend-none";
    track.append(none);
  } else {
    // Stacked: slouching on top of good, so every monitored day is a full-height bar.
    const badPart = document.createElement("span");
    badPart.className = "trend-bad";
    badPart.style.height = `${100 - d.pct}%`;
    const goodPart = document.createElement("span");
    goodPart.className = "trend-good";
    goodPart.style.height = `${d.pct}%`;
    track.append(badPart, goodPart);
  }
  const label = document.createElement("span");
  label.className = "trend-label";
  label.textContent = today ? "Today" : d.label;
  col.append(value, track, label);
  return col;
}

/** Asks for the history on start, every few minutes, and when asked to (desk change, reconnect). */
export class Trend {
  /** send(verb, payload, options) -> Promise of the final answer (Requests.send). */
  constructor(send) {
    this._send = send;
    this._timer = 0;
    this._generation = 0;
    this.days = null;
    this.failed = false; // the last attempt failed: worth retrying as soon as the agent is back
  }

  /** Forget the current desk's chart (another desk was selected) and load the new one. */
  reset() {
    this.days = null;
    renderTrend(null);
    this.refresh();
  }

  refresh() {
    clearTimeout(this._timer);
    const generation = ++this._generation;
    // No dates: the agent picks "the last 7 days" in its own time zone, which may not be ours.
    this._send("history", {}, { timeoutMs: 15000 }).then(
      (body) => {
        if (generation !== this._generation) return; // a newer request superseded this one
        this.failed = false;
        this.days = trendDays(body.data);
        renderTrend(this.days);
        this._schedule(REFRESH_MS);
      },
      (err) => {
        if (generation !== this._generation) return;
        this.failed = true;
        // Keep showing the last chart; say why it may be stale.
        const why = `Trend unavailable: ${err.message}`;
        renderTrend(this.days, why);
        this._schedule(RETRY_MS);
      },
    );
  }

  _schedule(ms) {
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this.refresh(), ms);
  }
}
