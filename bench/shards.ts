// What a Redis Cluster's shards bring when Redis is the limit: the join
// scenario through 1 Redis and through a 3-master Redis Cluster, with 1, 2
// and 4 instances, every redis-server under the same CPU quota (a cgroup of
// its own, bench/cgroup.ts), so that Redis, not the instances or this
// machine's cores, is what runs out. The single Redis and the masters are the
// bench's own, on loopback ports (never the shared Redis). Some instance
// counts also run without the quota, where the instances are the limit again.
//
// The masters have no replicas here: the single Redis has none either, and a
// replica costs its master CPU (every write is sent on to it), which under the
// quota would show as fewer handshakes per shard; on top of that the replicas
// would need CPU of their own on a machine whose cores the instances already
// use. So the ratio compares Redis work with Redis work; a production cluster
// keeps a replica per master, and its masters carry that extra cost.
//
// The load is spread over many accounts (an account's keys sit in one bucket,
// so in one shard), each with the bench plan, so limits are checked as in
// production; channel k's broadcaster connects to instance k mod n and its
// player to the next, so with more than one instance every handshake crosses.
// The admin console stays on, as shipped: its sampler reads the accounts'
// usage, a few commands per bucket every 5 s per instance.
import { randomBytes } from 'node:crypto';
import keySlot from 'cluster-key-slot';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLUSTER_BUCKETS, encodeName, keyLayout } from '../src/channels/redis/keys';
import type { TestRedisCluster } from '../test/helpers/redis-cluster';
import { cpuGroups, quotaFor, type CpuGroups } from './cgroup';
import { clusterTiming } from '../src/channels/redis/cluster';
import type { ClusterHarness } from './cluster';
import { BENCH_PLAN } from './database';
import { shardFigures, shardRatios, shardRows, STORE_NAME, type Outcome, type Profile, type ShardRow } from './profile';
import { startRedisServer } from './redis-server';
import { format, markdownTable, median, round } from './report';

export interface ShardsResult {
  /** The quota every redis-server ran under in the rows marked so. */
  quota?: { share: number; periodUs: number; runtimeUs: number; controller: string };
  /** Why there are no rows under a quota. */
  skipped?: string;
  /** Medians per row (`redis.4`, `shards.4.unlimited`, ...). */
  rows: Record<string, Record<string, number>>;
  /** Handshakes/s of 3 shards over 1 Redis, per instance count (`4`, `4.unlimited`). */
  ratios: Record<string, number>;
}

export interface ShardsReport {
  result: ShardsResult;
  /** The table and the ratios, for the terminal and the results page. */
  text: string;
  /** Every round of every row, and each run's notes. */
  rounds: string[];
  notes: string[];
}

/** The target of issue 19: 3 shards give at least 2.5x the handshakes/s of 1 Redis when Redis is the bottleneck. */
export const SHARDS_TARGET = 2.5;

/** The instances' CLUSTER_TIMEOUT_MS, the default. */
const CLUSTER_TIMEOUT_MS = 15_000;

const GROUP = { redis: ['redis'], shards: ['shard-1', 'shard-2', 'shard-3'] } as const;

async function flush(urls: string[]) {
  const { createClient } = await import('redis');
  await Promise.all(
    urls.map(async (url) => {
      const client = createClient({ url, socket: { reconnectStrategy: false, connectTimeout: 3000 } });
      client.on('error', () => undefined);
      try {
        await client.connect();
        await client.sendCommand(['FLUSHALL']);
      } finally {
        client.destroy();
      }
    }),
  );
}

/**
 * Account names whose buckets take the masters in turn (account i on master
 * i mod 3), so that every master gets the same share of the pairs. Names that
 * hash where they fall spread unevenly over a few hundred accounts (with 240,
 * the busiest master got 6% more than its share, with 120 17%), and the
 * busiest master sets the rate: that would measure the draw, not the shards.
 */
function evenAccountNames(count: number, cluster: TestRedisCluster): string[] {
  const layout = keyLayout('', CLUSTER_BUCKETS);
  const masters = cluster.masters().map((m) => m.port);
  const masterOf = new Map<string, number>();
  const shardOf = (name: string) => {
    const tag = /\{(.*)\}/.exec(layout.bucketOf(encodeName(name)))?.[1] as string;
    if (!masterOf.has(tag)) masterOf.set(tag, masters.indexOf(cluster.masterOf(keySlot(tag)).port));
    return masterOf.get(tag) as number;
  };
  const per = Math.ceil(count / masters.length);
  const byMaster: string[][] = masters.map(() => []);
  for (let n = 0; byMaster.some((names) => names.length < per); n++) byMaster[shardOf(`Bench Site ${n}`)]?.push(`Bench Site ${n}`);
  const names = Array.from({ length: count }, (_, i) => byMaster[i % masters.length]?.[Math.floor(i / masters.length)] as string);
  return names;
}

/** The accounts the load is spread over, in an ACCOUNTS_FILE; returns the file and the tokens. */
function writeAccounts(dir: string, names: string[]): { file: string; tokens: string[] } {
  const tokens = names.map((_, i) => `bench-shards-${i}-${randomBytes(6).toString('hex')}`);
  const file = join(dir, 'accounts.json');
  writeFileSync(
    file,
    JSON.stringify({
      plans: [{ id: 1, name: 'Bench Plan', properties: BENCH_PLAN }],
      accounts: tokens.map((token, i) => ({ name: names[i], token, planId: 1, properties: {} })),
    }),
  );
  return { file, tokens };
}

export async function runShards(h: ClusterHarness, cluster: TestRedisCluster): Promise<ShardsReport> {
  const p = h.profile.shards;
  const idle = p.join.background.at(-1) ?? 0;
  const jobProfile: Profile = { ...h.base, rounds: h.profile.rounds, join: p.join };
  const groups = cpuGroups();
  const limited: CpuGroups | undefined = 'unavailable' in groups ? undefined : groups;
  if (!limited)
    h.log(
      `  shards: cannot make Redis the bottleneck here (${(groups as { unavailable: string }).unavailable}): the rows under a CPU quota are skipped`,
    );
  const dir = mkdtempSync(join(tmpdir(), 'vw-bench-shards-'));
  const single = await startRedisServer().catch((err: unknown) => {
    limited?.remove();
    throw err;
  });
  const masters = cluster.nodes.map((n) => `redis://${n.address}`);
  try {
    if (limited) {
      limited.add(GROUP.redis[0], single.pid);
      cluster.nodes.forEach((node, i) => limited.add(GROUP.shards[i] as string, node.child?.pid as number));
    }
    const { file, tokens } = writeAccounts(dir, evenAccountNames(p.accounts, cluster));
    const storeUrls = (row: ShardRow) => (row.store === 'redis' ? [single.url] : masters);
    await Promise.all([flush([single.url]), flush(masters)]);

    const run = async (row: ShardRow, runId: string): Promise<Outcome> => {
      limited?.setQuota(row.quota ? p.quota : undefined);
      const env = {
        ...(row.store === 'redis' ? { REDIS_URL: single.url } : { REDIS_CLUSTER_NODES: cluster.seeds }),
        REDIS_PREFIX: `vwbench:${runId}:`,
        ACCOUNTS_FILE: file,
      };
      const cores = [h.cores.server, h.cores.second];
      const startedAt = performance.now();
      const servers = await Promise.all(
        Array.from({ length: row.instances }, (_, i) => h.startServer(`${runId}-${i + 1}`, env, cores[i % cores.length])),
      ).catch(async (err: unknown) => {
        await flush(storeUrls(row)).catch(() => undefined);
        throw err;
      });
      try {
        // An instance sweeps for what dead ones left one heartbeat lifetime after it connects, on a
        // cluster bucket by bucket (120 calls each); that start-up work is over before the load starts,
        // so that the window measures the steady state on both sides.
        await sleep(Math.max(0, startedAt + clusterTiming(CLUSTER_TIMEOUT_MS).aliveMs + 1000 - performance.now()));
        const first = servers[0] as (typeof servers)[number];
        return await h
          .runLoad({
            scenario: 'join',
            profile: jobProfile,
            url: first.url,
            token: h.token,
            ca: h.ca,
            pid: first.pid,
            loopDelayFile: first.loopDelayFile,
            pids: servers.map((s) => s.pid),
            instanceUrls: servers.map((s) => s.url),
            tokens,
            redisUrl: storeUrls(row).join(','),
            commandStats: p.commandStats,
            ...(limited && row.quota && { cpuStatFiles: GROUP[row.store].map((name) => limited.statFile(name)) }),
          })
          .catch((err: unknown) => {
            throw new Error(servers.map((s) => s.failed(err).message).join('\n'));
          });
      } finally {
        await Promise.all(servers.map((s) => s.stop()));
        await flush(storeUrls(row));
      }
    };

    const rows = shardRows(p, limited !== undefined);
    const figures = new Map<string, Record<string, number>[]>(rows.map((row) => [row.id, []]));
    const notes: string[] = [];
    for (let r = 0; r < h.profile.rounds; r++) {
      // The rows take turns at going first.
      const order = rows.map((_, i) => rows[(i + r) % rows.length] as ShardRow);
      for (const row of order) {
        const t0 = performance.now();
        const outcome = await run(row, `shards-${row.id}-${r + 1}`);
        const picked: Record<string, number> = {};
        for (const key of shardFigures(row)) {
          const name = key === 'serverCpuPerHandshakeUs' ? 'cpuPerHandshakeUs' : key;
          picked[key] = outcome.figures[`${name}@${idle}idle`] ?? Number.NaN;
        }
        figures.get(row.id)?.push(picked);
        // What the rest of the machine was doing: the load average over the last minute.
        const shown = Object.entries({ ...picked, ...outcome.notes, loadAverage: loadavg()[0] ?? Number.NaN })
          .map(([k, v]) => `${k} ${format(v)}`)
          .join(', ');
        notes.push(`${rowName(row, p.quota)} round ${r + 1}: ${shown}`);
        h.log(
          `  shards round ${r + 1}/${h.profile.rounds} ${rowName(row, p.quota)}: ${((performance.now() - t0) / 1000).toFixed(1)} s (${shown})`,
        );
        await sleep(300);
      }
    }

    const result: ShardsResult = {
      ...(limited
        ? { quota: { share: p.quota, ...quotaFor(p.quota), controller: limited.kind } }
        : { skipped: (groups as { unavailable: string }).unavailable }),
      rows: {},
      ratios: {},
    };
    for (const row of rows) {
      const medians: Record<string, number> = {};
      for (const key of shardFigures(row)) medians[key] = round(median((figures.get(row.id) ?? []).map((f) => f[key] ?? Number.NaN)));
      result.rows[row.id] = medians;
    }
    // Each round's ratio too: the two rows of a round ran minutes apart at most, under much the same load from others.
    const roundRatios: Record<string, number[]> = {};
    for (const id of shardRatios(rows)) {
      const rate = (store: ShardRow['store']) => result.rows[`${store}.${id}`]?.handshakesPerSec ?? Number.NaN;
      result.ratios[id] = round(rate('shards') / rate('redis'));
      const rates = (store: ShardRow['store']) => (figures.get(`${store}.${id}`) ?? []).map((f) => f.handshakesPerSec ?? Number.NaN);
      const redis = rates('redis');
      roundRatios[id] = rates('shards').map((rate, r) => rate / (redis[r] ?? Number.NaN));
    }
    const rounds = rows.flatMap((row) =>
      shardFigures(row).map(
        (key) => `${rowName(row, p.quota)} ${key}: ${(figures.get(row.id) ?? []).map((f) => format(f[key] ?? Number.NaN)).join(', ')}`,
      ),
    );
    return { result, text: shardsText(rows, result, roundRatios, idle), rounds, notes };
  } finally {
    limited?.remove();
    await single.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const quotaName = (row: ShardRow, share: number) => (row.quota ? `${+(share * 100).toFixed(2)}% of a core each` : 'none');

const rowName = (row: ShardRow, share: number) =>
  `${STORE_NAME[row.store]}, ${row.instances} instance${row.instances > 1 ? 's' : ''}, quota ${quotaName(row, share)}`;

/** The table of the rows and the ratios, of the medians and of each round. */
function shardsText(rows: ShardRow[], result: ShardsResult, roundRatios: Record<string, number[]>, idle: number): string {
  const share = result.quota?.share ?? 0;
  const header = [
    'Redis',
    'instances',
    'Redis CPU quota',
    `handshakes/s (${idle} idle sockets)`,
    'Redis CPU per handshake, µs',
    'busiest redis-server, % of a core',
    'periods throttled, %',
    'server CPU per handshake, µs',
  ];
  const cells = rows.map((row) => {
    const f = result.rows[row.id] ?? {};
    const cell = (key: string) => (f[key] === undefined ? '–' : format(f[key]));
    return [
      STORE_NAME[row.store],
      String(row.instances),
      quotaName(row, share),
      cell('handshakesPerSec'),
      cell('redisCpuPerHandshakeUs'),
      cell('redisBusiestCpuPct'),
      cell('throttledPct'),
      cell('serverCpuPerHandshakeUs'),
    ];
  });
  const ratios = Object.entries(result.ratios).map(([id, ratio]) => {
    const [instances, unlimited] = id.split('.');
    const met = unlimited ? '' : ` (target >= ${SHARDS_TARGET}x: ${ratio >= SHARDS_TARGET ? 'met' : 'MISSED'})`;
    const each = (roundRatios[id] ?? []).map((r) => r.toFixed(2)).join(', ');
    return `- ${instances} instance${instances === '1' ? '' : 's'}${unlimited ? ', no quota' : ''}: ${ratio.toFixed(2)}x (rounds: ${each})${met}`;
  });
  return [
    markdownTable([header, ...cells], 3),
    '',
    '3 shards / 1 Redis, handshakes/s:',
    ...ratios,
    ...(result.skipped ? ['', `No rows under a CPU quota: ${result.skipped}.`] : []),
  ].join('\n');
}
