// patches/ws+*.patch: when a client's TCP connection ends before it closes,
// ws ends its frame reader twice, and the second end() only builds an
// ERR_STREAM_ALREADY_FINISHED error (with its stack trace) that nobody
// reads. A mass disconnect paid for one per socket. The patch, applied by
// `npm ci` (postinstall: patch-package), skips the second end().
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import type { Writable } from 'node:stream';
import { connect } from './helpers/client';
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
