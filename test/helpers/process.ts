// Programs the tests run as processes of their own: the server itself
// (src/main.ts, as pm2 runs it) for what only another process shows (signals,
// a kill, the exit code), and the daemons the helpers start (redis-server,
// mariadbd, coturn).
import { spawn, type ChildProcess, type ChildProcessByStdio } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Readable } from 'node:stream';
import { freePort } from './ports';
import { API_KEY, TOKEN } from './server';
import { testCertificate } from './tls';
import { STARTUP_MS, within } from './wait';

// Kept importable from here, where the tests have always found it.
export { freePort };

/** Where a test's cleanups go: the test itself, or a scope that must close first (TestRedis.onCleanup). */
export interface Cleanup {
  after(fn: () => void): void;
}

/** The first of `names` on the PATH or in the usual system directories. */
export function findProgram(...names: string[]): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/usr/local/bin', '/usr/bin'];
  for (const name of names) for (const dir of dirs) if (dir && existsSync(join(dir, name))) return join(dir, name);
  return undefined;
}

/** Resolves once `child` has written `ready` to stdout; fails if it exits first, or after `ms`. */
export function waitForOutput(child: ChildProcess, name: string, ready: RegExp, ms = STARTUP_MS): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = '';
    const done = (error?: Error) => {
      clearTimeout(timer);
      child.stdout?.off('data', read);
      child.off('exit', exited);
      // Later output is drained unread: a full pipe would block the program.
      child.stdout?.resume();
      if (error) reject(error);
      else resolve();
    };
    const read = (chunk: Buffer) => {
      output += chunk.toString();
      if (ready.test(output)) done();
    };
    const exited = (code: number | null) => done(new Error(`${name} exited (${code}): ${output.slice(-500)}`));
    const timer = setTimeout(() => done(new Error(`${name} did not start within ${ms / 1000} s: ${output.slice(-500)}`)), ms);
    child.stdout?.on('data', read);
    child.once('exit', exited);
  });
}

export interface Restartable {
  /** Starts the program and resolves once it serves; nothing to do while it runs. */
  start(): Promise<void>;
  /** Stops it (SIGTERM) and resolves once it has exited: its port then refuses connections. */
  stop(): Promise<void>;
}

/**
 * A daemon a test can stop and start again: `launch` spawns it, `ready`
 * resolves once it serves. Should the test process exit while it runs, it is
 * killed too; stopping it after the test is the caller's.
 */
export function restartable(launch: () => ChildProcess, ready: (child: ChildProcess) => Promise<void>): Restartable {
  let running: ChildProcess | undefined;
  const killOnExit = () => running?.kill('SIGKILL');
  return {
    async start() {
      if (running) return;
      const child = launch();
      running = child;
      process.once('exit', killOnExit);
      await ready(child);
    },
    async stop() {
      const child = running;
      if (!child) return;
      running = undefined;
      process.off('exit', killOnExit);
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await within(exited, 'the program to exit after SIGTERM', 30_000);
    },
  };
}

type LogLine = Record<string, unknown>;

export interface ServerProcess {
  child: ChildProcessByStdio<null, Readable, Readable>;
  port: number;
  /** https://127.0.0.1:<port> */
  url: string;
  /** Every log line it has written so far, parsed. */
  lines: LogLine[];
  /** Everything it has written to stderr so far. */
  stderr(): string;
  /**
   * The first log line, written already or still to come, whose `msg` is
   * `match` or that `match` accepts; fails after `ms` or once the server exits.
   */
  waitForLog(match: string | ((line: LogLine) => boolean), ms?: number): Promise<LogLine>;
  /** Its exit code once it has exited and its output is read (null when a signal ended it). */
  exited: Promise<number | null>;
}

const MAIN = join(__dirname, '..', '..', 'src', 'main.ts');

/**
 * The environment of a server process: what `startServer` gives an in-process
 * server (production, TLS, the static token, the API key, a free port) and
 * `env` over it, where undefined removes a variable.
 */
export function serverEnv(env: Record<string, string | undefined> = {}): Record<string, string> {
  const settings: Record<string, string | undefined> = {
    ...process.env,
    NODE_ENV: 'production',
    PORT: '0',
    HOST: '127.0.0.1',
    CERTIFICATE: testCertificate().prefix,
    STATIC_TOKEN: TOKEN,
    API_KEY,
    LOG_LEVEL: 'info',
    // A developer's .env must not change the server under test.
    DOTENV_CONFIG_PATH: '/nonexistent',
    ...env,
  };
  return Object.fromEntries(Object.entries(settings).filter((entry): entry is [string, string] => entry[1] !== undefined));
}

/**
 * src/main.ts in a process of its own, with `serverEnv(env)`. Resolves once
 * it listens; killed after the test.
 */
export async function spawnServer(cleanup: Cleanup, env: Record<string, string | undefined> = {}): Promise<ServerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN], { env: serverEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  cleanup.after(() => void child.kill('SIGKILL'));

  const lines: LogLine[] = [];
  let stderr = '';
  let closed = false;
  // Pending waitForLog calls, asked again on every line and at the exit.
  const waiters = new Set<() => void>();
  const recheck = () => [...waiters].forEach((check) => check());
  const exited = new Promise<number | null>((resolve) =>
    child.once('close', (code: number | null) => {
      closed = true;
      recheck();
      resolve(code);
    }),
  );

  let partial = '';
  child.stdout.on('data', (chunk: Buffer) => {
    const parts = (partial + chunk.toString()).split('\n');
    partial = parts.pop() ?? '';
    for (const part of parts.filter((p) => p.trim())) {
      try {
        lines.push(JSON.parse(part) as LogLine);
      } catch {
        lines.push({ msg: part }); // not a log line: kept as its text
      }
    }
    recheck();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    // Shown as if inherited, so that a crash is seen in the test's output.
    process.stderr.write(chunk);
  });

  const waitForLog = (match: string | ((line: LogLine) => boolean), ms = 20_000) => {
    const accepts = typeof match === 'string' ? (line: LogLine) => line.msg === match : match;
    return new Promise<LogLine>((resolve, reject) => {
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        waiters.delete(check);
        settle();
      };
      const fail = (why: string) =>
        finish(() => reject(new Error(`${why}; last lines: ${JSON.stringify(lines.slice(-3))} ${stderr.slice(-500)}`)));
      const check = () => {
        const hit = lines.find(accepts);
        if (hit) finish(() => resolve(hit));
        else if (closed) fail('the server exited without logging the line awaited');
      };
      const timer = setTimeout(() => fail(`the log line awaited not seen within ${ms} ms`), ms);
      timer.unref();
      waiters.add(check);
      check();
    });
  };

  // The startup line names the port it got.
  const started = await waitForLog((l) => String(l.msg).startsWith('VideoWhisper WebRTC signaling on'), STARTUP_MS);
  const port = Number(/:(\d+)\/ \(/.exec(String(started.msg))?.[1]);
  return { child, port, url: `https://127.0.0.1:${port}`, lines, stderr: () => stderr, waitForLog, exited };
}
