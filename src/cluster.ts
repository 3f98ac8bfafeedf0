// Several instances as one server, through Redis: Socket.IO's Redis Streams
// adapter carries events to sockets on every instance, the Redis registry
// holds channels and usage, and a heartbeat per instance lets the survivors
// clean up after one that died.
import { randomUUID } from 'node:crypto';
import type { RedisStreamsAdapterOptions } from '@socket.io/redis-streams-adapter';
import type { Logger } from 'pino';
import { createRedisRegistry, type PeerGone, type RedisRegistry } from './channels/redis';
import { createRedisRoomStore, type RedisRoomStore } from './rooms/redis';
import type { RoomDeparture } from './rooms/store';

export type { PeerGone } from './channels/redis';

export interface ClusterOptions {
  /** REDIS_URL */
  url: string;
  /** REDIS_PREFIX: keys, the adapter's stream and its channels all start with it. */
  prefix: string;
  /** CLUSTER_TIMEOUT_MS: a dead instance's peers are closed within this time. */
  timeoutMs: number;
  log: Logger;
  now?: () => number;
}

export interface Cluster {
  readonly instanceId: string;
  readonly registry: RedisRegistry;
  readonly rooms: RedisRoomStore;
  /** For `io.adapter(...)`. */
  readonly adapter: ReturnType<typeof import('@socket.io/redis-streams-adapter').createAdapter>;
  /** Whether Redis answers now (for /ready). */
  isConnected(): boolean;
  /** Receives the peers removed for sockets that are gone; their channels must hear them leave. */
  onPeersGone(listener: (gone: PeerGone[]) => void): void;
  /** Receives the room participants removed with a dead instance; their rooms must hear them leave. */
  onRoomsGone(listener: (gone: RoomDeparture[]) => void): void;
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

/** Reconnection backoff: 100 ms doubling up to 3 s, with jitter so instances do not reconnect in step. */
const backoff = (retries: number) => Math.min(100 * 2 ** retries, 3000) + Math.floor(Math.random() * 100);

export function createCluster(options: ClusterOptions): Cluster {
  // Loaded only here, so a single instance without Redis never loads them;
  // require() because this factory is synchronous.
  /* eslint-disable @typescript-eslint/no-require-imports -- lazy load, see above */
  const { createClient } = require('redis') as typeof import('redis');
  const { createAdapter } = require('@socket.io/redis-streams-adapter') as typeof import('@socket.io/redis-streams-adapter');
  /* eslint-enable @typescript-eslint/no-require-imports */
  const { url, prefix, timeoutMs } = options;
  const now = options.now ?? Date.now;
  const instanceId = randomUUID();
  const log = options.log.child({ instance: instanceId });
  const { aliveMs, tickMs } = clusterTiming(timeoutMs);
  const where = redactedUrl(url);

  // Commands fail at once while Redis is away (no offline queue), so a join
  // is refused with a clear error instead of hanging.
  const client = createClient({ url, disableOfflineQueue: true, socket: { reconnectStrategy: backoff } });

  let connected = false;
  let everConnected = false;
  let readySince: number | undefined;
  let failures = 0;
  client.on('ready', () => {
    connected = true;
    readySince = performance.now(); // monotonic: a wall-clock step must not start a sweep early
    if (everConnected) log.warn({ redis: where }, 'Redis connection restored: joins are accepted again');
    else log.info({ redis: where, timeoutMs }, 'Redis connected: this instance is part of a cluster');
    everConnected = true;
    failures = 0;
    void tick();
  });
  client.on('error', (err: Error) => {
    failures++;
    const about = { redis: where, err: err.message };
    if (connected) log.error(about, 'Redis connection lost: connections and joins are refused until it is back');
    else if (failures === 1) log.error(about, 'Redis unreachable: connections and joins are refused until it answers');
    else log.debug({ ...about, attempt: failures }, 'Redis still unreachable');
    connected = false;
    readySince = undefined;
  });

  // The adapter reads its stream on a copy of the client, blocked in XREAD;
  // that copy keeps an offline queue so a Redis outage parks it instead of
  // making it spin. Its copies are kept to be released on close.
  const copies: { isOpen: boolean; unref(): void }[] = [];
  const duplicate = client.duplicate.bind(client);
  client.duplicate = ((overrides?: Parameters<typeof duplicate>[0]) => {
    const copy = duplicate({ ...overrides, disableOfflineQueue: false });
    copies.push(copy);
    return copy;
  }) as typeof client.duplicate;
  const adapterOptions: RedisStreamsAdapterOptions = {
    streamName: `${prefix}socket.io`,
    channelPrefix: `${prefix}socket.io`,
    sessionKeyPrefix: `${prefix}sio:session:`,
  };
  const adapter = createAdapter(client, adapterOptions);
  client.duplicate = duplicate;

  let listener: ((gone: PeerGone[]) => void) | undefined;
  const registry = createRedisRegistry({
    client,
    prefix,
    instanceId,
    aliveMs,
    log,
    now,
    onPeersGone: (gone) => listener?.(gone),
  });

  const rooms = createRedisRoomStore({ client, prefix, instanceId, log });
  let roomsListener: ((gone: RoomDeparture[]) => void) | undefined;

  // One tick at a time: renew this instance's heartbeat, then look for dead
  // ones. Right after (re)connecting, sweeping waits one heartbeat lifetime so
  // the other instances have reconnected and beaten first.
  let ticking = false;
  let closed = false;
  async function tick() {
    if (ticking || closed) return;
    ticking = true;
    try {
      await registry.heartbeat();
      if (readySince !== undefined && performance.now() - readySince >= aliveMs) {
        await registry.sweep();
        const gone = await rooms.sweep();
        if (gone.length) roomsListener?.(gone);
      }
    } catch (err) {
      if (connected) log.error({ err }, 'cluster heartbeat failed');
      else log.debug({ err: (err as Error).message }, 'cluster heartbeat skipped: Redis unreachable');
    } finally {
      ticking = false;
    }
  }
  const timer = setInterval(() => void tick(), tickMs);
  timer.unref();

  client.connect().catch((err: unknown) => log.error({ err, redis: where }, 'Redis client stopped'));

  let closing: Promise<void> | undefined;
  async function close() {
    closed = true;
    clearInterval(timer);
    await registry.close();
    // The adapter ends its stream reader after the reader's current XREAD
    // (up to 5 s); it must not hold the process until then.
    for (const copy of copies) if (copy.isOpen) copy.unref();
    if (client.isReady) await client.close();
    else if (client.isOpen) client.destroy();
    log.info('left the cluster');
  }

  return {
    instanceId,
    registry,
    rooms,
    adapter,
    isConnected: () => connected,
    onPeersGone: (next) => void (listener = next),
    onRoomsGone: (next) => void (roomsListener = next),
    close: () => (closing ??= close()),
  };
}

/** The URL without its password, for logs. */
function redactedUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'redis';
  }
}
