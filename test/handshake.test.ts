// Who may connect: the static token, and nothing else, with the exact
// connect_error strings the client shows.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect, refusal } from './helpers/client';
import { startServer, TOKEN } from './helpers/server';

test('the static token connects; extra handshake fields are accepted and ignored', async (t) => {
  const { url } = await startServer(t);
  const socket = await connect(t, url, TOKEN);
  assert.ok(socket.connected);
  assert.equal(await refusal(url, { token: TOKEN, account: 'site', user: 'alice', pin: '1234' }), 'connected');
});

test('a wrong, missing or malformed token gets "ERROR: Authentication error"', async (t) => {
  const { url, logs } = await startServer(t);
  for (const auth of [{ token: 'wrong' }, {}, undefined, { token: 42 }, { token: '' }, { token: ['x'] }, { token: 'x'.repeat(5000) }])
    assert.equal(await refusal(url, auth), 'ERROR: Authentication error', JSON.stringify(auth)?.slice(0, 40));
  assert.ok(logs.some((l) => l.msg === 'connection refused'));
  // Production logs never carry the token a client tried.
  assert.ok(!JSON.stringify(logs).includes('"wrong"'));
});

test('development mode without any token setting uses the documented dev token', async (t) => {
  const { url } = await startServer(t, { NODE_ENV: 'development', STATIC_TOKEN: undefined });
  assert.equal(await refusal(url, { token: 'dev-token' }), 'connected');
  assert.equal(await refusal(url, { token: TOKEN }), 'ERROR: Authentication error');
});
