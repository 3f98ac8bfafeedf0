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
//
// The parts: bench/args.ts (the command line), bench/spawn.ts (the processes),
// bench/report.ts (medians, table, results page), bench/database.ts (--accounts).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeCertificate } from '../test/helpers/tls';
import { parseArgs, ROOT } from './args';
import { runCluster } from './cluster';
import { setupDatabase } from './database';
import { coreBusyMs, cpuMs } from './proc';
import { metrics, type Job, type Outcome, type Scenario } from './profile';
import { describe, details, format, keepProfile, median, ratioOf, round, table, type Results } from './report';
import { corePlan, killAll, log, machine, runLoad, startTarget, TARGET_NAME, type Context, type Target } from './spawn';

const TOKEN = 'bench-static-token';
const ACCOUNT_TOKEN = 'bench-account-token';

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
  if (options.accounts) await setupDatabase(ACCOUNT_TOKEN);

  const dir = mkdtempSync(join(os.tmpdir(), 'vw-bench-'));
  try {
    // Both key types: the relay is measured on RSA-2048 (the baseline), this server on ECDSA P-256 and, in connectRsa, on RSA.
    const cert = { ecdsa: join(dir, 'ecdsa'), rsa: join(dir, 'rsa') };
    const ca = [makeCertificate(cert.ecdsa, 'ecdsa'), makeCertificate(cert.rsa, 'rsa')].map((pem) => pem.toString('utf8')).join('');
    const ctx: Context = {
      options,
      cores: corePlan(options.cluster !== undefined),
      dir,
      cert: { ...cert, ca },
      token: options.accounts ? ACCOUNT_TOKEN : TOKEN,
    };
    const described = machine(ctx.cores, options.serverNode);
    if (options.cluster) {
      await runCluster({
        profile: options.cluster,
        base: profile,
        out: options.out,
        machine: described,
        cores: ctx.cores,
        token: ctx.token,
        ca: ctx.cert.ca,
        startServer: (runId, env, cores) => startTarget(ctx, 'server', runId, { env, cores }),
        runLoad: (job) => runLoad(ctx, job),
        log,
      });
      return;
    }
    log(`bench (${profile.name}${options.accounts ? ', MySQL accounts' : ', static token'}): ${described}`);
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
          const running = await startTarget(ctx, target, runId, scenario === 'connectRsa' ? { keyType: 'rsa' } : {});
          let result: Outcome | undefined;
          try {
            const job: Job = {
              scenario,
              profile,
              url: running.url,
              token: ctx.token,
              ca: ctx.cert.ca,
              pid: running.pid,
              loopDelayFile: running.loopDelayFile,
            };
            // This server's clients resume their TLS sessions; the relay's reconnect as socket.io-client does by default.
            if (scenario === 'reconnect') job.resume = target === 'server';
            // Others' work on the server's core, which the medians cannot fully hide.
            const core = Number(ctx.cores.server);
            const [busy0, server0, wall0] = [coreBusyMs(core), cpuMs(running.pid), performance.now()];
            result = await runLoad(ctx, job).catch((err: unknown) => {
              throw running.failed(err);
            });
            const others = coreBusyMs(core) - busy0 - (cpuMs(running.pid) - server0);
            if (ctx.cores.server !== undefined)
              result.notes.othersOnServerCorePct = Math.max(0, (others / (performance.now() - wall0)) * 100);
            figures[scenario]?.[target].push(result.figures);
            const shown = Object.entries(result.notes)
              .map(([k, v]) => `${k} ${format(v)}`)
              .join(', ');
            notes.push(`${scenario} round ${r + 1} ${TARGET_NAME[target]}: ${shown}`);
            log(
              `  ${scenario} round ${r + 1}/${profile.rounds} ${TARGET_NAME[target]}: ${((performance.now() - t0) / 1000).toFixed(1)} s${shown ? ` (${shown})` : ''}`,
            );
          } finally {
            const profileFile = await running.stop();
            if (profileFile && result) {
              const summary = keepProfile(options.out, runId, profileFile, result.windows);
              log(`  profile ${runId}:\n${summary.replace(/^/gm, '    ')}`);
            }
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

    const text = table(profile, results, TARGET_NAME);
    const seconds = Math.round((performance.now() - started) / 1000);
    process.stdout.write(
      `\n${text}\n\nratio > 1: this server costs more (for rates: reaches less). Medians of ${profile.rounds} round(s); ${seconds} s.\n`,
    );
    mkdirSync(dirname(options.out), { recursive: true });
    writeFileSync(options.out, `${JSON.stringify(results, null, 2)}\n`);
    if (options.out.endsWith('.json')) {
      const md = [
        `Measured ${new Date().toISOString().slice(0, 10)} with \`npm run bench${options.accounts ? ' -- --accounts' : ''}\` (${profile.name}, ${profile.rounds} round(s), ${seconds} s)`,
        `on ${described}.`,
        '',
        text,
        '',
        'ratio > 1: this server costs more (for rates: reaches less than the bare relay).',
        '',
        ...describe(profile),
        '',
        ...details(
          'Every round (medians above)',
          options.only.flatMap((scenario: Scenario) =>
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
