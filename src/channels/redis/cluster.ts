// Several instances as one server, through Redis: Socket.IO's Redis Streams
// adapter carries events to sockets on every instance, the Redis registry
// holds channels and usage, and a heartbeat per instance lets the survivors
// clean up after one that died.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../../clock';
import { createFailedAuthLimiter, type FailedAuthLimiter } from '../../signaling/rate-limits';
import { createRedisRoomStore, type RedisRoomStore } from '../../rooms/redis/store';
import type { RoomDeparture, RoomRestore } from '../../rooms/store';
import { RegistryUnavailableError } from '../registry';
import { connectRedis, type RedisTarget } from './connection';
import { createDirectLine, type DirectLine } from './direct';
import { CLUSTER_BUCKETS, keyLayout } from './keys';
import { createRedisRegistry, type RedisRegistry } from './registry';

export interface SharedFailedAuthLimiter extends FailedAuthLimiter {
  /** Blocks `address` here for `ms`: another instance saw it reach the limit. */
  block(address: string, ms: number): void;
}

/** Addresses blocked at once that an instance remembers; the oldest goes first. */
const MAX_BLOCKED_ADDRESSES = 100_000;

export interface ClusterOptions {
  /** REDIS_URL, or REDIS_CLUSTER_NODES. */
  redis: RedisTarget;
  /** REDIS_PREFIX: keys, the adapter's stream and its channels all start with it. */
  prefix: string;
  /** CLUSTER_TIMEOUT_MS: a dead instance's peers are closed within this time. */
  timeoutMs: number;
  /** PUBLIC_URL: this instance's address, published for `GET /route`. */
  publicUrl?: string | undefined;
  log: Logger;
  clock: Clock;
}

export interface Cluster {
  /** This instance's id in Redis (webhook consumer name, admin console). */
  readonly instanceId: string;
  readonly registry: RedisRegistry;
  readonly rooms: RedisRoomStore;
  /**
   * Messages to a socket on another instance, straight to that instance
   * (direct.ts): on a Redis Cluster too, where the sharded adapter would
   * reach only that instance as well, but with one SPUBLISH per message.
   */
  readonly direct: DirectLine | undefined;
  /** For `io.adapter(...)`. */
  readonly adapter: ReturnType<typeof import('@socket.io/redis-streams-adapter').createAdapter>;
  /** Resolves once this instance receives what other instances send to a Socket.IO room (RedisConnection). */
  roomSubscribed(room: string): Promise<void>;
  /** Whether Redis answers now (for /ready). */
  isConnected(): boolean;
  /**
   * Failed attempts per address counted in Redis, so that a token guesser
   * meets one limit whichever instance it reaches. Only failures touch Redis:
   * an address that reaches the limit is announced to every instance
   * (`announce` resolves once they have it), and each blocks it on its own,
   * so a handshake costs no Redis round trip. While Redis is away each
   * instance counts on its own.
   */
  failedAuthLimiter(perMinute: number, announce: (address: string, ms: number) => Promise<void>): SharedFailedAuthLimiter;
  /** The live instances and how long ago each beat (for the admin console). */
  instances(): Promise<{ id: string; heartbeatAgeMs: number | null }[]>;
  /** Receives the room participants removed with a dead instance; their rooms must hear them leave. */
  onRoomsGone(listener: (gone: RoomDeparture[]) => void): void;
  /** Receives what writing this instance's room seats back changed (rooms.restoreIfDue). */
  onRoomsRestored(listener: (restored: RoomRestore) => void): void;
  /** Removes this instance from the cluster; call it after `io.close()`, which stops the adapter. */
  close(): Promise<void>;
}

/**
 * Heartbeat timing for a timeout T: the heartbeat key lives 2T/3 and is
 * renewed every T/6, so an instance may stall for T/2 before it is taken for
 * dead; the others look every T/6, so a dead instance is swept by 5T/6.
 */
export function clusterTiming(timeoutMs: number) {
  return { aliveMs: Math.round((timeoutMs * 2) / 3), tickMs: Math.max(50, Math.round(timeoutMs / 6)) };
}

export function createCluster(options: ClusterOptions): Cluster {
  /* eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded only with Redis; this factory is synchronous */
  const { RateLimiterRedis } = require('rate-limiter-flexible') as typeof import('rate-limiter-flexible');
  const { prefix, timeoutMs, clock } = options;
  const instanceId = randomUUID();
  const log = options.log.child({ instance: instanceId });
  const { aliveMs, tickMs } = clusterTiming(timeoutMs);
  const redis = connectRedis(options.redis, prefix, log);
  const { where } = redis;
  const keys = keyLayout(prefix, redis.clustered ? CLUSTER_BUCKETS : 1);

  let connected = false;
  let everConnected = false;
  let readySince: number | undefined;
  let failures = 0;
  function ready() {
    if (connected) return;
    connected = true;
    readySince = clock.monotonic(); // a wall-clock step must not start a sweep early
    if (everConnected) log.warn({ redis: where }, 'Redis connection restored: joins are accepted again');
    else log.info({ redis: where, timeoutMs, cluster: redis.clustered }, 'Redis connected: this instance is part of a cluster');
    everConnected = true;
    failures = 0;
    void tick();
  }
  function lost(err: Error) {
    failures++;
    const about = { redis: where, err: err.message };
    if (connected) log.error(about, 'Redis connection lost: connections and joins are refused until it is back');
    else if (failures === 1) log.error(about, 'Redis unreachable: connections and joins are refused until it answers');
    else log.debug({ ...about, attempt: failures }, 'Redis still unreachable');
    connected = false;
    readySince = undefined;
  }
  redis.onReady(ready);
  redis.onError(lost);

  const buckets = keys.buckets.length;
  const registry = createRedisRegistry({
    client: redis.commands,
    cachedReads: redis.cachedReads,
    prefix,
    buckets,
    instanceId,
    aliveMs,
    publicUrl: options.publicUrl,
    log,
    clock,
  });
  const rooms = createRedisRoomStore({ client: redis.commands, prefix, buckets, instanceId, log });
  let roomsListener: ((gone: RoomDeparture[]) => void) | undefined;
  let restoredListener: ((restored: RoomRestore) => void) | undefined;
  // Whenever the registry wrote this instance's part back (Redis lost it, a
  // failover), its room seats go back too, at once.
  registry.onSynced(() => {
    rooms.resync();
    void tick();
  });

  // A replica that takes over may miss the last writes of its master: after
  // a failover every instance puts its own part back (limits exact again).
  let epoch: number | undefined;
  async function checkTopology() {
    if (!redis.clustered) return;
    const now = await redis.topologyEpoch().catch(() => undefined);
    if (now === undefined) return;
    if (epoch !== undefined && now !== epoch) {
      log.info({ epoch: now }, "Redis Cluster changed (failover or slot move): restoring this instance's part");
      registry.resync();
      await redis.resubscribe().catch((err: unknown) => log.warn({ err }, 'Redis Cluster: events not subscribed again'));
    }
    epoch = now;
  }

  // One tick at a time: renew this instance's heartbeat, then look for dead
  // ones. Right after (re)connecting, sweeping waits one heartbeat lifetime so
  // the other instances have reconnected and beaten first.
  let ticking = false;
  let closed = false;
  /** Seats of a dead instance may be left: true at start, so what an instance that died earlier left is found. */
  let roomsDue = true;
  async function tick() {
    if (ticking || closed) return;
    ticking = true;
    try {
      await checkTopology();
      await registry.heartbeat();
      const restored = await rooms.restoreIfDue();
      if (restored) restoredListener?.(restored);
      // On a Redis Cluster a node that failed comes back without a new connection: a beat that went through says so.
      if (!connected && redis.isOpen()) ready();
      if (readySince !== undefined && clock.monotonic() - readySince >= aliveMs) {
        // The rooms are swept (bucket by bucket) only when an instance died, or when a sweep is left to finish.
        if ((await registry.sweep()).length) roomsDue = true;
        if (roomsDue) {
          const gone = await rooms.sweep();
          // Once more after a sweep that found some: a big one may have been cut at its batch bound.
          roomsDue = gone.length > 0;
          if (gone.length) roomsListener?.(gone);
        }
      }
    } catch (err) {
      if (redis.clustered && err instanceof RegistryUnavailableError) lost(err);
      else if (connected) log.error({ err }, 'cluster heartbeat failed');
      else log.debug({ err: (err as Error).message }, 'cluster heartbeat skipped: Redis unreachable');
    } finally {
      ticking = false;
    }
  }
  const timer = setInterval(() => void tick(), tickMs);
  timer.unref();

  redis.connect().catch((err: unknown) => log.error({ err, redis: where }, 'Redis client stopped'));
  const direct = redis.direct && createDirectLine({ pubsub: redis.direct, prefix, instanceId, clock, log });

  let closing: Promise<void> | undefined;
  async function close() {
    closed = true;
    clearInterval(timer);
    await registry.close();
    await redis.close();
    log.info('left the cluster');
  }

  function failedAuthLimiter(perMinute: number, announce: (address: string, ms: number) => Promise<void>): SharedFailedAuthLimiter {
    const local = createFailedAuthLimiter({ perMinute });
    // Monotonic times (clock.monotonic()), as the callers pass them.
    const blockedUntil = new Map<string, number>();
    const block = (address: string, ms: number, at: number) => {
      if (blockedUntil.size >= MAX_BLOCKED_ADDRESSES) blockedUntil.delete(blockedUntil.keys().next().value as string);
      blockedUntil.set(address, at + ms);
    };
    const shared = new RateLimiterRedis({
      storeClient: redis.client,
      useRedisPackage: true,
      // A Redis Cluster client has no readiness flag; \`connected\` is checked before each use.
      rejectIfRedisNotReady: !redis.clustered,
      keyPrefix: `${prefix}authfail`,
      points: perMinute,
      duration: 60,
    });
    return {
      blocked(address, at) {
        if (local.blocked(address, at)) return true;
        const until = blockedUntil.get(address);
        if (until === undefined) return false;
        if (until > at) return true;
        blockedUntil.delete(address);
        return false;
      },
      async failed(address, at) {
        local.failed(address, at);
        if (!connected) return;
        try {
          const counted = await shared.penalty(address, 1);
          if (counted.consumedPoints < perMinute) return;
          block(address, counted.msBeforeNext, at);
          await announce(address, counted.msBeforeNext);
        } catch (err) {
          log.debug({ err: (err as Error).message }, 'failed attempt not counted in Redis');
        }
      },
      block: (address, ms) => block(address, ms, clock.monotonic()),
    };
  }

  return {
    instanceId,
    registry,
    rooms,
    direct,
    adapter: redis.adapter,
    roomSubscribed: (room) => redis.roomSubscribed(room),
    failedAuthLimiter,
    isConnected: () => connected,
    async instances() {
      const ids = ((await redis.commands.send(['SMEMBERS', keys.instances], keys.instances)) as string[]).sort();
      const ttls = await Promise.all(ids.map((id) => redis.commands.send(['PTTL', keys.alive(id)], keys.alive(id))));
      return ids.map((id, i) => ({ id, heartbeatAgeMs: Number(ttls[i]) >= 0 ? Math.max(0, aliveMs - Number(ttls[i])) : null }));
    },
    onRoomsGone: (next) => void (roomsListener = next),
    onRoomsRestored: (next) => void (restoredListener = next),
    close: () => (closing ??= close()),
  };
}
