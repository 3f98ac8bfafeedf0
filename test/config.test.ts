// Configuration: the original's variable names, checked at start with one
// clear line naming the variable.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { seedUrl } from '../src/channels/redis/connection';
import { DEV_STATIC_TOKEN, loadConfig } from '../src/config';

test('an empty environment is development mode on port 3000 with the dev token', () => {
  const config = loadConfig({});
  assert.equal(config.production, false);
  assert.equal(config.port, 3000);
  assert.equal(config.staticToken, DEV_STATIC_TOKEN);
  assert.equal(config.database, undefined);
  assert.equal(config.demo, true);
  assert.equal(config.maxMessageBytes, 64 * 1024);
  assert.equal(config.maxOutgoingBytes, 1024 * 1024);
  assert.equal(config.enforceSdp, false);
  assert.equal(config.accountsRefreshMs, 0);
  assert.equal(config.metricsPerAccount, false);
  assert.equal(config.corsOrigin, '*');
  assert.equal(config.shutdownTimeoutMs, 5000);
  assert.equal(config.maxNameLength, 128);
});

test('ACCOUNTS_REFRESH_SECONDS, METRICS_PER_ACCOUNT, CORS_ORIGIN, SHUTDOWN_TIMEOUT_MS and MAX_NAME_LENGTH are read', () => {
  const config = loadConfig({
    ACCOUNTS_REFRESH_SECONDS: '90',
    METRICS_PER_ACCOUNT: 'true',
    CORS_ORIGIN: 'https://a.example, https://b.example',
    SHUTDOWN_TIMEOUT_MS: '12000',
    MAX_NAME_LENGTH: '16',
  });
  assert.equal(config.accountsRefreshMs, 90_000);
  assert.equal(config.metricsPerAccount, true);
  assert.equal(config.corsOrigin, 'https://a.example, https://b.example');
  assert.equal(config.shutdownTimeoutMs, 12_000);
  assert.equal(config.maxNameLength, 16);
  assert.equal(loadConfig({ SHUTDOWN_TIMEOUT_MS: '0' }).shutdownTimeoutMs, 0);
  assert.equal(loadConfig({ METRICS_PER_ACCOUNT: 'false' }).metricsPerAccount, false);
});

test('blank values (as in a copied .env.example) count as unset', () => {
  const config = loadConfig({ PORT: '', STATIC_TOKEN: '', DB_HOST: '', CERTIFICATE: ' ', NODE_ENV: '' });
  assert.equal(config.port, 3000);
  assert.equal(config.database, undefined);
  assert.equal(config.certificate, undefined);
});

test('TLS_TICKET_SECRET is long enough to derive keys from, or unset', () => {
  assert.throws(
    () => loadConfig({ TLS_TICKET_SECRET: 'too short' }),
    { message: 'TLS_TICKET_SECRET must be at least 32 characters' },
    'the secret is not quoted',
  );
  assert.equal(loadConfig({ TLS_TICKET_SECRET: '' }).tlsTicketSecret, undefined);
  assert.equal(loadConfig({}).tlsTicketRotateMs, 12 * 3_600_000);
  assert.equal(loadConfig({ TLS_TICKET_ROTATE_HOURS: '1' }).tlsTicketRotateMs, 3_600_000);
});

test('the original variables are read', () => {
  const config = loadConfig({
    NODE_ENV: 'production',
    PORT: '3443',
    STATIC_TOKEN: 'secret',
    API_KEY: 'key',
    COTURN_SERVER: 'turn.example.com:3478',
    COTURN_USER: 'u',
    COTURN_PASSWORD: 'p',
    DB_HOST: 'localhost',
    DB_USER: 'vw',
    DB_PASSWORD: 'pw',
    DB_NAME: 'videowhisper',
  });
  assert.equal(config.production, true);
  assert.equal(config.port, 3443);
  assert.equal(config.demo, false);
  assert.deepEqual(config.database, { host: 'localhost', port: 3306, user: 'vw', password: 'pw', name: 'videowhisper' });
  assert.equal(config.coturnServer, 'turn.example.com:3478');
});

test('each wrong value is reported with the name of its variable', () => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ PORT: 'abc' }, /^PORT must be a number/],
    [{ PORT: '70000' }, /^PORT must be a number <= 65535/],
    [{ NODE_ENV: 'prod' }, /^NODE_ENV must be development or production/],
    [{ CERTIFICATE: '/nonexistent/cert' }, /^CERTIFICATE: found neither \/nonexistent\/cert\.key and \/nonexistent\/cert\.crt/],
    [{ COTURN_SERVER: 'turn://x' }, /^COTURN_SERVER must be host:port/],
    [{ COTURN_SERVER: 'turn.example.com:3478' }, /^COTURN_SERVER needs COTURN_SECRET or both/],
    [{ DB_HOST: 'localhost' }, /^DB_NAME must be set/],
    [{ NODE_ENV: 'production' }, /^STATIC_TOKEN, DB_HOST or ACCOUNTS_FILE must be set in production/],
    [{ LOG_LEVEL: 'loud' }, /^LOG_LEVEL must be a pino level/],
    [{ MAX_MESSAGE_BYTES: '10' }, /^MAX_MESSAGE_BYTES must be a number >= 4096/],
    [{ TRUST_PROXY: 'not-an-address' }, /^TRUST_PROXY: /],
    [{ REDIS_URL: 'localhost:6379' }, /^REDIS_URL must be a redis:\/\/ or rediss:\/\/ URL/],
    [{ ACCOUNTS_REFRESH_SECONDS: 'hourly' }, /^ACCOUNTS_REFRESH_SECONDS must be a number/],
    [{ ACCOUNTS_REFRESH_SECONDS: '-1' }, /^ACCOUNTS_REFRESH_SECONDS must be a number >= 0/],
    [{ METRICS_PER_ACCOUNT: 'yes' }, /^METRICS_PER_ACCOUNT must be true or false/],
    [{ SHUTDOWN_TIMEOUT_MS: 'soon' }, /^SHUTDOWN_TIMEOUT_MS must be a number/],
    [{ SHUTDOWN_TIMEOUT_MS: '-1' }, /^SHUTDOWN_TIMEOUT_MS must be a number >= 0/],
    [{ SHUTDOWN_TIMEOUT_MS: '120001' }, /^SHUTDOWN_TIMEOUT_MS must be a number <= 120000/],
    [{ MAX_NAME_LENGTH: '7' }, /^MAX_NAME_LENGTH must be a number >= 8/],
    [{ MAX_OUTGOING_BYTES: '200000' }, /^MAX_OUTGOING_BYTES must be at least 4 x MAX_MESSAGE_BYTES \(262144\)/],
    [{ ENFORCE_SDP: 'yes' }, /^ENFORCE_SDP must be true or false/],
    [{ PUBLIC_URL: 'node1.example.com:3000' }, /^PUBLIC_URL must be a ws:\/\/, wss:\/\/, http:\/\/ or https:\/\/ URL/],
    [{ PUBLIC_URL: 'ftp://node1.example.com' }, /^PUBLIC_URL must be a ws:\/\/, wss:\/\/, http:\/\/ or https:\/\/ URL/],
  ];
  for (const [env, expected] of cases) assert.throws(() => loadConfig(env), { message: expected }, JSON.stringify(env));
});

test('the server refuses to start on a wrong value with one line on stderr', async () => {
  const main = join(__dirname, '..', 'src', 'main.ts');
  const result = await promisify(execFile)(process.execPath, ['--import', 'tsx', main], {
    env: { ...process.env, PORT: 'abc', DOTENV_CONFIG_PATH: '/nonexistent' },
  }).then(
    () => ({ code: 0, stderr: '' }),
    (err: { code: number; stderr: string }) => err,
  );
  assert.equal(result.code, 1);
  assert.equal(result.stderr.trim(), 'Configuration error: PORT must be a number (got "abc")');
});

test('sign-in settings: STATIC_ACCOUNT, STATIC_LOGIN, EXTRA_SECURITY, LOGIN_*, TOKEN_MAX_TTL_SECONDS', () => {
  const defaults = loadConfig({});
  assert.equal(defaults.staticAccount, undefined);
  assert.equal(defaults.extraSecurity, false);
  assert.equal(defaults.loginTimeoutMs, 5000);
  assert.equal(defaults.loginConcurrency, 8);
  assert.equal(defaults.tokenMaxTtlSeconds, 86400);
  const set = loadConfig({
    STATIC_TOKEN: 't',
    STATIC_ACCOUNT: 'My Site',
    STATIC_LOGIN: 'https://my.site/login.php',
    EXTRA_SECURITY: 'true',
    LOGIN_TIMEOUT_MS: '2000',
    TOKEN_MAX_TTL_SECONDS: '3600',
  });
  assert.equal(set.staticAccount, 'My Site');
  assert.equal(set.staticLogin, 'https://my.site/login.php');
  assert.equal(set.extraSecurity, true);
  assert.equal(set.loginTimeoutMs, 2000);
  assert.equal(set.tokenMaxTtlSeconds, 3600);
  assert.throws(() => loadConfig({ STATIC_TOKEN: 't', STATIC_LOGIN: 'ftp://my.site/' }), /^Error: STATIC_LOGIN must be an http\(s\) URL/);
  assert.throws(() => loadConfig({ STATIC_LOGIN: 'not a url' }), /STATIC_LOGIN must be an http\(s\) URL/);
  assert.throws(
    () => loadConfig({ NODE_ENV: 'production', DB_HOST: 'db', DB_NAME: 'vw', STATIC_ACCOUNT: 'x' }),
    /STATIC_ACCOUNT and STATIC_LOGIN need STATIC_TOKEN/,
  );
  assert.throws(() => loadConfig({ EXTRA_SECURITY: 'yes' }), /EXTRA_SECURITY must be true or false/);
});

test('PUBLIC_URL is a ws, wss, http or https URL, or unset', () => {
  assert.equal(loadConfig({}).publicUrl, undefined);
  assert.equal(loadConfig({ PUBLIC_URL: ' ' }).publicUrl, undefined);
  for (const url of ['wss://node1.example.com:3000', 'ws://10.0.0.11:3000', 'https://node1.example.com/', 'http://node1'])
    assert.equal(loadConfig({ PUBLIC_URL: url }).publicUrl, url);
});

test('REDIS_CLUSTER_NODES is a list of host:port or redis(s):// URLs; REDIS_PREFIX may not hold a hash tag', () => {
  const config = loadConfig({ REDIS_CLUSTER_NODES: '10.0.0.5:6379, 10.0.0.6:6380,rediss://:secret@10.0.0.7:6379' });
  assert.deepEqual(config.redisClusterNodes, ['10.0.0.5:6379', '10.0.0.6:6380', 'rediss://:secret@10.0.0.7:6379']);
  assert.equal(config.drainTimeoutMs, 600_000, 'a cluster drains on restarts, as with REDIS_URL');
  assert.equal(loadConfig({}).redisClusterNodes, undefined);
  assert.throws(() => loadConfig({ REDIS_CLUSTER_NODES: '10.0.0.5' }), /REDIS_CLUSTER_NODES/);
  assert.throws(() => loadConfig({ REDIS_PREFIX: 'vw{x}:' }), /REDIS_PREFIX/);
});

test('a seed node given as host:port takes the scheme and password of REDIS_URL', () => {
  assert.equal(seedUrl('10.0.0.6:6380', 'rediss://:secret@10.0.0.5:6379'), 'rediss://:secret@10.0.0.6:6380');
  assert.equal(seedUrl('10.0.0.6:6380', undefined), 'redis://10.0.0.6:6380');
  assert.equal(seedUrl('redis://10.0.0.7:6379', 'rediss://:secret@x:1'), 'redis://10.0.0.7:6379');
});
