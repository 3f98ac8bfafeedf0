// TURN credentials that expire, checked by a real coturn: the credentials a
// broadcaster gets in `peerConfig` allocate a relay; expired and forged ones
// are refused.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import type { IceServer, PeerConfig } from '../src/ice';
import { connect, nextMessage } from './helpers/client';
import { manualClock } from './helpers/clock';
import { findProgram, waitForOutput } from './helpers/process';
import { startServer, TOKEN } from './helpers/server';
import { within } from './helpers/wait';

const SECRET = 'turn-shared-secret';
// Found on the PATH, as .ci/run looks for it (`command -v turnserver`).
const turnserver = findProgram('turnserver');
const uclient = findProgram('turnutils_uclient');
const haveCoturn = Boolean(turnserver && uclient);
if (!haveCoturn) {
  const why = 'coturn (turnserver, turnutils_uclient) is not installed: apt-get install coturn';
  if (process.env.CI === 'true') throw new Error(why);
  console.warn(`\n*** TURN tests SKIPPED: ${why} ***\n`);
}

async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await within(new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve)), 'a UDP port');
  const { port } = socket.address();
  await within(new Promise<void>((resolve) => socket.close(resolve)), 'the UDP port closed');
  return port;
}

/** A coturn on loopback with the same shared secret as the server. */
async function startCoturn(t: { after(fn: () => unknown): void }): Promise<number> {
  const port = await freeUdpPort();
  const dir = mkdtempSync(join(tmpdir(), 'vw-turn-'));
  const turn = spawn(turnserver ?? 'turnserver', [
    '-n',
    '--use-auth-secret',
    `--static-auth-secret=${SECRET}`,
    '--realm=videowhisper',
    '--listening-ip=127.0.0.1',
    `--listening-port=${port}`,
    '--relay-ip=127.0.0.1',
    '--min-port=49200',
    '--max-port=49400',
    '--no-tls',
    '--no-dtls',
    '--no-cli',
    '--allow-loopback-peers',
    '--no-multicast-peers',
    `--userdb=${join(dir, 'turndb')}`,
    '--log-file=stdout',
    '--simple-log',
    `--pidfile=${join(dir, 'turn.pid')}`,
  ]);
  t.after(() => {
    turn.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  // coturn says when its listener is up.
  await waitForOutput(turn, 'coturn', /DB connection success/);
  return port;
}

/** Two relay allocations exchanging packets through coturn: true when data crossed. */
/**
 * Two relay allocations exchanging packets through coturn: 'refused' when
 * coturn rejects the allocation, 'relayed' when data crossed. A loaded
 * machine can make a run end before any packet is back: that run is tried
 * again, never counted as either.
 */
async function relay(port: number, username: string, credential: string): Promise<'relayed' | 'refused'> {
  for (let attempt = 1; ; attempt++) {
    const { stdout } = await promisify(execFile)(
      uclient ?? 'turnutils_uclient',
      ['-y', '-X', '-n', '2', '-m', '1', '-p', String(port), '-u', username, '-w', credential, '127.0.0.1'],
      { timeout: 30_000 },
    ).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }));
    if (/Cannot complete Allocation/.test(stdout)) return 'refused';
    const bytes = Math.max(0, ...[...stdout.matchAll(/tot_recv_bytes ~ (\d+)/g)].map((m) => Number(m[1])));
    if (bytes > 0) return 'relayed';
    if (attempt === 3) throw new Error(`turnutils_uclient neither relayed nor was refused:\n${stdout.slice(-800)}`);
  }
}

async function turnServerOf(url: string, t: Parameters<typeof connect>[0]): Promise<IceServer> {
  const broadcaster = await connect(t, url, TOKEN);
  broadcaster.emit('publish', 'Studio', 'turn', { width: 640, height: 360 });
  const { peerConfig } = (await nextMessage(broadcaster, 'peers')) as { peerConfig: PeerConfig };
  const turn = peerConfig.iceServers.find((s) => [s.urls].flat().some((u) => u.startsWith('turn:')));
  assert.ok(turn?.username && turn.credential, JSON.stringify(peerConfig));
  return turn;
}

test('peerConfig carries TURN REST credentials that coturn accepts; forged and expired ones fail', { skip: !haveCoturn }, async (t) => {
  const port = await startCoturn(t);
  const env = { COTURN_SERVER: `127.0.0.1:${port}`, COTURN_SECRET: SECRET, COTURN_TTL: '3600' };
  const { url } = await startServer(t, env);
  const turn = await turnServerOf(url, t);
  assert.deepEqual(turn.urls, [`turn:127.0.0.1:${port}?transport=udp`, `turn:127.0.0.1:${port}?transport=tcp`]);
  const [expiry, account] = (turn.username ?? '').split(':');
  assert.equal(account, '_static');
  const lifetime = Number(expiry) - Date.now() / 1000;
  assert.ok(lifetime > 3500 && lifetime <= 3600, `expires in ${lifetime} s`);

  assert.equal(await relay(port, turn.username ?? '', turn.credential ?? ''), 'relayed', 'valid credentials relay');
  assert.equal(await relay(port, turn.username ?? '', `x${turn.credential}`), 'refused', 'forged credential refused');
  assert.equal(await relay(port, `${Number(expiry) + 10}:_static`, turn.credential ?? ''), 'refused', 'altered username refused');

  // A server whose clock says two days ago hands out credentials that have expired.
  const past = await startServer(t, env, { clock: manualClock(Date.now() - 2 * 86400_000) });
  const expired = await turnServerOf(past.url, t);
  assert.equal(await relay(port, expired.username ?? '', expired.credential ?? ''), 'refused', 'expired credentials refused');
});

test('static COTURN_USER/COTURN_PASSWORD are handed out when no secret is set', async (t) => {
  const { url } = await startServer(t, { COTURN_SERVER: 'turn.example.com:3478', COTURN_USER: 'user', COTURN_PASSWORD: 'pass' });
  const turn = await turnServerOf(url, t);
  assert.equal(turn.username, 'user');
  assert.equal(turn.credential, 'pass');
});
