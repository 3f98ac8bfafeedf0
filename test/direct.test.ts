// Messages straight to one instance (src/channels/redis/direct.ts), on a
// Pub/Sub of the test's own: what arrives, and in which order, when PUBLISH
// reaches the target, reaches no one, or answers late.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import type { DirectPubSub } from '../src/channels/redis/connection';
import { createDirectLine, directChannel, FALLBACK_HOLD_MS } from '../src/channels/redis/direct';
import { manualClock } from './helpers/clock';

/** A PUBLISH whose answer the test gives: how many subscribers got it. */
interface Published {
  channel: string;
  message: Buffer;
  answer(receivers: number): Promise<void>;
}

function fakePubSub() {
  const published: Published[] = [];
  const listeners = new Map<string, (message: Buffer) => void>();
  const pubsub: DirectPubSub = {
    publish: (channel, message) =>
      new Promise<number>((resolve) => {
        published.push({
          channel,
          message,
          async answer(receivers) {
            if (receivers > 0) listeners.get(channel)?.(message);
            resolve(receivers);
            // Lets the sender's continuation run (the next batch, the fallbacks).
            for (let i = 0; i < 10; i++) await Promise.resolve();
          },
        });
      }),
    subscribe: async (channel, listener) => void listeners.set(channel, listener),
  };
  return { pubsub, published };
}

/** A sender and a receiver instance on one fake Redis; what the receiver's sockets got, and what fell back, in one list. */
async function pair() {
  const { pubsub, published } = fakePubSub();
  const clock = manualClock();
  const log = pino({ level: 'silent' });
  const sender = createDirectLine({ pubsub, prefix: 't:', instanceId: 'A', clock, log });
  const receiver = createDirectLine({ pubsub, prefix: 't:', instanceId: 'B', clock, log });
  const arrived: string[] = [];
  const payloads: unknown[][] = [];
  await receiver.listen((socketId, event, args) => {
    arrived.push(`direct ${socketId} ${event} ${(args[0] as { n: number }).n}`);
    payloads.push(args);
  });
  const send = (n: number, extra: Record<string, unknown> = {}) =>
    sender.send('B', 'socket-1', 'message', [{ n, ...extra }], () => arrived.push(`fallback socket-1 message ${n}`));
  return { sender, published, clock, arrived, payloads, send };
}

test('messages sent while a PUBLISH is in flight go together in the next one, in order', async () => {
  const { published, arrived, send } = await pair();
  send(1);
  send(2);
  send(3);
  assert.equal(published.length, 1, 'one PUBLISH in flight per target instance');
  assert.equal(published[0]?.channel, directChannel('t:', 'B'));
  await published[0]?.answer(1);
  assert.equal(published.length, 2, 'the two waiting messages in one PUBLISH');
  await published[1]?.answer(1);
  assert.deepEqual(arrived, ['direct socket-1 message 1', 'direct socket-1 message 2', 'direct socket-1 message 3']);
});

test('a PUBLISH that reaches no one falls back with everything behind it, in order, and the instance stays on the fallback a while', async () => {
  const { published, arrived, send, clock } = await pair();
  send(1);
  await published[0]?.answer(1);
  send(2);
  send(3);
  send(4);
  await published[1]?.answer(0);
  // 3 and 4 waited behind 2, so the subscription could not come back between them.
  assert.equal(published.length, 2, 'nothing published after the one that reached no one');
  send(5);
  clock.advance(FALLBACK_HOLD_MS - 1);
  send(6);
  assert.equal(published.length, 2);
  clock.advance(1);
  send(7);
  assert.equal(published.length, 3, 'direct again once the hold is over');
  await published[2]?.answer(1);
  assert.deepEqual(arrived, [
    'direct socket-1 message 1',
    'fallback socket-1 message 2',
    'fallback socket-1 message 3',
    'fallback socket-1 message 4',
    'fallback socket-1 message 5',
    'fallback socket-1 message 6',
    'direct socket-1 message 7',
  ]);
});

test('a PUBLISH that fails falls back like one that reached no one', async () => {
  const clock = manualClock();
  const arrived: number[] = [];
  const pubsub: DirectPubSub = {
    publish: () => Promise.reject(new Error('The client is closed')),
    subscribe: async () => undefined,
  };
  const line = createDirectLine({ pubsub, prefix: 't:', instanceId: 'A', clock, log: pino({ level: 'silent' }) });
  line.send('B', 's', 'message', [{}], () => arrived.push(1));
  line.send('B', 's', 'message', [{}], () => arrived.push(2));
  await new Promise((resolve) => setImmediate(resolve));
  line.send('B', 's', 'message', [{}], () => arrived.push(3));
  assert.deepEqual(arrived, [1, 2, 3]);
});

test('a message arrives as sent: nested values, unicode and binary', async () => {
  const { published, payloads, send } = await pair();
  const blob = Buffer.from([0, 1, 2, 255]);
  const message = { type: 'offer', from: 'Studio', content: { sdp: 'v=0\r\na=é ✓\r\n', list: [1, null, true] }, blob };
  send(1, message);
  send(2, { type: 'candidate' });
  await published[0]?.answer(1);
  await published[1]?.answer(1);
  assert.deepEqual(payloads[0], [{ n: 1, ...message }]);
  assert.ok(Buffer.isBuffer((payloads[0]?.[0] as { blob: unknown }).blob));
  assert.deepEqual(payloads[1], [{ n: 2, type: 'candidate' }]);
});

test('messages waiting behind a PUBLISH that does not answer are bounded', async () => {
  const { published, send } = await pair();
  const big = 'x'.repeat(1024 * 1024);
  send(0);
  for (let n = 1; n <= 12; n++) send(n, { big });
  await published[0]?.answer(1);
  const batch = published[1]?.message.length ?? 0;
  assert.ok(batch < 9 * 1024 * 1024, `the waiting batch holds at most 8 MiB (${batch} bytes)`);
});
