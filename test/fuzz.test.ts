// Property-based fuzzing of every client event and the handshake. After each
// batch of random events the server must still relay for an honest pair, and
// once every socket is gone the registry and the usage counters are at zero.
// Seeded: FUZZ_SEED=<n> replays a run; the seed is printed either way.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { get } from './helpers/api';
import { broadcastAndWatch, connectClient, next, nextMessage, refusal, type Client } from './helpers/client';
import { eventSchemas } from '../src/protocol';
import { API_KEY, startServer, TOKEN } from './helpers/server';

const seed = Number(process.env.FUZZ_SEED ?? 20261125);
const RUNS = 100;
const EVENTS_PER_RUN = 100;

const names = fc.oneof(
  fc.constantFrom('Studio', 'Viewer', '__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'VideoWhisper', ''),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ minLength: 120, maxLength: 140 }),
);
const numbers = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.constantFrom(0, -1, 1e9, 1e10, Number.MAX_SAFE_INTEGER),
  fc.string({ maxLength: 8 }),
);
const streams = fc.record(
  { width: numbers, height: numbers, bitrate: numbers, frameRate: numbers, framerate: numbers, audioBitrate: numbers },
  { requiredKeys: [] },
);
const anything = fc.anything({ maxDepth: 4, maxKeys: 6, withNullPrototype: true, withBigInt: false, withMap: false, withSet: false });
const pollution = fc.constantFrom(
  JSON.parse('{"__proto__":{"polluted":true}}') as unknown,
  JSON.parse('{"constructor":{"prototype":{"polluted":true}}}') as unknown,
  JSON.parse('{"target":"__proto__","type":"offer","__proto__":{"polluted":true}}') as unknown,
);
const peerMessages = fc.record(
  {
    target: fc.oneof(names, anything),
    type: fc.oneof(fc.constantFrom('offer', 'answer', 'candidate'), anything),
    from: names,
    content: anything,
  },
  { requiredKeys: [] },
);
const events = fc.oneof(
  fc.tuple(fc.constant('publish'), fc.array(fc.oneof(names, streams, anything), { maxLength: 4 })),
  fc.tuple(fc.constant('publish'), fc.tuple(names, names, streams)),
  fc.tuple(fc.constant('subscribe'), fc.array(fc.oneof(names, anything), { maxLength: 3 })),
  fc.tuple(fc.constant('subscribe'), fc.tuple(names, names)),
  fc.tuple(fc.constant('messagePeer'), fc.array(fc.oneof(peerMessages, pollution, anything), { maxLength: 2 })),
  fc.tuple(fc.constant('message'), fc.array(fc.oneof(peerMessages, pollution, anything), { maxLength: 2 })),
  fc.tuple(
    fc.oneof(fc.constantFrom('disconnect', 'connect', 'error', 'newListener'), fc.string({ maxLength: 12 })),
    fc.array(anything, { maxLength: 2 }),
  ),
);
const auths = fc.oneof(
  anything,
  fc.record({ token: fc.oneof(names, anything), account: anything, user: anything, pin: anything }, { requiredKeys: [] }),
  pollution,
);

test(`fuzz: ${RUNS * EVENTS_PER_RUN} random events and ${RUNS} random handshakes leave the server serving and the registry empty`, async (t) => {
  // A high event rate: the fuzzer measures robustness, not the rate limit.
  const { url, server } = await startServer(t, { RATE_EVENTS_PER_SECOND: '100000', RATE_FAILED_AUTH_PER_MINUTE: '100000' });
  const { broadcaster, player } = await broadcastAndWatch(t, url, TOKEN, {
    channel: 'honest-channel',
    broadcaster: 'Honest',
    player: 'HonestViewer',
    stream: { width: 640, height: 360 },
  });
  let sent = 0;

  t.diagnostic(`fuzz seed ${seed} (FUZZ_SEED=${seed} replays this run)`);
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(events, { minLength: EVENTS_PER_RUN, maxLength: EVENTS_PER_RUN }), auths, async (batch, auth) => {
        const outcome = await refusal(url, auth as Record<string, unknown>);
        assert.ok(['connected', 'closed', 'ERROR: Authentication error'].includes(outcome), outcome);
        const fuzzer: Client = connectClient(url, { token: TOKEN });
        await next(fuzzer, 'connect');
        let gone = false;
        fuzzer.once('disconnect', () => (gone = true));
        // Raw Socket.IO EVENT packets, so reserved names ('connect', 'disconnect') go out too.
        const engine = fuzzer.io.engine as unknown as { write(data: string): void };
        for (const [event, args] of batch) {
          if (gone) break;
          engine.write(`42${JSON.stringify([event, ...(args as unknown[])])}`);
          sent++;
        }
        // The server handles a socket's events in order: once this publish is
        // answered (or the socket was cut off for an oversized packet), every
        // event above has been handled.
        if (!gone) {
          const done = Promise.race([nextMessage(fuzzer, 'peers'), next(fuzzer, 'disconnect')]);
          fuzzer.emit('publish', 'FuzzBarrier', 'fuzz-barrier', {});
          await done;
        }
        fuzzer.close();
        // The honest pair still signals.
        const offered = next(player, 'message', (m) => m.type === 'offer' && m.from === 'Honest');
        broadcaster.emit('messagePeer', { target: 'HonestViewer', type: 'offer', content: { type: 'offer', sdp: 'v=0' } });
        await offered;
        assert.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype is untouched');
      }),
      { seed, numRuns: RUNS, endOnFailure: true, includeErrorInReport: true },
    );
  } catch (err) {
    console.error(`fuzz failed with seed ${seed}: rerun with FUZZ_SEED=${seed}`);
    throw err;
  }
  t.diagnostic(`${sent} fuzz events sent`);
  assert.ok(sent >= RUNS * EVENTS_PER_RUN * 0.9, `${sent} events were sent`);

  broadcaster.disconnect();
  player.disconnect();
  // Every socket is gone: nothing may be left behind.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { connections, channels, stats } = await server.registry.snapshot();
    const usage = stats.map(([, u]) => u.connections + u.bitrate + u.audioBitrate + u.players + u.broadcasters);
    if (connections.length === 0 && channels.length === 0 && usage.every((u) => u === 0)) break;
    assert.ok(Date.now() < deadline, `registry not drained: ${JSON.stringify({ connections, channels, stats }).slice(0, 500)}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
  const viaApi = (await get(url, `/connections?apikey=${API_KEY}`)).json<unknown[]>();
  assert.deepEqual(viaApi, []);
});

test('the hand-written messagePeer check accepts exactly what the messagePeer schema accepts', () => {
  const schemas = eventSchemas({ maxNameLength: 128 });
  // Names and types around their length limits (128 and 64) as well, in
  // UTF-16 units and in code points: astral characters (emoji) are two units
  // but one character, and a lone surrogate is one of each.
  const astral = fc.integer({ min: 0x10000, max: 0x10ffff }).map((c) => String.fromCodePoint(c));
  const mixed = fc.oneof(astral, fc.constantFrom('a', '\u00e9', '\ud83d', '\ude00'), fc.string({ unit: 'binary', maxLength: 1 }));
  const around = (limit: number) =>
    fc.oneof(
      fc.string({ minLength: limit - 8, maxLength: limit + 8 }),
      fc.string({ unit: astral, minLength: limit / 2 - 4, maxLength: limit + 4 }),
      fc.string({ unit: mixed, minLength: limit - 8, maxLength: 2 * limit + 8 }),
    );
  const nearLimits = fc.record({ target: around(128), type: around(64) }, { requiredKeys: [] });
  const args = fc.array(fc.oneof(peerMessages, nearLimits, pollution, anything, fc.array(anything, { maxLength: 2 })), { maxLength: 2 });
  fc.assert(
    fc.property(args, (a) => {
      const byHand = schemas.peerMessage(a);
      const bySchema = schemas.messagePeer.safeParse(a);
      assert.equal(byHand !== undefined, bySchema.success);
      // What is relayed is the client's own object, not a copy.
      if (byHand) assert.equal(byHand, a[0]);
    }),
    { seed, numRuns: 20_000 },
  );
});
