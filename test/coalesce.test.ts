// Packets engine.io sends together go out in one write to the TLS socket,
// in order and complete; a lone packet is written at once.
import assert from 'node:assert/strict';
import type { Socket as NetSocket } from 'node:net';
import { test } from 'node:test';
import { eventSchemas } from '../src/protocol';
import { connect, next } from './helpers/client';
import { startServer, TOKEN } from './helpers/server';
import { within } from './helpers/wait';

/** Counts the writes that reach the socket's stream implementation (one per write syscall at most). */
function countWrites(socket: NetSocket) {
  const counts = { writes: 0 };
  const stream = socket as unknown as { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void };
  const [write, writev] = [stream._write, stream._writev];
  stream._write = function (...args) {
    counts.writes++;
    return write.apply(this, args);
  };
  stream._writev = function (...args) {
    counts.writes++;
    return writev.apply(this, args);
  };
  return counts;
}

/** A relayed candidate, numbered: what it carries does not matter to the packets. */
const candidate = (n: number) => eventSchemas({ maxNameLength: 128 }).message.parse([{ type: 'candidate', n }])[0];

test('packets sent to one socket in the same turn leave in two writes, not one per packet', async (t) => {
  const { url, server } = await startServer(t);
  const client = await connect(t, url, TOKEN);
  const socket = server.io.sockets.sockets.get(client.id as string);
  assert.ok(socket, 'the server knows the socket');
  const counts = countWrites(socket.conn.request.socket);

  const received = within(
    new Promise<number[]>((resolve) => {
      const seen: number[] = [];
      client.on('message', (m: { n?: number }) => {
        if (typeof m.n === 'number') seen.push(m.n);
        if (seen.length === 5) resolve(seen);
      });
    }),
    'five messages',
  );
  // The first packet is written at once; the four queued behind it are sent together.
  for (let n = 1; n <= 5; n++) socket.emit('message', candidate(n));
  assert.deepEqual(await received, [1, 2, 3, 4, 5]);
  assert.equal(counts.writes, 2);

  // A lone packet later on is written on its own, at once.
  const lone = next(client, 'message');
  socket.emit('message', candidate(6));
  assert.equal((await lone).n, 6);
  assert.equal(counts.writes, 3);
});
