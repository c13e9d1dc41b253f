// stats.timeline -> runs of one posture and per-hour good/bad seconds, ready to draw.
// Pure: no DOM, no clock of its own (pass `now` in).
//
// The agent's format (deskpulse/tracker.py DayTotals.timeline):
//   {"bucket_s": 300, "start": "<local midnight, ISO with offset>",
//    "good": [s per bucket], "bad": [s per bucket], "postures": "ggb-a..."}
// where each character is the dominant posture of a bucket: g good, b bad, a absent,
// u unknown, p paused, - nothing recorded. A plain list of [start_s, end_s, posture]
// segments (seconds from local midnight) is accepted too.

const CODES = { g: "good", b: "bad", a: "absent", u: "unknown", p: "paused" };
const DAY_S = 24 * 3600;

/** {runs: [{from, to, posture}], hours: [{hour, good, bad}], now, span: [from, to]} or null. */
export function normalizeTimeline(timeline, now = Date.now()) {
  if (Array.isArray(timeline)) return fromSegments(timeline, null);
  if (!timeline || typeof timeline !== "object" || typeof timeline.postures !== "string") return null;
  const bucket = Number(timeline.bucket_s) > 0 ? Number(timeline.bucket_s) : 300;
  const segments = [];
  for (let i = 0; i < timeline.postures.length; i++) {
    const posture = CODES[timeline.postures[i]];
    if (posture) segments.push([i * bucket, (i + 1) * bucket, posture]);
  }
  const start = Date.parse(timeline.start);
  const nowS = Number.isFinite(start) ? clamp((now - start) / 1000, 0, DAY_S) : null;
  const out = fromSegments(segments, nowS);
  if (!out) return null;
  // Per-bucket good/bad seconds are exact; fold them into hours for the bar chart.
  const hours = new Map();
  const add = (list, key) => {
    if (!Array.isArray(list)) return;
    list.forEach((s, i) => {
      const hour = Math.floor((i * bucket) / 3600);
      const h = hours.get(hour) || { hour, good: 0, bad: 0 };
      h[key] += Number(s) || 0;
      hours.set(hour, h);
    });
  };
  add(timeline.good, "good");
  add(timeline.bad, "bad");
  out.hours = [...hours.values()].sort((a, b) => a.hour - b.hour);
  return out;
}

function fromSegments(segments, nowS) {
  const runs = [];
  for (const seg of segments) {
    if (!Array.isArray(seg) || seg.length < 3) continue;
    const [from, to, posture] = [Number(seg[0]), Number(seg[1]), String(seg[2])];
    if (!Number.isFinite(from) || !Number.isFinite(to) || to <= from) continue;
    const last = runs[runs.length - 1];
    if (last && last.posture === posture && Math.abs(last.to - from) < 1) last.to = to;
    else runs.push({ from, to, posture });
  }
  if (!runs.length) return null;
  const first = runs[0].from;
  const end = Math.max(runs[runs.length - 1].to, nowS ?? 0);
  // Whole hours around the recorded part of the day, at least 2 h so a short day reads well.
  let spanFrom = Math.floor(first / 3600) * 3600;
  let spanTo = Math.min(DAY_S, Math.ceil(end / 3600) * 3600);
  if (spanTo - spanFrom < 2 * 3600) spanTo = Math.min(DAY_S, spanFrom + 2 * 3600);
  if (spanTo - spanFrom < 2 * 3600) spanFrom = Math.max(0, spanTo - 2 * 3600);
  return { runs, hours: [], now: nowS, span: [spanFrom, spanTo] };
}

/** Hour ticks for the axis: at most `max` labels, on whole hours. */
export function hourTicks([from, to], max = 7) {
  const hours = (to - from) / 3600;
  const step = [1, 2, 3, 4, 6, 8, 12].find((s) => hours / s <= max) || 12;
  const ticks = [];
  for (let h = Math.ceil(from / 3600 / step) * step; h * 3600 <= to; h += step) ticks.push(h);
  return ticks;
}

function clamp(x, lo, hi) {
  return Math.min(hi, Math.max(lo, x));
}
