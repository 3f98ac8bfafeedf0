// The demo page is served in development mode, and in production only when
// DEMO=true says so. (What it does in a browser: browser.test.ts.)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { get } from './helpers/api';
import { startServer } from './helpers/server';

test('production mode serves no demo page unless DEMO=true', async (t) => {
  const { url } = await startServer(t);
  assert.equal((await get(url, '/demo')).status, 404);
  assert.equal((await get(url, '/demo/demo.css')).status, 404);
});

test('development mode serves the demo page, its style and the Socket.IO client it loads', async (t) => {
  const { url } = await startServer(t, { NODE_ENV: 'development' });
  for (const path of ['/demo', '/demo/']) {
    const page = await get(url, path);
    assert.equal(page.status, 200, path);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.match(page.text, /<script src="\/socket\.io\/socket\.io\.min\.js"/);
    assert.match(String(page.headers['content-security-policy']), /default-src 'self'/);
  }
  const style = await get(url, '/demo/demo.css');
  assert.equal(style.status, 200);
  assert.match(String(style.headers['content-type']), /^text\/css/);
  assert.equal((await get(url, '/socket.io/socket.io.min.js')).status, 200);
});

test('DEMO=true serves the demo page in production mode', async (t) => {
  const { url } = await startServer(t, { DEMO: 'true' });
  assert.equal((await get(url, '/demo')).status, 200);
});
