// Certificates as a site owner meets them: renewed every 60-90 days by
// certbot or cPanel AutoSSL while calls are live, named either
// `<prefix>.key/.crt` or Let's Encrypt's `privkey.pem/fullchain.pem`, and
// sometimes wrong (a key that does not match, a file that cannot be read).
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import https from 'node:https';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { broadcastAndWatch, nextMessage } from './helpers/client';
import { spawnServer } from './helpers/process';
import { API_KEY, startServer, TOKEN } from './helpers/server';
import { testCertificate } from './helpers/tls';

const run = promisify(execFile);

function tempDir(t: TestContext) {
  const dir = mkdtempSync(join(tmpdir(), 'vw-certs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A self-signed certificate for `name` (ECDSA, as certbot makes them, or RSA), written to `key` and `cert`; its serial. */
function makeCertificate(key: string, cert: string, name = 'localhost', days = 30, keyType: 'ecdsa' | 'rsa' = 'ecdsa'): string {
  const newKey = keyType === 'ecdsa' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'] : ['-newkey', 'rsa:2048'];
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      ...newKey,
      '-nodes',
      '-days',
      String(days),
      '-subj',
      `/CN=${name}`,
      '-addext',
      `subjectAltName=DNS:${name},IP:127.0.0.1`,
      '-keyout',
      key,
      '-out',
      cert,
    ],
    { stdio: 'ignore' },
  );
  return new X509Certificate(readFileSync(cert)).serialNumber;
}

/** Signature algorithms of a client that verifies only ECDSA, or only RSA, certificates. */
const ONLY: Record<'ecdsa' | 'rsa', string> = {
  ecdsa: 'ecdsa_secp256r1_sha256',
  rsa: 'rsa_pss_rsae_sha256:RSA+SHA256',
};

/** The serial of the certificate a new TLS handshake gets; `accepts` limits the client to one key type. */
function servedSerial(url: string, accepts?: 'ecdsa' | 'rsa'): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const sigalgs = accepts && { sigalgs: ONLY[accepts] };
    const socket = tls.connect(
      { host: hostname, port: Number(port), servername: 'localhost', rejectUnauthorized: false, ...sigalgs },
      () => {
        resolve(socket.getPeerX509Certificate()?.serialNumber ?? '');
        socket.end();
      },
    );
    socket.on('error', reject);
  });
}

/** A GET to a server whose certificate the test made on the fly (not the helpers' trusted one). */
function getUntrusted(url: string, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    https
      .get(new URL(path, url), { rejectUnauthorized: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve(text));
      })
      .on('error', reject);
  });
}

/**
 * A TLS handshake, resuming `session` when given; resolves with whether it
 * was resumed and the session to resume next time: the ticket the server
 * sent after a full handshake (TLS 1.3 sends it after the handshake).
 */
function handshake(url: string, session?: Buffer): Promise<{ resumed: boolean; session: Buffer | undefined }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: hostname,
      port: Number(port),
      servername: 'localhost',
      rejectUnauthorized: false,
      ...(session && { session }),
    });
    const done = (resumed: boolean, next: Buffer | undefined) => {
      resolve({ resumed, session: next });
      socket.end();
    };
    socket.once('secureConnect', () => {
      if (socket.isSessionReused()) done(true, session);
      else socket.once('session', (ticket: Buffer) => done(false, ticket));
    });
    socket.on('error', reject);
  });
}

/** Polls until the served serial is `serial`: the files are watched, and a renewal settles before it is read. */
async function eventuallyServed(url: string, serial: string, ms = 10_000, accepts?: 'ecdsa' | 'rsa') {
  const deadline = performance.now() + ms;
  while ((await servedSerial(url, accepts)) !== serial) {
    assert.ok(performance.now() < deadline, `serial ${serial} not served within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test('a renewed certificate reaches new connections at once; established calls keep going', async (t) => {
  const dir = tempDir(t);
  const prefix = join(dir, 'site');
  // The certificate the test clients trust, copied where a renewal will replace it.
  copyFileSync(`${testCertificate().prefix}.key`, `${prefix}.key`);
  copyFileSync(`${testCertificate().prefix}.crt`, `${prefix}.crt`);
  const { url, server } = await startServer(t, { CERTIFICATE: prefix });
  const before = new X509Certificate(testCertificate().ca).serialNumber;
  assert.equal(await servedSerial(url), before);
  const { broadcaster, player } = await broadcastAndWatch(t, url, TOKEN, { channel: 'renewal' });

  // A renewal as tools do it: new files written aside, then renamed into place.
  const renewed = makeCertificate(join(dir, 'next.key'), join(dir, 'next.crt'), 'localhost', 90);
  renameSync(join(dir, 'next.key'), `${prefix}.key`);
  renameSync(join(dir, 'next.crt'), `${prefix}.crt`);
  await eventuallyServed(url, renewed);
  assert.equal(server.certificate?.serial, renewed);

  // The call set up before the renewal did not notice it.
  assert.ok(broadcaster.connected && player.connected);
  const offered = nextMessage(player, 'offer');
  broadcaster.emit('messagePeer', { target: 'Viewer', type: 'offer', content: { type: 'offer', sdp: 'v=0' } });
  await offered;
  assert.equal(broadcaster.messages.filter((m) => m.type === 'close' || (m.payload as { action?: string })?.action === 'close').length, 0);

  const metrics = await getUntrusted(url, `/metrics?apikey=${API_KEY}`);
  const expiry = Number(/^videowhisper_certificate_expiry_timestamp_seconds (\d+)$/m.exec(metrics)?.[1]);
  assert.equal(expiry, Math.floor(new Date(server.certificate?.notAfter ?? 0).getTime() / 1000));
  assert.ok(expiry * 1000 > Date.now() + 80 * 86_400_000, 'the renewed expiry');
});

/** The TLS 1.3 suite a new handshake gets; `ciphers` is the client's own order (Node's default when not given). */
function negotiatedSuite(url: string, ciphers?: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tls.connect(
      { host: hostname, port: Number(port), servername: 'localhost', rejectUnauthorized: false, ...(ciphers && { ciphers }) },
      () => {
        resolve(`${socket.getProtocol()} ${socket.getCipher().name}`);
        socket.end();
      },
    );
    socket.on('error', reject);
  });
}

test("the server's suite order: AES-128-GCM first, ChaCha20 for a client that asks for it first, AES-256 still served; also after a renewal", async (t) => {
  const dir = tempDir(t);
  const prefix = join(dir, 'site');
  makeCertificate(`${prefix}.key`, `${prefix}.crt`);
  const { url } = await startServer(t, { CERTIFICATE: prefix });
  const check = async () => {
    // Node's own client (socket.io-client, ws) lists AES-256-GCM-SHA384 first.
    assert.equal(await negotiatedSuite(url), 'TLSv1.3 TLS_AES_128_GCM_SHA256');
    assert.equal(await negotiatedSuite(url, 'TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256'), 'TLSv1.3 TLS_CHACHA20_POLY1305_SHA256');
    assert.equal(await negotiatedSuite(url, 'TLS_AES_256_GCM_SHA384'), 'TLSv1.3 TLS_AES_256_GCM_SHA384');
  };
  await check();
  const renewed = makeCertificate(join(dir, 'next.key'), join(dir, 'next.crt'), 'localhost', 90);
  renameSync(join(dir, 'next.key'), `${prefix}.key`);
  renameSync(join(dir, 'next.crt'), `${prefix}.crt`);
  await eventuallyServed(url, renewed);
  await check();
});

test('a renewal that is half written or does not match keeps the certificate served, with one logged error', async (t) => {
  const dir = tempDir(t);
  const prefix = join(dir, 'site');
  const first = makeCertificate(`${prefix}.key`, `${prefix}.crt`);
  const { url, server, logs } = await startServer(t, { CERTIFICATE: prefix });
  // A certificate whose key is still the old one.
  makeCertificate(join(dir, 'other.key'), `${prefix}.crt`);
  assert.equal(server.reloadCertificate(), false);
  assert.equal(await servedSerial(url), first);
  const error = logs.find((l) => l.msg === 'certificate not reloaded, keeping the one served now');
  assert.match(String(error?.err), /^CERTIFICATE: the key .*site\.key does not match the certificate .*site\.crt$/);
  // The key arrives: now it loads.
  copyFileSync(join(dir, 'other.key'), `${prefix}.key`);
  assert.equal(server.reloadCertificate(), true);
  assert.notEqual(await servedSerial(url), first);
});

test("Let's Encrypt's directory (privkey.pem, fullchain.pem) works as CERTIFICATE", async (t) => {
  const live = join(tempDir(t), 'live', 'example');
  mkdirSync(live, { recursive: true });
  const serial = makeCertificate(join(live, 'privkey.pem'), join(live, 'fullchain.pem'));
  const { url, server } = await startServer(t, { CERTIFICATE: live });
  assert.equal(await servedSerial(url), serial);
  assert.deepEqual(server.certificate?.names, ['localhost']);
  const { features } = JSON.parse(await getUntrusted(url, '/')) as { features: string };
  assert.match(features, /\bSSL\b/, 'SSL is a feature when TLS is on');
});

test('an ECDSA and an RSA certificate together: each client gets the one it verifies, and a renewal of either is served', async (t) => {
  const dir = tempDir(t);
  const [ec, rsa] = [join(dir, 'ecdsa'), join(dir, 'rsa')];
  const ecSerial = makeCertificate(`${ec}.key`, `${ec}.crt`, 'localhost', 30, 'ecdsa');
  const rsaSerial = makeCertificate(`${rsa}.key`, `${rsa}.crt`, 'localhost', 20, 'rsa');
  const { url, server } = await startServer(t, { CERTIFICATE: `${ec},${rsa}` });
  assert.equal(await servedSerial(url), ecSerial, 'a client that verifies both gets ECDSA');
  assert.equal(await servedSerial(url, 'ecdsa'), ecSerial);
  assert.equal(await servedSerial(url, 'rsa'), rsaSerial, 'an RSA-only client gets RSA');
  assert.equal(server.certificate?.serial, rsaSerial, 'the expiry shown is the one that comes first');

  const renewed = makeCertificate(join(dir, 'next.key'), join(dir, 'next.crt'), 'localhost', 90, 'rsa');
  renameSync(join(dir, 'next.key'), `${rsa}.key`);
  renameSync(join(dir, 'next.crt'), `${rsa}.crt`);
  await eventuallyServed(url, renewed, 10_000, 'rsa');
  assert.equal(await servedSerial(url, 'ecdsa'), ecSerial, 'the ECDSA certificate stays');
  assert.equal(server.certificate?.serial, ecSerial, 'now the ECDSA one expires first');
});

test('two certificates of one key type stop the start with one line', async (t) => {
  const dir = tempDir(t);
  makeCertificate(join(dir, 'a.key'), join(dir, 'a.crt'));
  makeCertificate(join(dir, 'b.key'), join(dir, 'b.crt'));
  await assert.rejects(startServer(t, { CERTIFICATE: `${join(dir, 'a')},${join(dir, 'b')}` }), {
    message: 'CERTIFICATE: two EC certificates; give at most one per key type (ECDSA and RSA)',
  });
});

test('a reconnect resumes its TLS session; with TLS_TICKET_SECRET on another instance too, and after a renewal', async (t) => {
  const secret = 'a-ticket-secret-of-at-least-32-characters';
  const dir = tempDir(t);
  const prefix = join(dir, 'site');
  makeCertificate(`${prefix}.key`, `${prefix}.crt`);
  const a = await startServer(t, { CERTIFICATE: prefix, TLS_TICKET_SECRET: secret });
  const b = await startServer(t, { CERTIFICATE: prefix, TLS_TICKET_SECRET: secret });
  const other = await startServer(t, { CERTIFICATE: prefix, TLS_TICKET_SECRET: `${secret}, another` });
  const alone = await startServer(t, { CERTIFICATE: prefix });
  // The same secret, but its clock already in the next rotation period.
  const later = await startServer(
    t,
    { CERTIFICATE: prefix, TLS_TICKET_SECRET: secret, TLS_TICKET_ROTATE_HOURS: '12' },
    { clock: { now: () => Date.now() + 12 * 3_600_000, monotonic: () => performance.now() } },
  );

  const first = await handshake(a.url);
  assert.equal(first.resumed, false);
  assert.equal((await handshake(a.url, first.session)).resumed, true, 'the same instance');
  assert.equal((await handshake(b.url, first.session)).resumed, true, 'an instance with the same secret');
  assert.equal((await handshake(other.url, first.session)).resumed, false, 'an instance with another secret');
  assert.equal((await handshake(later.url, first.session)).resumed, false, 'a ticket of the previous period, after a rotation');
  const own = await handshake(alone.url);
  assert.equal((await handshake(alone.url, own.session)).resumed, true, 'without a secret, on the instance that issued it');
  assert.equal((await handshake(a.url, own.session)).resumed, false, 'without a secret, not on another instance');

  // The key stays across a certificate reload.
  makeCertificate(`${prefix}.key`, `${prefix}.crt`);
  assert.equal(a.server.reloadCertificate(), true);
  assert.equal((await handshake(a.url, first.session)).resumed, true, 'after a reload');
});

test('without TLS, / does not claim SSL; unknown paths answer JSON 404', async (t) => {
  const { url } = await startServer(t, { CERTIFICATE: '' });
  const http = await fetch(`${url}/`);
  assert.doesNotMatch(((await http.json()) as { features: string }).features, /SSL/);
  const missing = await fetch(`${url}/no-such-path`);
  assert.equal(missing.status, 404);
  assert.match(missing.headers.get('content-type') ?? '', /application\/json/);
  assert.deepEqual(await missing.json(), { error: 'Not found' });
});

test('the start-up line names the certificate host, its names and expiry; SIGUSR2 reloads it', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const prefix = join(dir, 'site');
  makeCertificate(`${prefix}.key`, `${prefix}.crt`, 'webrtc.example.test', 30);
  const spawned = await spawnServer(t, { CERTIFICATE: prefix });
  const started = spawned.lines.find((l) => String(l.msg).startsWith('VideoWhisper WebRTC signaling on'));
  const expires = new Date(new X509Certificate(readFileSync(`${prefix}.crt`)).validTo).toISOString().slice(0, 10);
  assert.equal(
    started?.msg,
    `VideoWhisper WebRTC signaling on wss://webrtc.example.test:${spawned.port}/ (production mode; certificate for webrtc.example.test, expires ${expires})`,
  );
  assert.equal(started?.level, 'info');
  assert.ok(!Number.isNaN(Date.parse(String(started?.time))), 'ISO time');

  const reloaded = (serial: string) => (l: Record<string, unknown>) =>
    l.msg === 'certificate reloaded: new connections get it, established ones keep theirs' && l.serial === serial;
  // The signal alone: the files have not changed, the server reads them again.
  const first = new X509Certificate(readFileSync(`${prefix}.crt`)).serialNumber;
  spawned.child.kill('SIGUSR2');
  await spawned.waitForLog(reloaded(first));

  // A renewal in place (as cPanel writes it): the watched files are read again.
  const renewed = makeCertificate(join(dir, 'next.key'), join(dir, 'next.crt'), 'webrtc.example.test', 60);
  copyFileSync(join(dir, 'next.key'), `${prefix}.key`);
  copyFileSync(join(dir, 'next.crt'), `${prefix}.crt`);
  await spawned.waitForLog(reloaded(renewed));
  assert.equal(await servedSerial(spawned.url), renewed);
});

for (const [what, breakIt, message] of [
  [
    'a key that does not match its certificate',
    (prefix: string, dir: string) => makeCertificate(`${prefix}.key`, join(dir, 'unused.crt')),
    /^Configuration error: CERTIFICATE: the key .*site\.key does not match the certificate .*site\.crt$/,
  ],
  [
    'a key that cannot be read',
    (prefix: string) => {
      rmSync(`${prefix}.key`);
      mkdirSync(`${prefix}.key`); // exists, but is no file (root reads any file: permissions would not do)
    },
    /^Configuration error: CERTIFICATE: cannot read .*site\.key \(EISDIR\)$/,
  ],
] as const) {
  test(`${what} stops the start with one line, not a stack trace`, { timeout: 60_000 }, async (t) => {
    const dir = tempDir(t);
    const prefix = join(dir, 'site');
    makeCertificate(`${prefix}.key`, `${prefix}.crt`);
    breakIt(prefix, dir);
    const failed = await run(process.execPath, ['--import', 'tsx', join(__dirname, '..', 'src', 'main.ts')], {
      env: {
        ...process.env,
        NODE_ENV: 'production',
        CERTIFICATE: prefix,
        STATIC_TOKEN: TOKEN,
        PORT: '0',
        DOTENV_CONFIG_PATH: '/nonexistent',
      },
    }).then(
      () => assert.fail('the server started'),
      (err: { code: number; stderr: string }) => err,
    );
    assert.equal(failed.code, 1);
    const stderr = failed.stderr;
    const lines = stderr.trim().split('\n');
    assert.equal(lines.length, 1, stderr);
    assert.match(lines[0] ?? '', message);
  });
}
