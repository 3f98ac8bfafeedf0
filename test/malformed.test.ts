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

/** [description, event, args, the error event it must get (or none)] */
const malformed: [string, string, unknown[], 'publishError' | 'subscribeError' | null][] = [
  ['publish with no arguments', 'publish', [], 'publishError'],
  ['publish with nulls', 'publish', [null, null, null], 'publishError'],
  ['publish with a numeric peerID', 'publish', [123, 'ch'], 'publishError'],
  ['publish with an object channel', 'publish', ['p', { $gt: '' }], 'publishError'],
  ['publish with string params', 'publish', ['p', 'ch', 'not-an-object'], 'publishError'],
  ['publish with a non-numeric width', 'publish', ['p', 'ch', { ...STREAM, width: 'wide' }], 'publishError'],
  ['publish with a negative bitrate', 'publish', ['p', 'ch', { ...STREAM, bitrate: -5 }], 'publishError'],
  ['publish with an absurd frame rate', 'publish', ['p', 'ch', { ...STREAM, frameRate: 1e12 }], 'publishError'],
  ['publish with an empty peerID', 'publish', ['', 'ch', STREAM], 'publishError'],
  ['publish with a 10 KB peerID', 'publish', ['p'.repeat(10_000), 'ch', STREAM], 'publishError'],
  ['publish with 1,000 extra arguments', 'publish', ['Attacker', 'honest', STREAM, ...Array.from({ length: 1000 }, (_, i) => i)], null],
  ['publish with a binary peerID', 'publish', [Buffer.from('peer'), 'ch'], 'publishError'],
  ['subscribe with no arguments', 'subscribe', [], 'subscribeError'],
  ['subscribe with an object peerID', 'subscribe', [{ toString: 'x' }, 'ch'], 'subscribeError'],
  ['subscribe with an array channel', 'subscribe', ['p', ['a', 'b']], 'subscribeError'],
  ['subscribe with null', 'subscribe', [null], 'subscribeError'],
  ['messagePeer with no arguments', 'messagePeer', [], null],
  ['messagePeer with null', 'messagePeer', [null], null],
  ['messagePeer with a string', 'messagePeer', ['offer'], null],
  ['messagePeer without target', 'messagePeer', [{ type: 'offer' }], null],
  ['messagePeer with a numeric target', 'messagePeer', [{ type: 'offer', target: 7 }], null],
  ['messagePeer to an unknown peer', 'messagePeer', [{ type: 'offer', target: 'nobody' }], null],
  ['messagePeer with a prototype-pollution key', 'messagePeer', [JSON.parse('{"target":"Viewer","type":"x","__proto__":{"polluted":true}}')], null],
  ['messagePeer with 2,000 levels of nesting', 'messagePeer', [{ target: 'Viewer', type: 'deep', content: deep(2000) }], null],
  ['message with null', 'message', [null], null],
  ['message with a number', 'message', [42], null],
  ['message with a prototype-pollution key', 'message', [JSON.parse('{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}')], null],
  ['an unknown event', 'shutdown', ['now'], null],
];

test(`${malformed.length} malformed events are refused or dropped and an honest pair still signals`, async (t) => {
  const { url } = await startServer(t);
  // The attacker registers first so its relay events reach the handlers; a
  // victim in the attacker's channel receives what is relayed to it.
  const { broadcaster: attacker, player: victim } = await broadcastAndWatch(t, url, TOKEN, {
    channel: 'honest',
    broadcaster: 'Attacker',
  });
  const errors: { event: string; message: string }[] = [];
  for (const event of ['publishError', 'subscribeError'])
    attacker.on(event, (e: { message: string }) => errors.push({ event, message: e.message }));

  for (const [description, event, args, expected] of malformed) {
    const before = errors.length;
    attacker.emit(event, ...args);
    if (expected) {
      const got = await next<{ message: string }>(attacker, expected, () => true, 2000).catch(() => undefined);
      assert.ok(got ?? errors.length > before, `${description}: expected ${expected}`);
    }
  }
  // A publish round trip orders every event above before what follows.
  attacker.emit('publish', 'Attacker', 'honest', STREAM);
  await nextMessage(attacker, 'peers');
  assert.ok(errors.every((e) => /^Invalid (publish|subscribe): /.test(e.message)), JSON.stringify(errors));
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
  assert.deepEqual(connections.map(([name, peers]) => [name, Object.keys(peers).sort()]), [
    ['constructor', ['__proto__', 'hasOwnProperty']],
  ]);
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
