// How many Redis commands a call set-up costs, counted exactly: a server on a
// private redis-server, watched with MONITOR (which shows the commands each
// client sends and, as `[0 lua]`, the commands its scripts run). Commands are
// deterministic, so the counts are asserted; the per-step breakdown is
// printed. What runs on a timer (heartbeats, the sweep) and the adapter's
// blocking XREAD are left out: they do not depend on the handshake.
//
// A handshake is counted as `npm run bench -- --cluster` counts it
// (bench/load/redis-events.ts): a pair's second call set-up, so each side
// also leaves its previous channel: publish, subscribe, the peer notice, an
// offer, an answer and two candidates each way. Each side looks its peer up
// once (HGET); the lookup connection's client-side cache answers the rest.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { Socket } from 'socket.io-client';
import {
  claimScript,
  connectScript,
  disconnectScript,
  heartbeatScript,
  joinScript,
  leaveScript,
  registryLibrary,
} from '../src/channels/redis/scripts';
import { get } from './helpers/api';
import { connect, next, nextMessage, STREAM } from './helpers/client';
import { connectRedis, privateRedis } from './helpers/redis';
import { startServer, TOKEN } from './helpers/server';
import { eventually, within } from './helpers/wait';

const SCRIPT_NAMES = new Map(
  Object.entries({
    connect: connectScript,
    disconnect: disconnectScript,
    join: joinScript,
    leave: leaveScript,
    heartbeat: heartbeatScript,
    claim: claimScript,
  }).flatMap(([name, script]) => [
    [script.sha, name],
    [registryLibrary.functionName(script) ?? script.sha, name],
  ]),
);
/** Sent on a timer or blocking, whatever the clients do. */
const PERIODIC = new Set(['script heartbeat', 'script claim', 'XREAD']);

interface Step {
  /** Commands sent, by name (a script by its name). */
  sent: Map<string, number>;
  /** Commands run inside scripts, by script and command. */
  inScripts: Map<string, number>;
}
const total = (counts: Map<string, number>) => [...counts.values()].reduce((a, b) => a + b, 0);
const add = (counts: Map<string, number>, key: string) => counts.set(key, (counts.get(key) ?? 0) + 1);

/** MONITOR, cut into steps by ECHO markers sent on another connection. */
async function tap(url: string) {
  const [monitor, control] = await Promise.all([connectRedis(url), connectRedis(url)]);
  let step: Step = { sent: new Map(), inScripts: new Map() };
  let script: string | undefined;
  let marker: { token: string; reached: (step: Step) => void } | undefined;
  await monitor.monitor((line: string) => {
    const match = /^\d+\.\d+ \[\d+ ([^\]]+)\] "([^"]*)"(?: "([^"]*)")?/.exec(line);
    if (!match) return;
    const [, client, command = '', first = ''] = match;
    const name = command.toUpperCase();
    if (client === 'lua') {
      if (script && !PERIODIC.has(script)) add(step.inScripts, `${script}: ${name}`);
      return;
    }
    // An EVAL is the script whose EVALSHA Redis did not know (NOSCRIPT) just
    // before; a FUNCTION LOAD comes between an FCALL that missed and its retry.
    if (name === 'EVALSHA' || name === 'FCALL') script = `script ${SCRIPT_NAMES.get(first) ?? first}`;
    else if (name !== 'EVAL' && name !== 'FUNCTION') script = undefined;
    if (marker && name === 'ECHO' && first === marker.token) {
      marker.reached(step);
      step = { sent: new Map(), inScripts: new Map() };
      marker = undefined;
      return;
    }
    if (!PERIODIC.has(script ?? name)) add(step.sent, script ?? name);
  });
  let seq = 0;
  const mark = async (): Promise<Step> => {
    const token = `count-${++seq}`;
    const reached = new Promise<Step>((resolve) => (marker = { token, reached: resolve }));
    await control.sendCommand(['ECHO', token]);
    return within(reached, 'MONITOR to show the marker', 5000);
  };
  await mark();
  return {
    mark,
    /** Whether the step under way has sent `what` (a command, or `script <name>`). */
    sent: (what: string) => step.sent.has(what),
    close() {
      // Closed already when the private Redis stopped first.
      for (const client of [monitor, control]) if (client.isOpen) client.destroy();
    },
  };
}

const sdp = (kind: string) => ({ type: kind, sdp: `v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=${kind}\r\n` });
const candidate = { candidate: 'candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host', sdpMid: '0', sdpMLineIndex: 0 };

/** A whole call set-up in `channel`, as bench/load/join.ts runs it. */
async function handshake(broadcaster: Socket, player: Socket, channel: string) {
  const peers = next(broadcaster, 'message', (m) => m.type === 'peers' && (m as { target?: string }).target === 'Studio');
  broadcaster.emit('publish', 'Studio', channel, STREAM);
  await peers;
  const noticed = nextMessage(broadcaster, 'peer');
  const offer = nextMessage(player, 'offer');
  player.emit('subscribe', 'Viewer', channel);
  await noticed;
  broadcaster.emit('messagePeer', { target: 'Viewer', type: 'offer', content: sdp('offer') });
  broadcaster.emit('messagePeer', { target: 'Viewer', type: 'candidate', candidate });
  broadcaster.emit('messagePeer', { target: 'Viewer', type: 'candidate', candidate });
  await offer;
  const answer = nextMessage(broadcaster, 'answer');
  let heard = 0;
  const candidates = new Promise<void>((resolve) =>
    broadcaster.on('message', (m: { type?: string }) => void (m.type === 'candidate' && ++heard === 2 && resolve())),
  );
  player.emit('messagePeer', { target: 'Studio', type: 'answer', content: sdp('answer') });
  player.emit('messagePeer', { target: 'Studio', type: 'candidate', candidate });
  player.emit('messagePeer', { target: 'Studio', type: 'candidate', candidate });
  await answer;
  await within(candidates, 'the two candidates');
  broadcaster.off('message');
}

function describeStep(name: string, step: Step) {
  const list = (counts: Map<string, number>) => [...counts].map(([what, n]) => `${what} ×${n}`).join(', ') || 'none';
  const sent = total(step.sent);
  const inside = total(step.inScripts);
  return `${name}: ${sent + inside} commands (${sent} sent: ${list(step.sent)}; ${inside} in scripts: ${list(step.inScripts)})`;
}

test('Redis commands per connect, handshake and disconnect', async (t) => {
  const redis = await privateRedis(t);
  if (!redis) return;
  // Closed within the test: the private Redis stops in its own after hook, and the server must leave it first.
  const server = await startServer(undefined, { REDIS_URL: redis.url, REDIS_PREFIX: 'count:' });
  try {
    await countCommands(t, server.url, redis.url);
  } finally {
    await server.close();
  }
});

async function countCommands(t: TestContext, url: string, redisUrl: string) {
  await eventually('the instance is ready', async () => (await get(url, '/ready')).status === 200);
  const counting = await tap(redisUrl);
  t.after(() => counting.close());
  // Every script used once before counting: Redis learns each on its first use.
  const warmUp = await connect(t, url, TOKEN);
  for (const channel of ['warm-up', 'warm-up 2']) {
    const peers = nextMessage(warmUp, 'peers');
    warmUp.emit('publish', 'Warm', channel, STREAM);
    await peers;
  }
  warmUp.close();
  await eventually('the warm-up connection released', () => counting.sent('script disconnect'));
  await counting.mark();

  const broadcaster = await connect(t, url, TOKEN);
  const player = await connect(t, url, TOKEN);
  const connected = await counting.mark();
  await handshake(broadcaster, player, 'first');
  const first = await counting.mark();
  const closed = nextMessage(player, 'close');
  await handshake(broadcaster, player, 'second');
  await closed;
  const second = await counting.mark();
  const left = nextMessage(broadcaster, 'close');
  player.close();
  await left;
  // The connection is released after the close goes out.
  await eventually('the connection released', () => counting.sent('script disconnect'));
  const gone = await counting.mark();

  const steps = { 'two connects': connected, 'first handshake': first, handshake: second, 'player disconnect': gone };
  for (const [name, step] of Object.entries(steps)) t.diagnostic(describeStep(name, step));
  const commands = (step: Step) => total(step.sent) + total(step.inScripts);
  // The figures the README gives; a change that costs Redis more shows here.
  assert.deepEqual(Object.fromEntries(Object.entries(steps).map(([name, step]) => [name, commands(step)])), {
    'two connects': 9,
    'first handshake': 15,
    handshake: 18,
    'player disconnect': 10,
  });
}
