// What the benchmark measures, in how much, and what each figure is called.
// The orchestrator, the load generator and the test all read it from here.

export interface Profile {
  name: 'full' | 'quick';
  /** Each scenario runs this many times per server, servers alternating. */
  rounds: number;
  connect: {
    /** Idle sockets at which RSS is read; CPU is measured over the ramp to the last. */
    counts: number[];
    concurrency: number;
    settleMs: number;
  };
  relay: {
    /** Broadcaster/player pairs, one channel each. */
    pairs: number;
    /** Offered rates (messages/s) whose p50/p99 are reported. */
    fixedRates: number[];
    /** The fixed rate whose window gives CPU per message. */
    cpuRate: number;
    stepMs: number;
    warmupMs: number;
    /** Rates tried for the highest one under the latency bound: start, ×factor up to max, then bisected. */
    search: { start: number; factor: number; max: number; refine: number; stepMs: number };
    p99BoundMs: number;
  };
  join: {
    /** Idle background sockets (registered in channels of two) for each measurement. */
    background: number[];
    /** Handshakes in flight at once. */
    workers: number;
    /** Broadcaster/player pairs the handshakes take turns on, so no socket sends more than a browser would. */
    pairs: number;
    warmupMs: number;
    windowMs: number;
    /**
     * The warm-up also lasts until every pair has had its first call set-up:
     * a pair's first handshake only joins, the later ones also leave the
     * previous channel (more Redis work), so a faster setup would otherwise
     * measure costlier handshakes than a slower one.
     */
    everyPairOnce?: boolean;
  };
  massDisconnect: {
    peers: number;
    /** The GET / answer time that counts as answering again. */
    answerBoundMs: number;
    probeEveryMs: number;
    maxObserveMs: number;
  };
}

export const FULL: Profile = {
  name: 'full',
  rounds: 3,
  connect: { counts: [2000, 10000], concurrency: 64, settleMs: 1000 },
  relay: {
    pairs: 500,
    fixedRates: [1000, 5000],
    cpuRate: 5000,
    stepMs: 4000,
    warmupMs: 1500,
    search: { start: 5000, factor: 1.5, max: 60000, refine: 2, stepMs: 2000 },
    p99BoundMs: 50,
  },
  join: { background: [1000, 6000], workers: 64, pairs: 400, warmupMs: 1000, windowMs: 5000 },
  massDisconnect: { peers: 4000, answerBoundMs: 50, probeEveryMs: 10, maxObserveMs: 15000 },
};

/** Every figure of the full run, on small counts and short windows: under a minute. */
export const QUICK: Profile = {
  name: 'quick',
  rounds: 1,
  connect: { counts: [200, 1000], concurrency: 32, settleMs: 500 },
  relay: {
    pairs: 100,
    fixedRates: [1000, 5000],
    cpuRate: 5000,
    stepMs: 800,
    warmupMs: 400,
    search: { start: 4000, factor: 2, max: 16000, refine: 0, stepMs: 600 },
    p99BoundMs: 50,
  },
  join: { background: [100, 600], workers: 16, pairs: 100, warmupMs: 300, windowMs: 1000 },
  massDisconnect: { peers: 400, answerBoundMs: 50, probeEveryMs: 10, maxObserveMs: 5000 },
};

/**
 * connect: this server on the recommended ECDSA certificate; connectRsa: on
 * RSA-2048, as the relay always is; reconnect: clients coming back (this
 * server's resume their TLS session, the relay's do not).
 */
export type Scenario = 'connect' | 'connectRsa' | 'reconnect' | 'relay' | 'join' | 'massDisconnect';
export const SCENARIOS: Scenario[] = ['connect', 'connectRsa', 'reconnect', 'relay', 'join', 'massDisconnect'];

export interface Metric {
  key: string;
  label: string;
  /** Throughput: the ratio is baseline/server, so > 1 still means this server does worse. */
  higherIsBetter?: boolean;
  /** Below this a difference is not measurable (ratio denominators are raised to it). */
  floor?: number;
  /** The target on the ratio, as the issue states it. */
  target?: { max: number; text: string };
}

/** The figures each scenario produces under a profile, in table order. */
export function metrics(p: Profile): Record<Scenario, Metric[]> {
  const most = p.connect.counts.at(-1) ?? 0;
  const lastBackground = p.join.background.at(-1);
  return {
    connect: [
      {
        key: 'cpuPerConnectionUs',
        label: `CPU per accepted connection, µs (ramp to ${most}; ECDSA here)`,
        floor: 1,
        target: { max: 0.75, text: '<= 0.75x' },
      },
      ...p.connect.counts.map((n): Metric => ({
        key: `rssPerIdleConnectionKiB@${n}`,
        label: `RSS per idle connection at ${n}, KiB`,
        floor: 0.1,
        target: { max: 0.9, text: '<= 0.9x' },
      })),
    ],
    connectRsa: [
      {
        key: 'cpuPerConnectionUs',
        label: `CPU per accepted connection, µs (ramp to ${most}; RSA-2048 here too)`,
        floor: 1,
        target: { max: 1.0, text: '<= 1.0x' },
      },
    ],
    reconnect: [
      {
        key: 'cpuPerReconnectUs',
        label: `CPU per reconnect, µs (${p.connect.counts[0]} clients; here TLS resumed, relay full RSA handshake)`,
        floor: 1,
        target: { max: 0.65, text: '<= 0.65x' },
      },
    ],
    relay: [
      {
        key: 'cpuPerMessageUs',
        label: `CPU per relayed message, µs (at ${p.relay.cpuRate}/s)`,
        floor: 0.1,
        target: { max: 0.9, text: '<= 0.9x' },
      },
      ...p.relay.fixedRates.flatMap((r): Metric[] => [
        { key: `p50Ms@${r}/s`, label: `p50 delivery at ${r} msg/s, ms`, floor: 0.1 },
        {
          key: `p99Ms@${r}/s`,
          label: `p99 delivery at ${r} msg/s, ms`,
          floor: 0.1,
          ...(r === p.relay.cpuRate && { target: { max: 1.1, text: '<= 1.1x' } }),
        },
      ]),
      {
        key: 'maxRateP99Under50ms',
        label: `highest msg/s with p99 < ${p.relay.p99BoundMs} ms`,
        higherIsBetter: true,
        floor: 1,
        target: { max: 1.0, text: '>= 1.0x rate' },
      },
    ],
    join: p.join.background.flatMap((n): Metric[] => [
      {
        key: `handshakesPerSec@${n}idle`,
        label: `handshakes/s with ${n} idle sockets`,
        higherIsBetter: true,
        floor: 1,
        ...(n === lastBackground && { target: { max: 1.0, text: '>= 1.0x rate' } }),
      },
      { key: `cpuPerHandshakeUs@${n}idle`, label: `CPU per handshake with ${n} idle sockets, µs`, floor: 1 },
    ]),
    massDisconnect: [
      { key: 'cpuMs', label: `CPU to drop ${p.massDisconnect.peers} peers, ms`, floor: 1, target: { max: 1.5, text: '<= 1.5x' } },
      {
        key: 'recoveryMs',
        label: `until GET / answers within ${p.massDisconnect.answerBoundMs} ms, ms`,
        floor: p.massDisconnect.probeEveryMs,
      },
      { key: 'maxEventLoopDelayMs', label: 'worst event-loop delay, ms (target < 100 ms)', floor: 1 },
      { key: 'peakRssMiB', label: 'peak RSS, MiB', floor: 0.1 },
    ],
  };
}

/**
 * The two-instance run (--cluster): the join scenario with one instance in
 * memory, one on Redis and two on Redis, then Redis round trips per event.
 */
export interface ClusterProfile {
  name: 'full' | 'quick';
  /** Each setup runs this many times, the order of setups rotating. */
  rounds: number;
  /** The join scenario's settings (one background level). */
  join: Profile['join'];
  events: RedisEvents;
  shards: ShardsProfile;
  /** --shards-only: only the rows where Redis is the limit (bench/shards.ts). */
  shardsOnly?: boolean;
}

/**
 * 1 Redis against a 3-master Redis Cluster where Redis is the only limited
 * resource: every redis-server gets the same CPU quota (bench/cgroup.ts).
 */
export interface ShardsProfile {
  /** Server instances of the rows under the quota. */
  instances: number[];
  /** Instance counts also run without the quota. */
  unlimited: number[];
  /** Each redis-server's CPU quota, a share of one core. */
  quota: number;
  /** Accounts the pairs and idle channels take in turn: an account's keys sit in one shard. */
  accounts: number;
  join: Profile['join'];
  /** --command-stats: commands per handshake from INFO commandstats in each row's notes. */
  commandStats?: boolean;
}

export interface RedisEvents {
  /** Events of each kind (publish, subscribe, messagePeer, disconnect) counted on Redis. */
  count: number;
  /** Complete handshakes counted on Redis, `workers` at a time. */
  handshakes: number;
  workers: number;
}

export const CLUSTER_FULL: ClusterProfile = {
  name: 'full',
  rounds: 3,
  join: { background: [1000], workers: 64, pairs: 400, warmupMs: 1000, windowMs: 5000 },
  events: { count: 200, handshakes: 200, workers: 8 },
  shards: {
    instances: [1, 2, 4],
    unlimited: [4],
    // 1 ms every 50 ms: 1 Redis then tops out at 100-250 handshakes/s, well below the 300-550 that 4 instances reach on 2 cores without a quota.
    quota: 0.02,
    accounts: 240,
    // Many handshakes in flight: a redis-server runs once a period, so each round trip may wait up to 50 ms,
    // and only enough of them waiting keeps 3 shards busy (throughput = handshakes in flight / time per handshake).
    // A 20 s window: through a throttled Redis one handshake takes seconds (256 in flight at 70-80/s: 3-4 s),
    // and a 5 s window counted so few of them that handshakes/s swung by ±30% from round to round.
    join: { background: [1000], workers: 256, pairs: 640, warmupMs: 1000, windowMs: 20_000, everyPairOnce: true },
  },
};

export const CLUSTER_QUICK: ClusterProfile = {
  name: 'quick',
  rounds: 1,
  // Enough pairs that none goes over the server's 100 events/s per socket, even at 5,000 handshakes/s.
  join: { background: [100], workers: 16, pairs: 300, warmupMs: 300, windowMs: 1000 },
  events: { count: 40, handshakes: 40, workers: 8 },
  // Fewer rows: 1 and 4 instances under the quota, 4 without.
  shards: {
    instances: [1, 4],
    unlimited: [4],
    quota: 0.02,
    accounts: 120,
    join: { background: [100], workers: 192, pairs: 400, warmupMs: 300, windowMs: 1500, everyPairOnce: true },
  },
};

export type Setup = 'memory' | 'redis' | 'twoInstances' | 'redisCluster' | 'twoOnRedisCluster';
export const SETUPS: Setup[] = ['memory', 'redis', 'twoInstances', 'redisCluster', 'twoOnRedisCluster'];
export const SETUP_NAME: Record<Setup, string> = {
  memory: 'one instance, in memory',
  redis: 'one instance, Redis',
  twoInstances: 'two instances, Redis',
  redisCluster: 'one instance, 3-master Redis Cluster',
  twoOnRedisCluster: 'two instances, 3-master Redis Cluster',
};
/** Setups on a Redis Cluster the bench starts on loopback ports. */
export const ON_REDIS_CLUSTER: readonly Setup[] = ['redisCluster', 'twoOnRedisCluster'];

/** A row of the shards table: a store, a number of instances, and whether Redis runs under the quota. */
export interface ShardRow {
  id: string;
  store: 'redis' | 'shards';
  instances: number;
  quota: boolean;
}

export const STORE_NAME: Record<ShardRow['store'], string> = { redis: '1 Redis', shards: '3 shards' };

/** The rows, in table order; without a CPU controller only those without the quota. */
export function shardRows(p: ShardsProfile, quotaPossible: boolean): ShardRow[] {
  const rows: ShardRow[] = [];
  const add = (instances: number, quota: boolean) => {
    for (const store of ['redis', 'shards'] as const)
      rows.push({ id: `${store}.${instances}${quota ? '' : '.unlimited'}`, store, instances, quota });
  };
  if (quotaPossible) for (const n of p.instances) add(n, true);
  for (const n of p.unlimited) add(n, false);
  return rows;
}

/** The figures of a shards row, in table order (the throttling only under the quota). */
export function shardFigures(row: ShardRow): string[] {
  return [
    'handshakesPerSec',
    'redisCpuPerHandshakeUs',
    'redisBusiestCpuPct',
    ...(row.quota ? ['throttledPct'] : []),
    'serverCpuPerHandshakeUs',
  ];
}

/** The ratios 3 shards / 1 Redis of handshakes/s, one per instance count (and quota). */
export const shardRatios = (rows: ShardRow[]) => rows.filter((r) => r.store === 'shards').map((r) => r.id.replace(/^shards\./, ''));

/** Events whose Redis round trips are counted one kind at a time (bench/load/redis-events.ts). */
export const REDIS_EVENTS = ['handshake', 'publish', 'subscribe', 'messagePeer', 'disconnect'] as const;
export type RedisEvent = (typeof REDIS_EVENTS)[number];

/** The figures of the two-instance run, in table order, with the setups that have them. */
export function clusterMetrics(p: ClusterProfile): (Metric & { setups: Setup[] })[] {
  const idle = p.join.background.at(-1) ?? 0;
  const redis: Setup[] = ['redis', 'twoInstances'];
  const anyRedis: Setup[] = [...redis, ...ON_REDIS_CLUSTER];
  return [
    { key: 'handshakesPerSec', label: `handshakes/s with ${idle} idle sockets`, setups: SETUPS },
    { key: 'serverCpuPerHandshakeUs', label: 'server CPU per handshake, µs (all instances)', setups: SETUPS },
    { key: 'redisCpuPerHandshakeUs', label: 'Redis CPU per handshake, µs (all masters)', setups: anyRedis },
    { key: 'redisCommandsPerHandshake', label: 'Redis commands per handshake, in scripts too', setups: anyRedis },
    ...REDIS_EVENTS.flatMap((event): (Metric & { setups: Setup[] })[] => [
      { key: `roundTrips.${event}`, label: `Redis round trips per ${event}`, setups: redis },
      { key: `scriptCommands.${event}`, label: `Redis commands in scripts per ${event}`, setups: redis },
    ]),
  ];
}

/** A job the orchestrator hands a load-generator process. */
export interface Job {
  scenario: Scenario | 'redisEvents';
  profile: Profile;
  /** https://127.0.0.1:port */
  url: string;
  token: string;
  /** The server's certificate, PEM. */
  ca: string;
  /** The server process, for /proc and SIGUSR2. */
  pid: number;
  loopDelayFile: string;
  /** Where players connect (the second instance); `url` when absent. */
  playerUrl?: string;
  /** Every server process whose CPU counts; [pid] when absent. */
  pids?: number[];
  /** Redis to read INFO from: one URL, or a Redis Cluster's masters, comma-separated. */
  redisUrl?: string;
  /** For redisEvents. */
  events?: RedisEvents;
  /**
   * Every instance, when there are more than two or the load is to be even:
   * channel k's broadcaster connects to instance k mod n, its player to the
   * next one (so with n > 1 every handshake crosses instances).
   */
  instanceUrls?: string[];
  /** Account tokens the channels take in turn (channel k: token k mod length); `token` when absent. */
  tokens?: string[];
  /** cgroup cpu.stat files of the Redis processes, to read how often they hit their quota. */
  cpuStatFiles?: string[];
  /** Read INFO commandstats over the window too (per handshake, in the notes). */
  commandStats?: boolean;
  /** For reconnect: whether clients offer their TLS session again. */
  resume?: boolean;
}

/** A measurement window on CLOCK_MONOTONIC (µs), to cut a server's CPU profile to it. */
export interface Window {
  label: string;
  startUs: number;
  endUs: number;
}

export interface Outcome {
  figures: Record<string, number>;
  notes: Record<string, number>;
  windows: Window[];
}

export type JobResult = ({ ok: true } & Outcome) | { ok: false; error: string };
