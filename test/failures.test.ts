// Every failed event is answered: a registry that cannot answer (an outage)
// or that throws anything else (a bug) leaves the client with
// `ERROR: Server unavailable` on the event's error event, and operators see
// the two apart in the log and in the metrics.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createMemoryRegistry } from '../src/channels/memory';
import { RegistryUnavailableError, type ChannelRegistry } from '../src/channels/registry';
import { get } from './helpers/api';
import { broadcastAndWatch, connect, next, refusal, STREAM } from './helpers/client';
import { API_KEY, startServer, TOKEN } from './helpers/server';
import { eventually } from './helpers/wait';

/** The in-memory registry, with calls made to fail on demand. */
function faultyRegistry() {
  const registry = createMemoryRegistry();
  const faults = new Map<keyof ChannelRegistry, Error>();
  const faulty = new Proxy(registry, {
    get(target, name: keyof ChannelRegistry) {
      const call = target[name] as (...args: unknown[]) => Promise<unknown>;
      return (...args: unknown[]) => {
        const fault = faults.get(name);
        return fault ? Promise.reject(fault) : call(...args);
      };
    },
  });
  return { registry: faulty, faults };
}

/** `videowhisper_event_failures_total` by cause, as scraped. */
async function failures(url: string) {
  const text = (await get(url, `/metrics?apikey=${API_KEY}`)).text;
  const count = (cause: string) =>
    Number(new RegExp(`^videowhisper_event_failures_total\\{cause="${cause}"\\} (\\d+)$`, 'm').exec(text)?.[1]);
  return { registryUnavailable: count('registryUnavailable'), bug: count('bug') };
}

const unavailable = (peerID: string) => ({ from: '_server_', to: peerID, message: 'ERROR: Server unavailable' });

test('a registry outage during the handshake refuses the connection as unavailable, logged as an outage', async (t) => {
  const { registry, faults } = faultyRegistry();
  const { url, logs } = await startServer(t, {}, { registry });
  faults.set('connect', new RegistryUnavailableError('Redis did not answer within 5000 ms'));
  assert.equal(await refusal(url, { token: TOKEN }), 'ERROR: Server unavailable');
  assert.equal(logs.find((l) => l.msg === 'handshake: registry unavailable')?.level, 'warn');
  assert.deepEqual(await failures(url), { registryUnavailable: 1, bug: 0 });
});

test('a registry outage during publish is answered on publishError and logged as an outage, not a bug', async (t) => {
  const { registry, faults } = faultyRegistry();
  const { url, logs } = await startServer(t, {}, { registry });
  const socket = await connect(t, url, TOKEN);
  faults.set('join', new RegistryUnavailableError('Redis did not answer within 5000 ms'));
  const answer = next(socket, 'publishError');
  socket.emit('publish', 'Studio', 'outage', STREAM);
  assert.deepEqual(await answer, unavailable('Studio'));
  assert.deepEqual(await failures(url), { registryUnavailable: 1, bug: 0 });
  const line = logs.find((l) => l.msg === 'event handler: registry unavailable');
  assert.equal(line?.level, 'warn');
  assert.equal(line?.event, 'publish');
  assert.equal(line?.err, 'Redis did not answer within 5000 ms', 'the reason, without a stack');
  assert.equal(logs.filter((l) => l.msg === 'event handler failed').length, 0);
  // Once the registry answers again, so does the server.
  faults.clear();
  const peers = next(socket, 'message', (m) => m.type === 'peers');
  socket.emit('publish', 'Studio', 'outage', STREAM);
  await peers;
});

test('a bug in a registry lookup during messagePeer is answered on messageError and logged as a bug', async (t) => {
  const { registry, faults } = faultyRegistry();
  const { url, logs } = await startServer(t, {}, { registry });
  const { broadcaster } = await broadcastAndWatch(t, url, TOKEN, { channel: 'bug' });
  faults.set('findPeer', new TypeError('Cannot read properties of undefined'));
  const answer = next(broadcaster, 'messageError');
  broadcaster.emit('messagePeer', { target: 'Viewer', type: 'offer' });
  assert.deepEqual(await answer, unavailable('Studio'));
  assert.deepEqual(await failures(url), { registryUnavailable: 0, bug: 1 });
  const line = logs.find((l) => l.msg === 'event handler failed');
  assert.equal(line?.level, 'error');
  assert.equal(line?.event, 'messagePeer');
  assert.match(String((line?.err as { stack?: string } | undefined)?.stack), /TypeError: Cannot read properties of undefined/);
});

test('an outage while relaying a message to the channel is answered on messageError', async (t) => {
  const { registry, faults } = faultyRegistry();
  const { url } = await startServer(t, {}, { registry });
  const { player } = await broadcastAndWatch(t, url, TOKEN, { channel: 'relay' });
  faults.set('peers', new RegistryUnavailableError('registry closed'));
  const answer = next(player, 'messageError');
  player.emit('message', { text: 'hello' });
  assert.deepEqual(await answer, unavailable('Viewer'));
});

test('a refusal the registry cannot count still reaches the client', async (t) => {
  const { registry, faults } = faultyRegistry();
  const { url, logs } = await startServer(t, { ACCOUNT_MAX_CHANNELS: '1' }, { registry });
  const [first, second] = await Promise.all([connect(t, url, TOKEN), connect(t, url, TOKEN)]);
  const published = next(first, 'message', (m) => m.type === 'peers');
  first.emit('publish', 'Studio', 'one', STREAM);
  await published;
  faults.set('countRefusal', new RegistryUnavailableError('Redis did not answer within 5000 ms'));
  const answer = next(second, 'publishError');
  second.emit('publish', 'Other', 'two', STREAM);
  assert.deepEqual(await answer, { from: '_server_', to: 'Other', message: 'Unfit: channels.' });
  await eventually('the uncounted refusal logged as an outage', () =>
    logs.some((l) => l.msg === 'counting a refusal: registry unavailable' && l.level === 'warn'),
  );
  assert.deepEqual(await failures(url), { registryUnavailable: 1, bug: 0 });
});
