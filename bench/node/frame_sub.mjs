// A browser-equivalent subscriber: N mqtt.js clients over WebSockets, in one node process.
//
// Used by bench/frame_latency.py, bench/fanout.py and tests/test_wsrelay.py. It uses the same
// mqtt.js package the page serves (web/node_modules/mqtt, pinned in web/package-lock.json).
//
// Protocol with the harness, one JSON object per stdout line:
//   {"event":"ready"}                      every client is connected and subscribed
//   {"event":"msg", ...}                   per message, only with --print-messages
//   {"event":"result","clients":[...]}     after every client saw "end" on --control-topic
//                                          (or --timeout seconds passed)
// Counting runs, per client, between "start" and "end" on the control topic, so every client
// and the harness's own TCP reference subscriber count the same window of broker messages.
// A frame stamped by bench/benchkit.py starts with "DPF1", float64 send time (ms since the
// epoch), uint32 seq, uint32 total length (big-endian): latency = receive time - send time.

import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const webDir = process.env.DESKPULSE_WEB_DIR || path.resolve(here, '../../web');
const require = createRequire(path.join(webDir, 'package.json'));
const mqtt = require('mqtt');

const { values: opt } = parseArgs({
  options: {
    url: { type: 'string' },
    clients: { type: 'string', default: '1' },
    'frame-topic': { type: 'string' },
    'state-topic': { type: 'string' },
    'control-topic': { type: 'string' },
    topic: { type: 'string', multiple: true, default: [] },
    username: { type: 'string' },
    password: { type: 'string' },
    'protocol-version': { type: 'string', default: '4' },
    'renew-topic': { type: 'string' },
    'renew-every': { type: 'string', default: '5' },
    'renew-payload': { type: 'string', default: '{"lease_s": 15}' },
    timeout: { type: 'string', default: '120' },
    'print-messages': { type: 'boolean', default: false },
    'id-prefix': { type: 'string', default: 'bench' },
  },
});

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const nowMs = () => performance.timeOrigin + performance.now();
const MAGIC = Buffer.from('DPF1');

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

function median(values) {
  return percentile(Float64Array.from(values).sort(), 50);
}

// lat is in arrival order; the medians of its two halves show whether a backlog is growing.
function summarize(lat) {
  const s = Float64Array.from(lat).sort();
  const half = Math.floor(lat.length / 2);
  return {
    n: s.length, p50: percentile(s, 50), p95: percentile(s, 95), max: s.length ? s[s.length - 1] : null,
    p50_first_half: median(lat.slice(0, half)), p50_second_half: median(lat.slice(half)),
  };
}

const nClients = Number(opt.clients);
const subTopics = [opt['frame-topic'], opt['state-topic'], opt['control-topic'], ...opt.topic].filter(Boolean);
const clients = [];
let readyCount = 0;
let endedCount = 0;
let finished = false;

function finish(reason) {
  if (finished) return;
  finished = true;
  const all = [];
  const results = clients.map((c) => {
    for (const v of c.lat) all.push(v);
    return {
      id: c.id, frames: c.frames, bad_frames: c.badFrames, frame_bytes: c.frameBytes,
      state_seqs: c.stateSeqs, states: c.states, ended: c.ended, errors: c.errors,
      connects: c.connects, latency_ms: summarize(c.lat),
    };
  });
  emit({ event: 'result', reason, clients: results, latency_ms: summarize(all) });
  for (const c of clients) c.client.end(true);
  // Leave the event loop to drain stdout, then exit even if a socket lingers.
  setTimeout(() => process.exit(0), 200).unref();
}

function makeClient(i) {
  const c = {
    id: `${opt['id-prefix']}-${process.pid}-${i}`, counting: false, ended: false, subscribed: false,
    frames: 0, badFrames: 0, frameBytes: 0, states: 0, stateSeqs: [], lat: [], errors: [], connects: 0,
  };
  c.client = mqtt.connect(opt.url, {
    clientId: c.id, username: opt.username, password: opt.password,
    protocolVersion: Number(opt['protocol-version']), reconnectPeriod: 1000, connectTimeout: 10000,
    clean: true, keepalive: 30,
  });
  c.client.on('connect', () => {
    c.connects += 1;
    c.client.subscribe(Object.fromEntries(subTopics.map((t) => [t, { qos: 1 }])),
      (err, granted) => {
        if (err) { c.errors.push(String(err)); return; }
        const refused = (granted || []).filter((g) => g.qos === 128);
        if (refused.length) c.errors.push(`subscribe refused: ${refused.map((g) => g.topic).join(',')}`);
        if (!c.subscribed) {
          c.subscribed = true;
          readyCount += 1;
          if (readyCount === nClients) emit({ event: 'ready', clients: nClients });
        }
      });
  });
  c.client.on('error', (err) => {
    c.errors.push(String(err && err.message ? err.message : err));
    if (opt['print-messages']) emit({ event: 'error', id: c.id, error: String(err && err.message) });
  });
  c.client.on('message', (topic, payload, packet) => {
    const at = nowMs();
    if (opt['print-messages']) {
      emit({ event: 'msg', id: c.id, topic, len: payload.length, retain: !!packet.retain,
        sha256: createHash('sha256').update(payload).digest('hex'),
        text: payload.length <= 256 ? payload.toString('utf8') : null });
    }
    if (topic === opt['control-topic']) {
      const cmd = payload.toString();
      if (cmd === 'start') c.counting = true;
      if (cmd === 'end' && !c.ended && !packet.retain) {
        c.counting = false; c.ended = true; endedCount += 1;
        if (endedCount === nClients) finish('end');
      }
      return;
    }
    if (!c.counting) return;
    if (topic === opt['frame-topic']) {
      c.frames += 1;
      c.frameBytes += payload.length;
      if (payload.length >= 20 && payload.subarray(0, 4).equals(MAGIC)) {
        const sent = payload.readDoubleBE(4);
        if (payload.readUInt32BE(16) !== payload.length) c.badFrames += 1;
        c.lat.push(at - sent);
      }
    } else if (topic === opt['state-topic'] && !packet.retain) {
      c.states += 1;
      try {
        const seq = JSON.parse(payload.toString()).seq;
        if (seq !== undefined) c.stateSeqs.push(seq);
      } catch { c.errors.push('state payload is not JSON'); }
    }
  });
  return c;
}

if (opt['renew-topic']) {
  const every = Number(opt['renew-every']) * 1000;
  setInterval(() => {
    for (const c of clients) if (c.client.connected) c.client.publish(opt['renew-topic'], opt['renew-payload'].replaceAll('{viewer}', String(c.id)), { qos: 1 });
  }, every).unref();
}

process.on('SIGTERM', () => finish('sigterm'));
process.on('SIGINT', () => finish('sigint'));
setTimeout(() => finish('timeout'), Number(opt.timeout) * 1000).unref();
// The timer above is unref'd; the clients' sockets keep the process alive until finish().

for (let i = 0; i < nClients; i++) clients.push(makeClient(i));
