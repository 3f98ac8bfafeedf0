// patches/ws+*.patch, applied by `npm ci` (postinstall: patch-package):
// - when a client's TCP connection ends before it closes, ws ends its frame
//   reader twice, and the second end() only builds an ERR_STREAM_ALREADY_FINISHED
//   error (with its stack trace) that nobody reads. A mass disconnect paid for
//   one per socket. The patch skips the second end().
// - a server's WebSocket ends its socket when the peer's end was read, 64 per
//   turn of the event loop: thousands of peers dropping at once no longer
//   close all their sockets and WebSockets in the one turn that read their EOF.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import type { Writable } from 'node:stream';
import { broadcastAndWatch, connect, nextMessage, type Client } from './helpers/client';
import { startServer, TOKEN } from './helpers/server';
import { eventually } from './helpers/wait';

// The module engine.io loads: the one the server's WebSockets use.
const requireFromEngine = createRequire(require.resolve('engine.io'));
const { Receiver } = requireFromEngine('ws') as { Receiver: { prototype: Writable } };

test('closing WebSockets end their frame reader once', async (t) => {
  const end = Receiver.prototype.end;
  let ends = 0;
  let endsAfterEnded = 0;
  Receiver.prototype.end = function (this: Writable, ...args: Parameters<Writable['end']>) {
    ends++;
    if (this.writableEnded) endsAfterEnded++;
    return end.apply(this, args);
  } as Writable['end'];
  t.after(() => (Receiver.prototype.end = end));

  const server = await startServer(t);
  const clients = await Promise.all(Array.from({ length: 20 }, () => connect(t, server.url, TOKEN)));
  const engine = server.server.io.engine;
  assert.equal(engine.clientsCount, 20);
  // Half close as the client does (a close frame, then the TCP end), half
  // drop their TCP connection with no close frame, as a killed tab does.
  for (const [n, client] of clients.entries()) {
    if (n % 2) client.close();
    else (client.io.engine.transport as unknown as { ws: { _socket: { end(): void } } }).ws._socket.end();
  }
  await eventually('every connection closed', () => engine.clientsCount === 0);
  await eventually('every frame reader ended', () => ends >= 20);
  assert.equal(endsAfterEnded, 0);
});

// The TCP connection of a client that closes without a close frame, as a killed tab's.
const dropConnection = (client: Client) => (client.io.engine.transport as unknown as { ws: { _socket: { end(): void } } }).ws._socket.end();

test('a burst of dropped connections closes over several turns, timers running between, every peer cleaned up', async (t) => {
  const server = await startServer(t);
  const pairs = 150;
  const calls = [];
  for (let n = 0; n < pairs; n++) calls.push(await broadcastAndWatch(t, server.url, TOKEN, { channel: `burst-${n}` }));
  const io = server.server.io;
  assert.equal(io.engine.clientsCount, 2 * pairs);

  // Turns of the event loop (one immediate each) and timer callbacks, counted at each disconnect.
  let turns = 0;
  let timerTicks = 0;
  let counting = true;
  const countTurn = () => {
    turns++;
    if (counting) setImmediate(countTurn);
  };
  setImmediate(countTurn);
  const timer = setInterval(() => timerTicks++, 1);
  t.after(() => {
    counting = false;
    clearInterval(timer);
  });
  const disconnects: { turn: number; timerTick: number }[] = [];
  for (const socket of io.of('/').sockets.values()) socket.on('disconnect', () => disconnects.push({ turn: turns, timerTick: timerTicks }));

  const closes = calls.map(({ broadcaster }) => nextMessage(broadcaster, 'close', 10_000));
  for (const { player } of calls) dropConnection(player);
  const heard = await Promise.all(closes);

  // Every broadcaster heard its player leave, and only the players left.
  assert.deepEqual(
    heard.map((m) => m.payload),
    calls.map((_, n) => ({ action: 'close', message: `Viewer left @burst-${n}` })),
  );
  await eventually('every dropped connection closed', () => io.engine.clientsCount === pairs);
  assert.equal(io.of('/').sockets.size, pairs);
  assert.equal(disconnects.length, pairs);

  const perTurn = new Map<number, number>();
  for (const { turn } of disconnects) perTurn.set(turn, (perTurn.get(turn) ?? 0) + 1);
  assert.ok(perTurn.size >= Math.ceil(pairs / 64), `closed in ${perTurn.size} turns`);
  assert.ok(Math.max(...perTurn.values()) <= 64, `at most ${Math.max(...perTurn.values())} in one turn`);
  const first = disconnects[0] as { timerTick: number };
  const last = disconnects.at(-1) as { timerTick: number };
  assert.ok(last.timerTick > first.timerTick, 'a timer ran while the burst closed');
});
