// Real MariaDB/MySQL for the account tests: a private database per test on
// the test server (127.0.0.1:3306 as root, or TEST_DB_HOST, TEST_DB_PORT,
// TEST_DB_USER, TEST_DB_PASSWORD), made from sql/schema.sql and dropped
// afterwards; and a private MariaDB instance that a test can stop and start.
//
// No database server: outside CI the tests are skipped with a loud warning;
// with CI=true they fail.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { createConnection, createPool, type Connection, type ResultSetHeader } from 'mysql2/promise';
import { findProgram, freePort, restartable, type Restartable } from './process';
import { requireService } from './skip';
import { STARTUP_MS } from './wait';

export const SQL_DIR = join(__dirname, '..', '..', 'sql');

export interface DatabaseServer {
  host: string;
  port: number;
  user: string;
  password: string;
}

export interface TestDatabase {
  name: string;
  /** The DB_* variables that point a server at this database. */
  env: { DB_HOST: string; DB_PORT: string; DB_USER: string; DB_PASSWORD: string; DB_NAME: string };
  query(sql: string, values?: unknown[]): Promise<unknown>;
  /** Loads sql/sample.sql: 'Test Account' (testToken), 'Suspended Account' (suspendedToken), plan 1. */
  loadSample(): Promise<void>;
  /** Inserts a plan; `properties` as an object, or as raw text to store malformed JSON. */
  addPlan(name: string, properties: object | string): Promise<number>;
  addAccount(name: string, token: string, properties: object | string, planId: number | null): Promise<number>;
}

export function testServer(env: NodeJS.ProcessEnv = process.env): DatabaseServer {
  return {
    host: env.TEST_DB_HOST || '127.0.0.1',
    port: Number(env.TEST_DB_PORT || 3306),
    user: env.TEST_DB_USER || 'root',
    password: env.TEST_DB_PASSWORD ?? '',
  };
}

const describeServer = (s: DatabaseServer) => `${s.user}@${s.host}:${s.port}`;
const asText = (value: object | string) => (typeof value === 'string' ? value : JSON.stringify(value));
const errorText = (err: unknown) => (err instanceof Error ? err.message || String((err as { code?: unknown }).code) : String(err));

const settings = ({ host, port, user, password }: DatabaseServer) => ({
  host,
  port,
  user,
  password,
  connectTimeout: 3000,
  multipleStatements: true,
});

function connectTo(server: DatabaseServer): Promise<Connection> {
  return createConnection(settings(server));
}

// Reachability of each server is asked once per test process.
const reachability = new Map<string, Promise<string | undefined>>();

function unreachableReason(server: DatabaseServer): Promise<string | undefined> {
  const key = describeServer(server);
  let probe = reachability.get(key);
  if (!probe) {
    probe = connectTo(server).then(
      (c) => c.end().then(() => undefined),
      (err: unknown) => `cannot reach MariaDB/MySQL at ${key}: ${errorText(err)}`,
    );
    reachability.set(key, probe);
  }
  return probe;
}

/**
 * Skips the test loudly (outside CI) or fails it (CI=true) when the database
 * it needs is not there. Returns true when the test should go on.
 */
function requireDatabase(t: TestContext, reason: string | undefined): boolean {
  return requireService(t, 'Database', reason, [
    'Start MariaDB on 127.0.0.1:3306 (root, empty password) or set TEST_DB_HOST,',
    'TEST_DB_PORT, TEST_DB_USER, TEST_DB_PASSWORD.',
  ]);
}

/**
 * A fresh database `vw_test_<random>` with the schema applied, dropped after
 * the test. With `create: false` the name is only reserved (and still dropped
 * after), for code that creates the database itself. Undefined when the test
 * was skipped for want of a server.
 */
export async function testDatabase(
  t: TestContext,
  server: DatabaseServer = testServer(),
  { create = true }: { create?: boolean } = {},
): Promise<TestDatabase | undefined> {
  if (!requireDatabase(t, await unreachableReason(server))) return undefined;
  const name = `vw_test_${randomBytes(6).toString('hex')}`;
  // A pool, not one connection: a private server may be stopped and started
  // under it, and a pool drops the lost connections.
  const pool = createPool({ ...settings(server), database: name, connectionLimit: 2, maxIdle: 0 });
  t.after(async () => {
    const admin = await connectTo(server).catch(() => undefined);
    await admin?.query(`DROP DATABASE IF EXISTS ${admin.escapeId(name)}`).catch(() => undefined);
    await admin?.end().catch(() => undefined);
    await pool.end().catch(() => undefined);
  });
  if (create) {
    const admin = await connectTo(server);
    await admin.query(`CREATE DATABASE ${admin.escapeId(name)}`);
    await admin.changeUser({ database: name });
    await admin.query(readFileSync(join(SQL_DIR, 'schema.sql'), 'utf8'));
    await admin.end();
  }

  const insert = async (sql: string, values: unknown[]) => (await pool.query<ResultSetHeader>(sql, values))[0].insertId;
  return {
    name,
    env: {
      DB_HOST: server.host,
      DB_PORT: String(server.port),
      DB_USER: server.user,
      DB_PASSWORD: server.password,
      DB_NAME: name,
    },
    query: async (sql, values) => (await pool.query(sql, values))[0],
    loadSample: async () => void (await pool.query(readFileSync(join(SQL_DIR, 'sample.sql'), 'utf8'))),
    addPlan: (planName, properties) => insert('INSERT INTO plans (name, properties) VALUES (?, ?)', [planName, asText(properties)]),
    addAccount: (accountName, token, properties, planId) =>
      insert('INSERT INTO accounts (name, token, properties, meta, planId) VALUES (?, ?, ?, ?, ?)', [
        accountName,
        token,
        asText(properties),
        '',
        planId,
      ]),
  };
}

export type PrivateMariadb = DatabaseServer & Restartable;

/**
 * A MariaDB server of the test's own on a temporary data directory and a free
 * loopback port, root with an empty password; removed after the test.
 */
export async function privateMariadb(t: TestContext): Promise<PrivateMariadb | undefined> {
  const daemon = findProgram('mariadbd', 'mysqld');
  const installer = findProgram('mariadb-install-db', 'mysql_install_db');
  if (!daemon || !installer) {
    requireDatabase(t, 'mariadbd and mariadb-install-db are not installed (apt-get install mariadb-server)');
    return undefined;
  }
  const dir = mkdtempSync(join(tmpdir(), 'vw-mariadb-'));
  const datadir = join(dir, 'data');
  const asRoot = process.getuid?.() === 0 ? ['--user=root'] : [];
  const installed = spawnSync(
    installer,
    ['--no-defaults', `--datadir=${datadir}`, '--auth-root-authentication-method=normal', '--skip-test-db', ...asRoot],
    { encoding: 'utf8', timeout: STARTUP_MS },
  );
  if (installed.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`mariadb-install-db failed: ${(installed.stderr || installed.stdout || '').trim().split('\n').pop()}`);
  }
  const port = await freePort();
  const server: DatabaseServer = { host: '127.0.0.1', port, user: 'root', password: '' };
  const launch = () =>
    spawn(
      daemon,
      [
        '--no-defaults',
        `--datadir=${datadir}`,
        `--port=${port}`,
        '--bind-address=127.0.0.1',
        `--socket=${join(dir, 'mariadb.sock')}`,
        `--pid-file=${join(dir, 'mariadb.pid')}`,
        `--log-error=${join(dir, 'error.log')}`,
        '--innodb-buffer-pool-size=16M',
        ...asRoot,
      ],
      { stdio: 'ignore' },
    );
  const accepting = async (child: ChildProcess) => {
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code) => reject(new Error(`mariadbd exited (${code}): ${lastLogLine(dir)}`))),
    );
    exited.catch(() => undefined);
    // Ready once it accepts a connection; polled, as it gives no other sign.
    const deadline = Date.now() + STARTUP_MS;
    for (;;) {
      const ready = await Promise.race([
        connectTo(server).then(
          (c) => c.end().then(() => true),
          () => false,
        ),
        exited,
      ]);
      if (ready) return;
      if (Date.now() > deadline) throw new Error(`mariadbd did not start within ${STARTUP_MS / 1000} s: ${lastLogLine(dir)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  const mariadb = restartable(launch, accepting);
  t.after(async () => {
    await mariadb.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await mariadb.start();
  return { ...server, ...mariadb };
}

function lastLogLine(dir: string): string {
  try {
    return readFileSync(join(dir, 'error.log'), 'utf8').trim().split('\n').pop() ?? '';
  } catch {
    return 'no error log';
  }
}
