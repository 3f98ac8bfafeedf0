// npm run bench -- --cluster [--quick]: what sharing state through Redis
// costs and what a second instance brings. The join scenario (complete
// handshakes, bench/load/join.ts) runs three ways: one instance in memory,
// one instance on Redis, and two instances on Redis with each pair's
// broadcaster on A and its player on B, so all signaling crosses instances.
// Then Redis round trips are counted per event, one kind at a time
// (bench/load/redis-events.ts). Each run has a REDIS_PREFIX of its own whose
// keys (the adapter's stream included) are deleted after it.
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startRedisCluster, type TestRedisCluster } from '../test/helpers/redis-cluster';
import {
  clusterMetrics,
  ON_REDIS_CLUSTER,
  SETUP_NAME,
  SETUPS,
  type ClusterProfile,
  type Job,
  type Outcome,
  type Profile,
  type Setup,
} from './profile';
import { details, format, markdownTable, median, round } from './report';
import { runShards, type ShardsReport } from './shards';

const REDIS_URL = process.env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379';

interface ServerProcess {
  pid: number;
  url: string;
  loopDelayFile: string;
  stop(): Promise<unknown>;
  failed(err: unknown): Error;
}

/** What bench/run.ts lends: its processes and pinning. */
export interface ClusterHarness {
  profile: ClusterProfile;
  /** The bench's profile, whose join settings the cluster profile replaces. */
  base: Profile;
  out: string;
  machine: string;
  cores: { server?: string; second?: string; load?: string; description: string };
  token: string;
  ca: string;
  startServer(runId: string, env: NodeJS.ProcessEnv, cores: string | undefined): Promise<ServerProcess>;
  runLoad(job: Job): Promise<Outcome>;
  log(line: string): void;
}

type Results = Record<string, Partial<Record<Setup, number>>>;

type RedisClient = ReturnType<typeof import('redis').createClient>;

async function connectRedis(): Promise<RedisClient> {
  // Loaded here, so the bench without --cluster never loads it.
  const { createClient } = await import('redis');
  const client = createClient({ url: REDIS_URL, socket: { reconnectStrategy: false, connectTimeout: 3000 } });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    throw new Error(`--cluster needs Redis at ${REDIS_URL} (or set BENCH_REDIS_URL): ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
  return client;
}

async function deleteKeys(client: RedisClient, prefix: string) {
  let cursor = '0';
  do {
    const [next, keys] = (await client.sendCommand(['SCAN', cursor, 'MATCH', `${prefix}*`, 'COUNT', '1000'])) as [string, string[]];
    if (keys.length) await client.sendCommand(['DEL', ...keys]);
    cursor = next;
  } while (cursor !== '0');
}

export async function runCluster(h: ClusterHarness): Promise<void> {
  const started = performance.now();
  const { profile } = h;
  const jobProfile: Profile = { ...h.base, rounds: profile.rounds, join: profile.join };
  const idle = profile.join.background.at(-1) ?? 0;
  const redis = await connectRedis();
  const runTag = `vwbench:${randomBytes(4).toString('hex')}:`;
  h.log(`bench --cluster (${profile.name}): ${h.machine}`);
  // Three masters without replicas on loopback ports, for the setups on a Redis Cluster, with
  // Redis's default cluster-node-timeout (15 s) as a production cluster has it: the tests' 1 s makes
  // every node ping every other twice a second, CPU that each master pays out of its quota below.
  const redisCluster: TestRedisCluster = await startRedisCluster({
    masters: 3,
    replicas: 0,
    nodeTimeoutMs: 15_000,
  });
  const masters = redisCluster.nodes.map((n) => `redis://${n.address}`).join(',');
  try {
    /** Starts the setup's servers, runs the job on them, stops them and deletes the run's keys. */
    const run = async (setup: Setup, runId: string, job: Pick<Job, 'scenario'> & Partial<Job>): Promise<Outcome> => {
      const prefix = `${runTag}${runId}:`;
      const onCluster = ON_REDIS_CLUSTER.includes(setup);
      const env =
        setup === 'memory'
          ? {}
          : onCluster
            ? { REDIS_CLUSTER_NODES: redisCluster.seeds, REDIS_PREFIX: prefix }
            : { REDIS_URL, REDIS_PREFIX: prefix };
      const servers: ServerProcess[] = [];
      try {
        servers.push(await h.startServer(`${runId}-a`, env, h.cores.server));
        if (setup === 'twoInstances' || setup === 'twoOnRedisCluster') servers.push(await h.startServer(`${runId}-b`, env, h.cores.second));
        const [a, b] = servers as [ServerProcess, ServerProcess | undefined];
        const outcome = h.runLoad({
          profile: jobProfile,
          url: a.url,
          token: h.token,
          ca: h.ca,
          pid: a.pid,
          loopDelayFile: a.loopDelayFile,
          pids: servers.map((s) => s.pid),
          ...(b && { playerUrl: b.url }),
          ...(setup !== 'memory' && { redisUrl: onCluster ? masters : REDIS_URL }),
          ...job,
        });
        // Each server's state and log, since any of them may be the one that stalled.
        return await outcome.catch((err: unknown) => {
          throw new Error(servers.map((s) => s.failed(err).message).join('\n'));
        });
      } finally {
        await Promise.all(servers.map((s) => s.stop()));
        if (setup !== 'memory' && !onCluster) await deleteKeys(redis, prefix);
      }
    };

    const figures: Record<Setup, Record<string, number>[]> = {
      memory: [],
      redis: [],
      twoInstances: [],
      redisCluster: [],
      twoOnRedisCluster: [],
    };
    const notes: string[] = [];
    if (profile.shardsOnly) {
      const shards = await runShards(h, redisCluster);
      const seconds = Math.round((performance.now() - started) / 1000);
      process.stdout.write(
        `\nRedis as the limit (bench/shards.ts):\n\n${shards.text}\n\n${shards.notes.join('\n')}\n\nCores: ${h.cores.description}; ${seconds} s.\n`,
      );
      mkdirSync(dirname(h.out), { recursive: true });
      writeFileSync(h.out, `${JSON.stringify({ shards: shards.result }, null, 2)}\n`);
      h.log(`written: ${h.out}`);
      return;
    }
    const shown = (o: Outcome) =>
      Object.entries(o.notes)
        .map(([k, v]) => `${k} ${format(v)}`)
        .join(', ');
    for (let r = 0; r < profile.rounds; r++) {
      // The setups take turns at going first.
      const order = SETUPS.map((_, i) => SETUPS[(i + r) % SETUPS.length] as Setup);
      for (const setup of order) {
        const t0 = performance.now();
        const outcome = await run(setup, `join-${setup}-${r + 1}`, { scenario: 'join' });
        const f = outcome.figures;
        figures[setup].push({
          handshakesPerSec: f[`handshakesPerSec@${idle}idle`] ?? Number.NaN,
          serverCpuPerHandshakeUs: f[`cpuPerHandshakeUs@${idle}idle`] ?? Number.NaN,
          ...(setup !== 'memory' && {
            redisCpuPerHandshakeUs: f[`redisCpuPerHandshakeUs@${idle}idle`] ?? Number.NaN,
            redisCommandsPerHandshake: f[`redisCommandsPerHandshake@${idle}idle`] ?? Number.NaN,
          }),
        });
        notes.push(`join round ${r + 1} ${SETUP_NAME[setup]}: ${shown(outcome)}`);
        h.log(
          `  join round ${r + 1}/${profile.rounds} ${SETUP_NAME[setup]}: ${((performance.now() - t0) / 1000).toFixed(1)} s (${shown(outcome)})`,
        );
        await sleep(300);
      }
    }

    // Counts, not rates: one run per setup is enough.
    const events: Partial<Record<Setup, Outcome>> = {};
    for (const setup of ['redis', 'twoInstances'] as const) {
      const t0 = performance.now();
      const outcome = await run(setup, `events-${setup}`, { scenario: 'redisEvents', events: profile.events });
      events[setup] = outcome;
      notes.push(`round trips ${SETUP_NAME[setup]}: ${shown(outcome)}`);
      h.log(`  round trips ${SETUP_NAME[setup]}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }

    // Redis as the limit: 1 Redis against 3 shards under the same CPU quota (bench/shards.ts).
    const shards = await runShards(h, redisCluster);

    const results: Results = {};
    for (const metric of clusterMetrics(profile)) {
      const row: Partial<Record<Setup, number>> = {};
      for (const setup of metric.setups) {
        const fromEvents = events[setup]?.figures[metric.key];
        const value = fromEvents ?? median(figures[setup].map((f) => f[metric.key] ?? Number.NaN));
        row[setup] = round(value);
      }
      results[metric.key] = row;
    }

    const text = table(profile, results);
    const seconds = Math.round((performance.now() - started) / 1000);
    process.stdout.write(
      `\n${text}\n\nRedis as the limit (bench/shards.ts):\n\n${shards.text}\n\nCores: ${h.cores.description}. Medians of ${profile.rounds} round(s); ${seconds} s.\n`,
    );
    mkdirSync(dirname(h.out), { recursive: true });
    writeFileSync(h.out, `${JSON.stringify({ ...results, shards: shards.result }, null, 2)}\n`);
    if (h.out.endsWith('.json')) writeFileSync(h.out.replace(/\.json$/, '.md'), page(h, text, seconds, figures, notes, shards));
    h.log(`written: ${h.out}`);
  } finally {
    // Also after a failure halfway: no run's keys are left behind (the Redis Cluster goes whole).
    if (redis.isReady) await deleteKeys(redis, runTag).catch(() => undefined);
    redis.destroy();
    await redisCluster.stop();
  }
}

function table(profile: ClusterProfile, results: Results): string {
  const rows: string[][] = [['metric', ...SETUPS.map((s) => SETUP_NAME[s])]];
  for (const metric of clusterMetrics(profile)) {
    const row = results[metric.key] ?? {};
    rows.push([metric.label, ...SETUPS.map((s) => (row[s] === undefined ? '–' : format(row[s])))]);
  }
  return markdownTable(rows);
}

function page(
  h: ClusterHarness,
  text: string,
  seconds: number,
  figures: Record<Setup, Record<string, number>[]>,
  notes: string[],
  shards: ShardsReport,
): string {
  const { profile } = h;
  const j = profile.join;
  const e = profile.events;
  const s = profile.shards;
  const q = shards.result.quota;
  return [
    `Measured ${new Date().toISOString().slice(0, 10)} with \`npm run bench -- --cluster${profile.name === 'quick' ? ' --quick' : ''}\` (${profile.name}, ${profile.rounds} round(s), ${seconds} s)`,
    `on ${h.machine}.`,
    '',
    text,
    '',
    `- handshakes: the join scenario (publish, subscribe, peer notice, offer, answer, two candidates each way), ${j.workers} in flight over ${j.pairs} pairs, ` +
      `${j.background.at(-1)} idle sockets in channels of two, a ${j.windowMs / 1000} s window; medians of ${profile.rounds} round(s), the setups taking turns at going first. ` +
      'With two instances every broadcaster is on A and every player on B (half the idle sockets too), so every notice and message crosses instances.',
    '- server CPU: all instances together, from /proc. Redis CPU and commands: redis-server as a whole (INFO), over the window, less an idle interval of the same length ' +
      '(heartbeats, the adapter’s own traffic); commands run inside Lua scripts count there.',
    `- round trips: commands the instances sent Redis, counted with MONITOR (which tells them from the commands scripts run) over ${e.handshakes} handshakes ` +
      `(${e.workers} at a time, each pair’s second, so its previous channel is left as in the join runs), then ${e.count} of each other event, one kind at a time, ` +
      'broadcasters on A and players on B; an idle interval as long as all phases is taken off in proportion. The adapter’s XREAD is re-sent after each batch it reads, ' +
      'so under load (bigger batches) it costs fewer round trips per event than here.',
    `- cores: ${h.cores.description}.` +
      (h.cores.second !== undefined && h.cores.second === h.cores.load
        ? ' Instance B shares its core with the load generator (and Redis runs where it can), so the two-instance rate shows what crossing instances costs more than what a second core brings; CPU per handshake is the figure that carries over to more cores.'
        : ''),
    '',
    ...details(
      'Every round (medians above)',
      SETUPS.flatMap((setup) =>
        Object.keys(figures[setup][0] ?? {}).map(
          (key) => `${SETUP_NAME[setup]} ${key}: ${figures[setup].map((f) => format(f[key] ?? Number.NaN)).join(', ')}`,
        ),
      ),
    ),
    ...details('Per-run notes (round trips by command, per event)', notes),
    '## Redis as the limit: 1 Redis against 3 shards',
    '',
    shards.text,
    '',
    (q
      ? `- quota: every redis-server (the bench's own single Redis, and each of the cluster's 3 masters, no replicas) in a ${q.controller} group of its own, ` +
        `allowed ${q.runtimeUs} µs of CPU every ${q.periodUs} µs (${+(q.share * 100).toFixed(2)}% of a core); "periods throttled" is the share of the busiest one's periods in which it used up its quota, ` +
        'and "busiest redis-server" its CPU over the window (at the quota when Redis is the bottleneck). '
      : `- no quota: ${shards.result.skipped}. `) + 'The rows without a quota run the same processes with the quota lifted.',
    `- load: the join scenario, ${s.join.workers} handshakes in flight over ${s.join.pairs} pairs, ${s.join.background.at(-1)} idle sockets in channels of two, ` +
      `a ${s.join.windowMs / 1000} s window, spread over ${s.accounts} accounts (channel k on account k mod ${s.accounts}, each with a plan whose limits are checked); ` +
      "channel k's broadcaster on instance k mod n and its player on the next, so with 2 or 4 instances every handshake crosses instances. " +
      `The instances are pinned in turn to instance A's core and instance B's (${h.cores.description}); medians of ${profile.rounds} round(s), the rows taking turns at going first.`,
    '',
    ...details('Every round (medians above)', shards.rounds),
    ...details('Per-run notes', shards.notes),
  ].join('\n');
}
