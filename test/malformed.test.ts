// Malformed and hostile events: each is refused or dropped, the process stays
// up, nothing leaks into shared state, and an honest pair still signals.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { broadcastAndWatch, connect, next, nextMessage, STREAM } from './helpers/client';
import { get } from './helpers/api';
import { startServer, TOKEN } from './helpers/server';

function deep(levels: number): Record<string, unknown> {
  let value: Record<string, unknown> = { leaf: true };
  for (let i = 0; i < levels; i++) value = { a: value };
  return value;
}

type ErrorEvent = 'publishError' | 'subscribeError';
/** What the attacker gets back: one error event from `_server_`, the peers list of a publish that stands, or nothing at all. */
type Outcome = [ErrorEvent, to: string, message: string] | 'peers' | null;
const publishError = (to: string, message: string): Outcome => ['publishError', to, `Invalid publish: ${message}`];
const subscribeError = (to: string, message: string): Outcome => ['subscribeError', to, `Invalid subscribe: ${message}`];
// Answers name the sender by at most MAX_NAME_LENGTH characters of what it sent.
const LONG_NAME = 'p'.repeat(10_000);

/** [description, event, args, its own outcome] */
const malformed: [string, string, unknown[], Outcome][] = [
  [
    'publish with no arguments',
    'publish',
    [],
    publishError(
      '',
      'argument 0: Invalid input: expected string, received undefined; argument 1: Invalid input: expected string, received undefined',
    ),
  ],
  [
    'publish with nulls',
    'publish',
    [null, null, null],
    publishError(
      '',
      'argument 0: Invalid input: expected string, received null; argument 1: Invalid input: expected string, received null',
    ),
  ],
  [
    'publish with a numeric peerID',
    'publish',
    [123, 'ch'],
    publishError('', 'argument 0: Invalid input: expected string, received number'),
  ],
  [
    'publish with an object channel',
    'publish',
    ['p', { $gt: '' }],
    publishError('p', 'argument 1: Invalid input: expected string, received object'),
  ],
  ['publish with string params', 'publish', ['p', 'ch', 'not-an-object'], publishError('p', 'argument 2: Invalid input')],
  [
    'publish with a non-numeric width',
    'publish',
    ['p', 'ch', { ...STREAM, width: 'wide' }],
    publishError('p', 'argument 2: Invalid input'),
  ],
  ['publish with a negative bitrate', 'publish', ['p', 'ch', { ...STREAM, bitrate: -5 }], publishError('p', 'argument 2: Invalid input')],
  [
    'publish with an absurd frame rate',
    'publish',
    ['p', 'ch', { ...STREAM, frameRate: 1e12 }],
    publishError('p', 'argument 2: Invalid input'),
  ],
  [
    'publish with an empty peerID',
    'publish',
    ['', 'ch', STREAM],
    publishError('', 'argument 0: Too small: expected string to have >=1 characters'),
  ],
  [
    'publish with a 10 KB peerID',
    'publish',
    [LONG_NAME, 'ch', STREAM],
    publishError(LONG_NAME.slice(0, 128), 'argument 0: Too big: expected string to have <=128 characters'),
  ],
  ['publish with 1,000 extra arguments', 'publish', ['Attacker', 'honest', STREAM, ...Array.from({ length: 1000 }, (_, i) => i)], 'peers'],
  [
    'publish with a binary peerID',
    'publish',
    [Buffer.from('peer'), 'ch'],
    publishError('', 'argument 0: Invalid input: expected string, received Buffer'),
  ],
  ['subscribe with no arguments', 'subscribe', [], subscribeError('', 'argument 0: Invalid input: expected string, received undefined')],
  [
    'subscribe with an object peerID',
    'subscribe',
    [{ toString: 'x' }, 'ch'],
    subscribeError('', 'argument 0: Invalid input: expected string, received object'),
  ],
  ['subscribe with an array channel', 'subscribe', ['p', ['a', 'b']], subscribeError('p', 'argument 1: Invalid input')],
  ['subscribe with null', 'subscribe', [null], subscribeError('', 'argument 0: Invalid input: expected string, received null')],
  ['messagePeer with no arguments', 'messagePeer', [], null],
  ['messagePeer with null', 'messagePeer', [null], null],
  ['messagePeer with a string', 'messagePeer', ['offer'], null],
  ['messagePeer without target', 'messagePeer', [{ type: 'offer' }], null],
  ['messagePeer with a numeric target', 'messagePeer', [{ type: 'offer', target: 7 }], null],
  ['messagePeer to an unknown peer', 'messagePeer', [{ type: 'offer', target: 'nobody' }], null],
  [
    'messagePeer with a prototype-pollution key',
    'messagePeer',
    [JSON.parse('{"target":"Viewer","type":"x","__proto__":{"polluted":true}}')],
    null,
  ],
  ['messagePeer with 2,000 levels of nesting', 'messagePeer', [{ target: 'Viewer', type: 'deep', content: deep(2000) }], null],
  ['message with null', 'message', [null], null],
  ['message with a number', 'message', [42], null],
  [
    'message with a prototype-pollution key',
    'message',
    [JSON.parse('{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}')],
    null,
  ],
  ['an unknown event', 'shutdown', ['now'], null],
];

test(`${malformed.length} malformed events each get their own answer, or none, and an honest pair still signals`, async (t) => {
  // No rate limit in the way: each case is followed by a round trip.
  const { url } = await startServer(t, { RATE_EVENTS_PER_SECOND: '100000' });
  // The attacker registers first so its relay events reach the handlers; a
  // victim in the attacker's channel receives what is relayed to it.
  const { broadcaster: attacker, player: victim } = await broadcastAndWatch(t, url, TOKEN, {
    channel: 'honest',
    broadcaster: 'Attacker',
  });

  for (const [n, [description, event, args, expected]] of malformed.entries()) {
    // Everything the attacker gets back: error events whole, messages by type.
    const got: unknown[] = [];
    const record = (name: string, payload: { type?: unknown; to?: unknown }) => {
      if (name === 'message') got.push(['message', payload?.type]);
      else if (!(name === 'subscribeError' && payload?.to === `round-trip-${n}`)) got.push([name, payload]);
    };
    attacker.onAny(record);
    attacker.emit(event, ...args);
    // The server handles a socket's events in order: once this invalid
    // subscribe is answered, any answer to the case has come, so "nothing" is proven.
    const answered = next(attacker, 'subscribeError', (e) => e.to === `round-trip-${n}`);
    attacker.emit('subscribe', `round-trip-${n}`, []);
    await answered;
    attacker.offAny(record);
    const want =
      expected === null
        ? []
        : expected === 'peers'
          ? [['message', 'peers']]
          : [[expected[0], { from: '_server_', to: expected[1], message: expected[2] }]];
    assert.deepEqual(got, want, description);
  }
  assert.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype is untouched');
  const marker = next(victim, 'message', (m) => m.type === 'marker');
  attacker.emit('messagePeer', { target: 'Viewer', type: 'marker' });
  await marker;
  // The victim got the relayed messages, with the attacker's registered name, and is still connected.
  const relayed = victim.messages.filter((m) => m.type === 'x' || m.type === 'deep');
  assert.equal(relayed.length, 2);
  assert.ok(relayed.every((m) => m.from === 'Attacker'));
  assert.ok(victim.connected);

  await assertHonestPairWorks(t, url, 'after-malformed');
});

test('MAX_NAME_LENGTH=16: a 16-character peerID and channel are fine, 17 characters are refused', async (t) => {
  const { url } = await startServer(t, { MAX_NAME_LENGTH: '16' });
  const socket = await connect(t, url, TOKEN);
  const sixteen = 'n'.repeat(16);
  const published = nextMessage(socket, 'peers');
  socket.emit('publish', sixteen, sixteen, STREAM);
  assert.equal((await published).target, sixteen);
  for (const [args, message] of [
    [['n'.repeat(17), 'ch', STREAM], 'Invalid publish: argument 0: Too big: expected string to have <=16 characters'],
    [['p', 'c'.repeat(17), STREAM], 'Invalid publish: argument 1: Too big: expected string to have <=16 characters'],
  ] as const) {
    const refused = next<{ message: string }>(socket, 'publishError');
    socket.emit('publish', ...args);
    assert.equal((await refused).message, message);
  }
});

test('names like __proto__ and constructor are just names', async (t) => {
  const { url } = await startServer(t);
  const { broadcaster, player, notice } = await broadcastAndWatch(t, url, TOKEN, {
    channel: 'constructor',
    broadcaster: '__proto__',
    player: 'hasOwnProperty',
  });
  assert.equal(notice.peerID, 'hasOwnProperty');
  const offered = nextMessage(player, 'offer');
  broadcaster.emit('messagePeer', { target: 'hasOwnProperty', type: 'offer', content: { sdp: 'v=0' } });
  assert.equal((await offered).from, '__proto__');
  const connections = (await get(url, '/connections?apikey=test-api-key')).json<[string, Record<string, unknown>][]>();
  assert.deepEqual(
    connections.map(([name, peers]) => [name, Object.keys(peers).sort()]),
    [['constructor', ['__proto__', 'hasOwnProperty']]],
  );
});

test('an oversized (2 MB) message disconnects only its sender', async (t) => {
  const { url } = await startServer(t);
  const attacker = await connect(t, url, TOKEN);
  const gone = next(attacker, 'disconnect');
  attacker.emit('messagePeer', { target: 'x', type: 'offer', content: 'x'.repeat(2 * 1024 * 1024) });
  await gone;
  await assertHonestPairWorks(t, url, 'after-oversized');
});

test('a packet that is not Socket.IO disconnects only its sender', async (t) => {
  const { url } = await startServer(t);
  const attacker = await connect(t, url, TOKEN);
  const gone = next(attacker, 'disconnect');
  (attacker.io.engine as unknown as { write(data: string): void }).write('42["publish",{"unterminated":');
  await gone;
  await assertHonestPairWorks(t, url, 'after-garbage');
});

async function assertHonestPairWorks(t: Parameters<typeof connect>[0], url: string, channel: string) {
  const { broadcaster, player } = await broadcastAndWatch(t, url, TOKEN, { channel });
  const offered = nextMessage(player, 'offer');
  broadcaster.emit('messagePeer', { from: 'Studio', target: 'Viewer', type: 'offer', content: { type: 'offer', sdp: 'v=0' } });
  assert.equal((await offered).from, 'Studio');
  const answered = nextMessage(broadcaster, 'answer');
  player.emit('messagePeer', { from: 'Viewer', target: 'Studio', type: 'answer', content: { type: 'answer', sdp: 'v=0' } });
  assert.equal((await answered).from, 'Viewer');
}
