// How the server stops, as a supervisor (pm2, systemd, docker) sees it:
// SIGINT and SIGTERM alike; a drain that lets calls in progress finish; a
// client that stops reading cannot hold the shutdown; a shutdown that cannot
// finish its clean-up exits non-zero.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import WebSocket from 'ws';
import { loadConfig } from '../src/config';
import { get } from './helpers/api';
import { broadcastAndWatch, nextMessage, offerAndAnswer, refusal } from './helpers/client';
import { spawnServer, type ServerProcess } from './helpers/process';
import { TOKEN } from './helpers/server';
import { testCertificate } from './helpers/tls';

const closedBy = (spawned: ServerProcess) => spawned.waitForLog('server closed');

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`${signal}: peers hear their channel close, the clean-up runs, the exit code is 0`, { timeout: 60_000 }, async (t) => {
    const spawned = await spawnServer(t);
    const { player } = await broadcastAndWatch(t, spawned.url, TOKEN, { channel: `stop-${signal}` });
    const closed = nextMessage(player, 'close');
    spawned.child.kill(signal);
    await closed;
    assert.equal(await spawned.exited, 0);
    assert.ok(spawned.lines.some((l) => l.msg === 'shutting down' && l.signal === signal));
    assert.ok(
      spawned.lines.some((l) => l.msg === 'server closed'),
      'the clean-up finished',
    );
  });
}

/**
 * A Socket.IO client spoken by hand over a raw WebSocket, so that it can stop
 * reading: it subscribes to `channel` as `peerID`, then pauses its socket.
 */
async function stuckPlayer(t: TestContext, port: number, channel: string, peerID: string) {
  const ws = new WebSocket(`wss://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`, { ca: testCertificate().ca });
  t.after(() => ws.terminate());
  await new Promise<void>((resolve, reject) => {
    ws.on('error', reject);
    ws.on('message', (data) => {
      const text = data.toString();
      if (text.startsWith('0'))
        ws.send(`40${JSON.stringify({ token: TOKEN })}`); // Engine.IO open: Socket.IO connect
      else if (text.startsWith('40'))
        resolve(); // connected
      else if (text === '2') ws.send('3'); // ping, pong
    });
  });
  ws.send(`42${JSON.stringify(['subscribe', peerID, channel])}`);
  return ws;
}

test('a client that stops reading cannot hold the shutdown: it is cut, the clean-up finishes, exit 0', { timeout: 60_000 }, async (t) => {
  const shutdownTimeoutMs = 3000;
  const spawned = await spawnServer(t, {
    SHUTDOWN_TIMEOUT_MS: String(shutdownTimeoutMs),
    MAX_MESSAGE_BYTES: String(2 * 1024 * 1024),
    // Room for everything below: the client stays connected, unread, until the shutdown.
    MAX_OUTGOING_BYTES: String(64 * 1024 * 1024),
    RATE_EVENTS_PER_SECOND: '10000',
  });
  const { broadcaster, player } = await broadcastAndWatch(t, spawned.url, TOKEN, { channel: 'stuck' });
  const noticed = nextMessage(broadcaster, 'peer');
  const stuck = await stuckPlayer(t, spawned.port, 'stuck', 'Stuck');
  await noticed;
  stuck.pause();

  // Far more than the kernel's socket buffers hold: the server is left with
  // data it cannot write. The last message, to a reading player, arrives
  // once the server has handled (queued) every one before it.
  const text = 'x'.repeat(1024 * 1024);
  for (let i = 0; i < 24; i++) broadcaster.emit('messagePeer', { target: 'Stuck', type: 'note', text });
  const marked = nextMessage(player, 'marker', 20_000);
  broadcaster.emit('messagePeer', { target: 'Viewer', type: 'marker' });
  await marked;

  const started = performance.now();
  spawned.child.kill('SIGTERM');
  assert.equal(await spawned.exited, 0, 'a shutdown that finished is a clean one');
  const took = performance.now() - started;
  assert.ok(took < shutdownTimeoutMs + 1000, `exited after ${Math.round(took)} ms`);
  assert.ok(spawned.lines.some((l) => l.msg === 'connections that did not close in time were cut'));
  assert.ok(
    spawned.lines.some((l) => l.msg === 'server closed'),
    'the clean-up finished',
  );
});

test('a shutdown that cannot finish its clean-up exits non-zero within its bound', { timeout: 60_000 }, async (t) => {
  // A database that accepts connections and never answers: the accounts'
  // first load is still waiting when the shutdown starts, and never ends.
  const held = new Set<Socket>();
  const database = createServer((socket) => void held.add(socket));
  database.listen(0, '127.0.0.1');
  await once(database, 'listening');
  t.after(() => {
    for (const socket of held) socket.destroy();
    database.close();
  });
  const dbPort = (database.address() as { port: number }).port;
  const spawned = await spawnServer(t, {
    DB_HOST: '127.0.0.1',
    DB_PORT: String(dbPort),
    DB_NAME: 'never',
    SHUTDOWN_TIMEOUT_MS: '1000',
  });
  await once(database, 'connection');
  spawned.child.kill('SIGTERM');
  assert.equal(await spawned.exited, 1, 'a supervisor can tell it from a clean exit');
  assert.ok(spawned.lines.some((l) => l.msg === 'shutdown took too long, exiting without finishing the clean-up'));
  assert.ok(!spawned.lines.some((l) => l.msg === 'server closed'));
});

test(
  'with DRAIN_TIMEOUT_MS, a call in progress goes on after SIGTERM while the port is closed to new connections',
  { timeout: 60_000 },
  async (t) => {
    const spawned = await spawnServer(t, { DRAIN_TIMEOUT_MS: '120000' });
    const { url } = spawned;
    const { broadcaster, player } = await broadcastAndWatch(t, url, TOKEN, { channel: 'drain' });
    spawned.child.kill('SIGINT');
    await spawned.waitForLog('draining: established sockets go on until they end');
    assert.notEqual(await refusal(url, { token: TOKEN }), 'connected', 'no new connection here: another instance takes it');
    await assert.rejects(get(url, '/health'), 'the port is closed');

    // The call's signaling still flows both ways.
    await offerAndAnswer(broadcaster, player);
    assert.ok(broadcaster.connected && player.connected);

    // Once the call ends, the process finishes at once.
    broadcaster.close();
    player.close();
    assert.equal(await spawned.exited, 0);
    await closedBy(spawned);
  },
);

test('a second signal ends a drain: the remaining peers hear their channel close', { timeout: 60_000 }, async (t) => {
  const spawned = await spawnServer(t, { DRAIN_TIMEOUT_MS: '120000' });
  const { player } = await broadcastAndWatch(t, spawned.url, TOKEN, { channel: 'drain-cut' });
  spawned.child.kill('SIGTERM');
  await spawned.waitForLog('draining: established sockets go on until they end');
  const closed = nextMessage(player, 'close');
  spawned.child.kill('SIGTERM');
  await closed;
  assert.equal(await spawned.exited, 0);
  await closedBy(spawned);
});

test('draining is for clusters: DRAIN_TIMEOUT_MS defaults to 10 minutes with REDIS_URL, to 0 without', () => {
  assert.equal(loadConfig({}).drainTimeoutMs, 0);
  assert.equal(loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379' }).drainTimeoutMs, 600_000);
  assert.equal(loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379', DRAIN_TIMEOUT_MS: '0' }).drainTimeoutMs, 0);
  assert.throws(() => loadConfig({ DRAIN_TIMEOUT_MS: '-1' }), { message: /^DRAIN_TIMEOUT_MS must be a number >= 0/ });
});
