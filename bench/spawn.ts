// The bench's processes: the servers under test and the load generator, each
// pinned to its own core(s), none outliving the bench.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../test/helpers/ports';
import type { KeyType } from '../test/helpers/tls';
import { ROOT, type Options } from './args';
import { databaseEnv } from './database';
import type { Job, JobResult, Outcome } from './profile';

export const COMPILED = join(ROOT, 'node_modules', '.cache', 'vw-bench');
export const API_KEY = 'bench-api-key';
/** The glibc malloc setting the Dockerfile and ecosystem.config.js give the server. */
const SHIPPED_MALLOC_TRIM_THRESHOLD = '131072';

export type Target = 'server' | 'baseline';
export const TARGET_NAME: Record<Target, string> = { server: 'this server', baseline: 'bare relay' };

export const log = (line: string) => process.stderr.write(`${line}\n`);

// Every process the bench starts, so that none outlives it.
const children = new Set<ChildProcess>();
export function killAll() {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => {
    killAll();
    process.exit(130);
  });

export interface CorePlan {
  server?: string;
  /** With --cluster: the second instance's core. */
  second?: string;
  load?: string;
  description: string;
}

/**
 * Cores: the servers get the last one, the load generator the others; none
 * when taskset or a second core is missing. With --cluster the second
 * instance gets the next core down, which on two cores is the load generator's.
 */
export function corePlan(cluster: boolean): CorePlan {
  const cores = os.availableParallelism();
  const taskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;
  if (!taskset || cores < 2) return { description: `not pinned (${taskset ? 'one core' : 'no taskset'})` };
  const server = String(cores - 1);
  if (!cluster) {
    const load = cores === 2 ? '0' : `0-${cores - 2}`;
    return { server, load, description: `servers on core ${server}, load generator on core(s) ${load}` };
  }
  if (cores === 2)
    return {
      server,
      second: '0',
      load: '0',
      description: 'instance A on core 1; instance B and the load generator share core 0 (two cores only); Redis not pinned',
    };
  const load = cores === 3 ? '0' : `0-${cores - 3}`;
  return {
    server,
    second: String(cores - 2),
    load,
    description: `instance A on core ${server}, instance B on core ${cores - 2}, load generator on core(s) ${load}; Redis not pinned`,
  };
}

/** Starts `argv` pinned to `cores`, with the open-files limit raised to the hard limit (10,000 sockets need it). */
function spawnPinned(cores: string | undefined, argv: string[], options: SpawnOptions): ChildProcess {
  const shell = ['sh', '-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'sh', ...argv];
  const [command, ...args] = cores ? ['taskset', '-c', cores, ...shell] : shell;
  const child = spawn(command as string, args, options);
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

function get(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolveGet, reject) => {
    const req = https.get(url, { ca, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolveGet({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

export interface Running {
  pid: number;
  url: string;
  loopDelayFile: string;
  /** Stops the server; with --cpu-prof, resolves with its profile's path. */
  stop(): Promise<string | undefined>;
  /** A job's error with the server's name, whether it still runs, and the end of its log. */
  failed(err: unknown): Error;
}

export interface Context {
  options: Options;
  cores: CorePlan;
  /** The run's temporary directory: certificates, logs, loop-delay files. */
  dir: string;
  /** Certificate prefixes by key type; `ca` trusts both. */
  cert: { ecdsa: string; rsa: string; ca: string };
  token: string;
}

/**
 * Starts a server; `extra.env` is added to its environment, `extra.cores`
 * replaces its core. The bare relay is on RSA-2048, as most relays deployed
 * so far; this server on ECDSA P-256, as the README recommends, unless
 * `extra.keyType` says otherwise.
 */
export async function startTarget(
  ctx: Context,
  target: Target,
  runId: string,
  extra: { env?: NodeJS.ProcessEnv; cores?: string; keyType?: KeyType } = {},
): Promise<Running> {
  const keyType = extra.keyType ?? (target === 'baseline' ? 'rsa' : 'ecdsa');
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  const loopDelayFile = join(ctx.dir, `${runId}.loop-delay.json`);
  const logFile = join(ctx.dir, `${runId}.log`);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    NODE_ENV: 'production',
    PORT: String(port),
    HOST: '127.0.0.1',
    CERTIFICATE: ctx.cert[keyType],
    API_KEY,
    BENCH_LOOP_DELAY_FILE: loopDelayFile,
    ...extra.env,
  };
  // This server runs as the Dockerfile and ecosystem.config.js start it; the relay on glibc's
  // defaults, as a relay deployed as-is (the README gives the relay's figure with it too).
  if (target === 'server') env.MALLOC_TRIM_THRESHOLD_ ??= SHIPPED_MALLOC_TRIM_THRESHOLD;
  if (target === 'baseline' || !ctx.options.accounts) env.STATIC_TOKEN = ctx.token;
  else Object.assign(env, databaseEnv());
  const script = target === 'server' ? join(ROOT, 'dist', 'main.js') : join(COMPILED, 'bare-relay.js');
  const profileDir = join(ctx.dir, `${runId}.profile`);
  const profiling = ctx.options.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
  const out = openSync(logFile, 'w');
  // The working directory is the bench's own, so no .env of the checkout is read.
  const child = spawnPinned(
    extra.cores ?? ctx.cores.server,
    [
      target === 'server' ? (ctx.options.serverNode?.path ?? process.execPath) : process.execPath,
      ...profiling,
      '--require',
      join(COMPILED, 'server-preload.js'),
      script,
    ],
    {
      cwd: ctx.dir,
      env,
      stdio: ['ignore', out, out, 'ipc'],
    },
  );
  closeSync(out);
  child.on('message', () => undefined); // the server's pm2-style 'ready'
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const stop = async () => {
    if (!profiling.length) {
      child.kill('SIGKILL');
      await exited;
      return undefined;
    }
    // An orderly exit writes the profile.
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(killer);
    const file = existsSync(profileDir) ? readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile')) : undefined;
    return file && join(profileDir, file);
  };
  const failure = (why: string) => new Error(`${TARGET_NAME[target]} ${why}; its log:\n${readFileSync(logFile, 'utf8').slice(-3000)}`);
  const deadline = performance.now() + 20_000;
  // On Redis, connections are refused until Redis answers, and accounts from a file until they are read: /ready says when.
  const probe = extra.env?.REDIS_URL || extra.env?.REDIS_CLUSTER_NODES || extra.env?.ACCOUNTS_FILE ? '/ready' : '/';
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw failure(`exited (${child.exitCode ?? child.signalCode})`);
    if (performance.now() > deadline) {
      await stop();
      throw failure(`did not answer GET ${probe} within 20 s`);
    }
    const ok = await get(`${url}${probe}`, ctx.cert.ca).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) break;
    await sleep(100);
  }
  if (target === 'server' && ctx.options.accounts) {
    const reloaded = await get(`${url}/update-accounts?apikey=${API_KEY}`, ctx.cert.ca).then(
      (r) => JSON.parse(r.body) as { outcome?: string },
    );
    if (reloaded.outcome !== 'reloaded') {
      await stop();
      throw failure(`could not load the accounts (${JSON.stringify(reloaded)})`);
    }
  }
  const failed = (err: unknown) => {
    const state =
      child.exitCode !== null || child.signalCode !== null ? `had exited (${child.exitCode ?? child.signalCode})` : 'was still running';
    return failure(`${state} when the job failed: ${err instanceof Error ? err.message : String(err)}`);
  };
  return { pid: child.pid as number, url, loopDelayFile, stop, failed };
}

/** Runs one job in a fresh load generator process. */
export function runLoad(ctx: Context, job: Job): Promise<Outcome> {
  return new Promise((resolveJob, reject) => {
    const child = spawnPinned(ctx.cores.load, [process.execPath, join(COMPILED, 'load', 'index.js')], {
      cwd: ctx.dir,
      env: { PATH: process.env.PATH, ...(process.env.BENCH_DEBUG && { BENCH_DEBUG: process.env.BENCH_DEBUG }) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const limitMs = ctx.options.profile.name === 'quick' ? 60_000 : 300_000;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${job.scenario}: the load generator took more than ${limitMs / 1000} s`));
    }, limitMs);
    child.once('message', (result: JobResult) => {
      clearTimeout(timer);
      if (result.ok) resolveJob(result);
      else reject(new Error(`${job.scenario}: ${result.error}`));
    });
    // The result may still be in the IPC pipe when the exit is seen.
    child.once('exit', (code, signal) =>
      setTimeout(() => {
        clearTimeout(timer);
        reject(new Error(`${job.scenario}: the load generator exited (${code ?? signal}) without a result`));
      }, 1000),
    );
    child.send(job);
  });
}

/** The machine and the core plan, as the results page states them. */
export function machine(cores: CorePlan, serverNode?: Options['serverNode']): string {
  const cpu = os.cpus()[0]?.model.trim() ?? 'unknown CPU';
  const memory = `${Math.round(os.totalmem() / 2 ** 30)} GiB`;
  const node = serverNode ? `Node ${process.version} (this server on Node ${serverNode.version})` : `Node ${process.version}`;
  return `${cpu}, ${os.availableParallelism()} cores, ${memory}, Linux ${os.release()}, ${node}; ${cores.description}`;
}
