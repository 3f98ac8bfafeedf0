// npm run bench [-- --quick] [--accounts] [--only connect,relay] [--rounds N] [--out file.json] [--no-build] [--cpu-prof]
// npm run bench -- --cluster [--quick] [--rounds N] [--out file.json] [--no-build]
//
// Measures this server against a bare Socket.IO relay (bench/bare-relay.ts),
// both over TLS, each in its own process pinned to its own core, driven by a
// load generator in another process (bench/load/). Scenarios run in rounds
// that alternate which server goes first; the table shows medians, and CPU and
// memory come from /proc. See bench/profile.ts for the counts. With --cpu-prof
// both servers run under `node --cpu-prof`, and each profile is summarised over
// the measurement windows only (profiles and summaries: bench/results/profiles.tmp/).
// With --cluster it measures one instance against two on Redis instead (bench/cluster.ts).
import { execFileSync, spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCluster } from './cluster';
import { summarize } from './cpu-profile';
import { details, format, median, round } from './report';
import { coreBusyMs, cpuMs } from './proc';
import {
  CLUSTER_FULL,
  CLUSTER_QUICK,
  FULL,
  metrics,
  QUICK,
  SCENARIOS,
  type ClusterProfile,
  type Job,
  type JobResult,
  type Metric,
  type Outcome,
  type Profile,
  type Scenario,
} from './profile';

const ROOT = resolve(__dirname, '..');
const COMPILED = join(ROOT, 'node_modules', '.cache', 'vw-bench');
const TOKEN = 'bench-static-token';
const API_KEY = 'bench-api-key';
const ACCOUNT_TOKEN = 'bench-account-token';

type Target = 'server' | 'baseline';
const TARGET_NAME: Record<Target, string> = { server: 'this server', baseline: 'bare relay' };

interface Options {
  profile: Profile;
  /** Set with --cluster: one instance against two on Redis, instead of against the bare relay. */
  cluster?: ClusterProfile;
  accounts: boolean;
  only: Scenario[];
  out: string;
  build: boolean;
  cpuProf: boolean;
}

function parseArgs(argv: string[]): Options {
  const flag = (name: string) => argv.includes(name);
  const value = (name: string) => {
    const at = argv.indexOf(name);
    return at >= 0 ? argv[at + 1] : undefined;
  };
  const profile: Profile = { ...(flag('--quick') ? QUICK : FULL) };
  const cluster = flag('--cluster') ? { ...(flag('--quick') ? CLUSTER_QUICK : CLUSTER_FULL) } : undefined;
  const rounds = value('--rounds');
  if (rounds) profile.rounds = Math.max(1, Number.parseInt(rounds, 10) || 1);
  if (rounds && cluster) cluster.rounds = profile.rounds;
  const asked = value('--only')?.split(',') ?? SCENARIOS;
  for (const s of asked) if (!SCENARIOS.includes(s as Scenario)) throw new Error(`unknown scenario ${s} (known: ${SCENARIOS.join(', ')})`);
  const only = SCENARIOS.filter((s) => asked.includes(s));
  const accounts = flag('--accounts');
  if (cluster && (accounts || flag('--only') || flag('--cpu-prof'))) throw new Error('--cluster goes with --quick, --rounds, --out and --no-build only');
  const quickName = cluster ? 'cluster-quick.json.tmp' : 'quick.json.tmp';
  const name = profile.name === 'quick' ? quickName : cluster ? 'cluster.json' : accounts ? 'latest-accounts.json' : 'latest.json';
  const out = resolve(value('--out') ?? join(ROOT, 'bench', 'results', name));
  return { profile, ...(cluster && { cluster }), accounts, only, out, build: !flag('--no-build'), cpuProf: flag('--cpu-prof') };
}

// Every process the bench starts, so that none outlives it.
const children = new Set<ChildProcess>();
function killAll() {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => {
    killAll();
    process.exit(130);
  });

const log = (line: string) => process.stderr.write(`${line}\n`);

interface CorePlan {
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
function corePlan(cluster: boolean): CorePlan {
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

function makeCertificate(dir: string): { prefix: string; ca: string } {
  const prefix = join(dir, 'localhost');
  // ECDSA P-256, as most certificates issued today: the TLS handshake then costs what it costs in production.
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1', '-keyout', `${prefix}.key`, '-out', `${prefix}.crt`],
    { stdio: 'ignore' },
  );
  return { prefix, ca: readFileSync(`${prefix}.crt`, 'utf8') };
}

const DB = {
  host: process.env.BENCH_DB_HOST ?? '127.0.0.1',
  port: Number(process.env.BENCH_DB_PORT ?? 3306),
  user: process.env.BENCH_DB_USER ?? 'root',
  password: process.env.BENCH_DB_PASSWORD ?? '',
  name: 'vw_bench',
};

/** The original's two tables in their own database, one account on a plan no scenario comes near. */
async function setupDatabase() {
  const mysql = await import('mysql2/promise');
  const conn = await mysql.createConnection({ host: DB.host, port: DB.port, user: DB.user, password: DB.password });
  try {
    await conn.query(`CREATE DATABASE IF NOT EXISTS ${DB.name}`);
    await conn.query(`USE ${DB.name}`);
    await conn.query(`CREATE TABLE IF NOT EXISTS accounts (
      id INT NOT NULL AUTO_INCREMENT, name VARCHAR(255) NOT NULL, token VARCHAR(255) NOT NULL, properties TEXT NOT NULL,
      planId INT, meta TEXT, contactId INT, created INT,
      PRIMARY KEY (id), UNIQUE KEY (token), KEY (planId), KEY (contactId), KEY (created))`);
    await conn.query(`CREATE TABLE IF NOT EXISTS plans (
      id INT NOT NULL AUTO_INCREMENT, name VARCHAR(255) NOT NULL, properties TEXT NOT NULL, PRIMARY KEY (id))`);
    const plan = JSON.stringify({ connections: 100000, totalBitrate: 100000000, bitrate: 10000, framerate: 60, audioBitrate: 512, width: 3840, height: 2160 });
    const [rows] = await conn.query<import('mysql2/promise').RowDataPacket[]>('SELECT id FROM plans WHERE name = ?', ['Bench Plan']);
    let planId = rows[0]?.id as number | undefined;
    if (planId === undefined) {
      const [inserted] = await conn.query<import('mysql2/promise').ResultSetHeader>('INSERT INTO plans (name, properties) VALUES (?, ?)', ['Bench Plan', plan]);
      planId = inserted.insertId;
    } else await conn.query('UPDATE plans SET properties = ? WHERE id = ?', [plan, planId]);
    await conn.query(
      `INSERT INTO accounts (name, token, properties, planId, meta, created) VALUES (?, ?, '{}', ?, '', UNIX_TIMESTAMP())
       ON DUPLICATE KEY UPDATE name = VALUES(name), properties = '{}', planId = VALUES(planId)`,
      ['Bench Account', ACCOUNT_TOKEN, planId],
    );
  } finally {
    await conn.end();
  }
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolvePort(port));
    });
  });
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

interface Running {
  pid: number;
  url: string;
  loopDelayFile: string;
  /** Stops the server; with --cpu-prof, resolves with its profile's path. */
  stop(): Promise<string | undefined>;
  /** A job's error with the server's name, whether it still runs, and the end of its log. */
  failed(err: unknown): Error;
}

interface Context {
  options: Options;
  cores: CorePlan;
  dir: string;
  cert: { prefix: string; ca: string };
  token: string;
}

/** Starts a server; `extra.env` is added to its environment, `extra.cores` replaces its core. */
async function startTarget(ctx: Context, target: Target, runId: string, extra: { env?: NodeJS.ProcessEnv; cores?: string } = {}): Promise<Running> {
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  const loopDelayFile = join(ctx.dir, `${runId}.loop-delay.json`);
  const logFile = join(ctx.dir, `${runId}.log`);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    NODE_ENV: 'production',
    PORT: String(port),
    HOST: '127.0.0.1',
    CERTIFICATE: ctx.cert.prefix,
    API_KEY,
    BENCH_LOOP_DELAY_FILE: loopDelayFile,
    ...extra.env,
  };
  if (target === 'baseline' || !ctx.options.accounts) env.STATIC_TOKEN = ctx.token;
  else
    Object.assign(env, { DB_HOST: DB.host, DB_PORT: String(DB.port), DB_USER: DB.user, DB_PASSWORD: DB.password, DB_NAME: DB.name });
  const script = target === 'server' ? join(ROOT, 'dist', 'main.js') : join(COMPILED, 'bare-relay.js');
  const profileDir = join(ctx.dir, `${runId}.profile`);
  const profiling = ctx.options.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
  const out = openSync(logFile, 'w');
  // The working directory is the bench's own, so no .env of the checkout is read.
  const child = spawnPinned(extra.cores ?? ctx.cores.server, [process.execPath, ...profiling, '--require', join(COMPILED, 'server-preload.js'), script], {
    cwd: ctx.dir,
    env,
    stdio: ['ignore', out, out, 'ipc'],
  });
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
  // On Redis, connections are refused until Redis answers: /ready says when.
  const probe = extra.env?.REDIS_URL ? '/ready' : '/';
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw failure(`exited (${child.exitCode ?? child.signalCode})`);
    if (performance.now() > deadline) {
      await stop();
      throw failure(`did not answer GET ${probe} within 20 s`);
    }
    const ok = await get(`${url}${probe}`, ctx.cert.ca).then((r) => r.status === 200, () => false);
    if (ok) break;
    await sleep(100);
  }
  if (target === 'server' && ctx.options.accounts) {
    const reloaded = await get(`${url}/update-accounts?apikey=${API_KEY}`, ctx.cert.ca).then((r) => JSON.parse(r.body) as { outcome?: string });
    if (reloaded.outcome !== 'reloaded') {
      await stop();
      throw failure(`could not load the accounts (${JSON.stringify(reloaded)})`);
    }
  }
  const failed = (err: unknown) => {
    const state = child.exitCode !== null || child.signalCode !== null ? `had exited (${child.exitCode ?? child.signalCode})` : 'was still running';
    return failure(`${state} when the job failed: ${err instanceof Error ? err.message : String(err)}`);
  };
  return { pid: child.pid as number, url, loopDelayFile, stop, failed };
}

function runLoad(ctx: Context, job: Job): Promise<Outcome> {
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

function ratioOf(metric: Metric, server: number, baseline: number): number {
  const floor = metric.floor ?? 0;
  const [s, b] = [Math.max(server, floor), Math.max(baseline, floor)];
  if (s === 0 && b === 0) return 1;
  return metric.higherIsBetter ? b / s : s / b;
}

type Results = Record<string, Record<string, { server: number; baseline: number; ratio: number }>>;

function table(profile: Profile, results: Results): string {
  const rows: string[][] = [['scenario', 'metric', TARGET_NAME.server, TARGET_NAME.baseline, 'ratio', 'target']];
  const defs = metrics(profile);
  for (const scenario of Object.keys(results) as Scenario[])
    for (const metric of defs[scenario]) {
      const r = results[scenario]?.[metric.key];
      if (!r) continue;
      let target = metric.target ? `${metric.target.text} ${r.ratio <= metric.target.max ? 'met' : 'MISSED'}` : '';
      if (metric.key === 'maxEventLoopDelayMs') target = `< 100 ms ${r.server < 100 ? 'met' : 'MISSED'}`;
      rows.push([scenario, metric.label, format(r.server), format(r.baseline), `${r.ratio.toFixed(2)}x`, target]);
    }
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((row) => (row[i] as string).length))) ?? [];
  const line = (row: string[]) => `| ${row.map((cell, i) => (i >= 2 && i <= 4 ? cell.padStart(widths[i] as number) : cell.padEnd(widths[i] as number))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i >= 2 && i <= 4 ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(rows[0] as string[]), rule, ...rows.slice(1).map(line)].join('\n');
}

/** What each scenario did, for the results page. */
function describe(p: Profile): string[] {
  const { connect: c, relay: r, join: j, massDisconnect: m } = p;
  return [
    `- connect: ${c.counts.join(' then ')} TLS WebSocket connections, ${c.concurrency} at a time, left idle; CPU over the ramps, RSS once settled minus RSS before.`,
    `- relay: ${r.pairs} broadcaster/player pairs exchanging messagePeer in turn (an offer and an answer of about 4.5 KB, eight candidates of about 300 B); ` +
      `latency from the scheduled send time; the highest rate climbs from ${r.search.start}/s by ×${r.search.factor} and is bisected ${r.search.refine} times, a rate failing only if it fails twice.`,
    `- join: ${j.workers} handshakes in flight over a pool of ${j.pairs} pairs (so each socket stays at a browser-like event rate), the idle sockets registered in channels of two.`,
    `- massDisconnect: ${m.peers} peers in channels of 2 to 4, held by a separate process that is killed (SIGKILL); GET / probed every ${m.probeEveryMs} ms on kept-alive connections; the event-loop delay comes from a preloaded monitorEventLoopDelay.`,
  ];
}

/** Keeps a run's CPU profile and its summary beside the results, and shows the summary. */
function keepProfile(out: string, runId: string, file: string, windows: Outcome['windows']) {
  const summary = summarize(file, windows);
  const dir = join(dirname(out), 'profiles.tmp');
  mkdirSync(dir, { recursive: true });
  copyFileSync(file, join(dir, `${runId}.cpuprofile`));
  writeFileSync(join(dir, `${runId}.txt`), `${summary}\n`);
  writeFileSync(join(dir, `${runId}.windows.json`), `${JSON.stringify(windows)}\n`);
  log(`  profile ${runId}:\n${summary.replace(/^/gm, '    ')}`);
}

function machine(cores: CorePlan): string {
  const cpu = os.cpus()[0]?.model.trim() ?? 'unknown CPU';
  const memory = `${Math.round(os.totalmem() / 2 ** 30)} GiB`;
  return `${cpu}, ${os.availableParallelism()} cores, ${memory}, Linux ${os.release()}, Node ${process.version}; ${cores.description}`;
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const { profile } = options;
  const started = performance.now();
  if (!existsSync('/proc/self/stat')) throw new Error('the benchmark reads /proc: it needs Linux');
  if (options.build) execFileSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  // TypeScript 7's compiler; the package named typescript is the 6.0 API the linter reads.
  const tsc = join(dirname(require.resolve('@typescript/native/package.json')), 'bin', 'tsc');
  execFileSync(process.execPath, [tsc, '-p', join(ROOT, 'bench', 'tsconfig.json')], {
    cwd: ROOT,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (options.accounts) await setupDatabase();

  const dir = mkdtempSync(join(os.tmpdir(), 'vw-bench-'));
  try {
    const ctx: Context = {
      options,
      cores: corePlan(options.cluster !== undefined),
      dir,
      cert: makeCertificate(dir),
      token: options.accounts ? ACCOUNT_TOKEN : TOKEN,
    };
    if (options.cluster) {
      await runCluster({
        profile: options.cluster,
        base: profile,
        out: options.out,
        machine: machine(ctx.cores),
        cores: ctx.cores,
        token: ctx.token,
        ca: ctx.cert.ca,
        startServer: (runId, env, cores) => startTarget(ctx, 'server', runId, { env, cores }),
        runLoad: (job) => runLoad(ctx, job),
        log,
      });
      return;
    }
    log(`bench (${profile.name}${options.accounts ? ', MySQL accounts' : ', static token'}): ${machine(ctx.cores)}`);
    const defs = metrics(profile);
    const figures: Record<string, Record<Target, Record<string, number>[]>> = {};
    const notes: string[] = [];
    for (const scenario of options.only) {
      figures[scenario] = { server: [], baseline: [] };
      for (let r = 0; r < profile.rounds; r++) {
        const order: Target[] = r % 2 === 0 ? ['server', 'baseline'] : ['baseline', 'server'];
        for (const target of order) {
          const t0 = performance.now();
          const runId = `${scenario}-${target}-${r + 1}`;
          const running = await startTarget(ctx, target, runId);
          let result: Outcome | undefined;
          try {
            const job: Job = { scenario, profile, url: running.url, token: ctx.token, ca: ctx.cert.ca, pid: running.pid, loopDelayFile: running.loopDelayFile };
            // Others' work on the server's core, which the medians cannot fully hide.
            const core = Number(ctx.cores.server);
            const [busy0, server0, wall0] = [coreBusyMs(core), cpuMs(running.pid), performance.now()];
            result = await runLoad(ctx, job).catch((err: unknown) => {
              throw running.failed(err);
            });
            const others = coreBusyMs(core) - busy0 - (cpuMs(running.pid) - server0);
            if (ctx.cores.server !== undefined) result.notes.othersOnServerCorePct = Math.max(0, (others / (performance.now() - wall0)) * 100);
            figures[scenario]?.[target].push(result.figures);
            const shown = Object.entries(result.notes).map(([k, v]) => `${k} ${format(v)}`).join(', ');
            notes.push(`${scenario} round ${r + 1} ${TARGET_NAME[target]}: ${shown}`);
            log(`  ${scenario} round ${r + 1}/${profile.rounds} ${TARGET_NAME[target]}: ${((performance.now() - t0) / 1000).toFixed(1)} s${shown ? ` (${shown})` : ''}`);
          } finally {
            const profileFile = await running.stop();
            if (profileFile && result) keepProfile(options.out, runId, profileFile, result.windows);
          }
          await sleep(300);
        }
      }
    }

    const results: Results = {};
    for (const scenario of options.only) {
      const perScenario: Results[string] = {};
      for (const metric of defs[scenario]) {
        const pick = (t: Target) => median((figures[scenario]?.[t] ?? []).map((f) => f[metric.key] ?? Number.NaN));
        const [server, baseline] = [pick('server'), pick('baseline')];
        perScenario[metric.key] = { server: round(server), baseline: round(baseline), ratio: round(ratioOf(metric, server, baseline)) };
      }
      results[scenario] = perScenario;
    }

    const text = table(profile, results);
    const seconds = Math.round((performance.now() - started) / 1000);
    process.stdout.write(`\n${text}\n\nratio > 1: this server costs more (for rates: reaches less). Medians of ${profile.rounds} round(s); ${seconds} s.\n`);
    mkdirSync(dirname(options.out), { recursive: true });
    writeFileSync(options.out, `${JSON.stringify(results, null, 2)}\n`);
    if (options.out.endsWith('.json')) {
      const md = [
        `Measured ${new Date().toISOString().slice(0, 10)} with \`npm run bench${options.accounts ? ' -- --accounts' : ''}\` (${profile.name}, ${profile.rounds} round(s), ${seconds} s)`,
        `on ${machine(ctx.cores)}.`,
        '',
        text,
        '',
        'ratio > 1: this server costs more (for rates: reaches less than the bare relay).',
        '',
        ...describe(profile),
        '',
        ...details(
          'Every round (medians above)',
          options.only.flatMap((scenario) =>
            defs[scenario].map((metric) => {
              const rounds = (t: Target) => (figures[scenario]?.[t] ?? []).map((f) => format(f[metric.key] ?? Number.NaN)).join(', ');
              return `${scenario} ${metric.key}: ${TARGET_NAME.server} ${rounds('server')}; ${TARGET_NAME.baseline} ${rounds('baseline')}`;
            }),
          ),
        ),
        ...details('Per-run notes', notes),
      ].join('\n');
      writeFileSync(options.out.replace(/\.json$/, '.md'), md);
    }
    log(`written: ${options.out}`);
  } finally {
    killAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  killAll();
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
