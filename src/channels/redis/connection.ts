// The connection to Redis: one server (REDIS_URL) or a Redis Cluster
// (REDIS_CLUSTER_NODES), with the Socket.IO adapter that fits each. The rest
// of the cluster code sends commands through `RedisCommands`, which routes a
// command by its key on a Redis Cluster.
//
// Adapters: on one Redis, the Streams adapter (one stream, read by every
// instance; it survives short Redis outages without losing events). On a
// Redis Cluster the stream would be one key, so one shard would carry every
// event: there the sharded Pub/Sub adapter (SPUBLISH, Redis 7) spreads the
// channels over the shards, and with a channel per socket a message for one
// socket reaches only the instance that holds it.
//
// Peer lookups (which socket holds peer P in channel C, for every
// `messagePeer`) go through a connection of their own with client-side
// caching: Redis tracks the keys it read and tells it when one changes, so
// a call's offer, answer and candidates cost one lookup, not one each.
//
// A message for one socket on another instance can also go straight to that
// instance (`direct`, see direct.ts): a PUBLISH on the instance's own
// channel, which only that instance subscribes to, instead of the adapter's
// stream that every instance reads. On a Redis Cluster it is an SPUBLISH on
// the shard of that channel: messages to one instance sent while one is
// answered go together in the next, where the sharded adapter would send one
// SPUBLISH per message (each a command, a reply and a push on some shard).
import type { Logger } from 'pino';
import { isErrorReply, type CachedReads, type RedisCommands } from './scripts';

type AdapterFactory = ReturnType<typeof import('@socket.io/redis-streams-adapter').createAdapter>;

export interface RedisTarget {
  /** REDIS_URL; for a cluster, its scheme, user and password apply to every node. */
  url?: string | undefined;
  /** REDIS_CLUSTER_NODES: seed nodes as host:port or redis(s):// URLs. */
  clusterNodes?: string[] | undefined;
}

/** Pub/Sub for messages to one instance (direct.ts): plain on one Redis, sharded on a Redis Cluster. */
export interface DirectPubSub {
  /** PUBLISH (SPUBLISH) on the main connection: resolves with how many subscribers got the message. */
  publish(channel: string, message: Buffer): Promise<number>;
  /**
   * SUBSCRIBE on a connection of its own (named `<prefix>direct` in CLIENT
   * LIST; on a Redis Cluster SSUBSCRIBE on the adapter's subscriber); call it
   * after connect(). node-redis subscribes again after the connection comes
   * back, and a new subscriber after a failover takes it over.
   */
  subscribe(channel: string, listener: (message: Buffer) => void): Promise<void>;
}

export interface RedisConnection {
  readonly clustered: boolean;
  /** Pub/Sub to one instance. */
  readonly direct?: DirectPubSub | undefined;
  readonly commands: RedisCommands;
  /** Reads served from this instance's client-side cache while Redis says they are current. */
  readonly cachedReads: CachedReads;
  /** The node-redis client (or cluster), for libraries that take one. */
  readonly client: unknown;
  readonly adapter: AdapterFactory;
  /**
   * Resolves once this instance receives what other instances send to the
   * Socket.IO room `room`. On a Redis Cluster the adapter subscribes to a
   * room's channel when its first local socket joins, without waiting: a
   * message sent before that subscription is in place would be lost.
   */
  roomSubscribed(room: string): Promise<void>;
  /** Where Redis is, without passwords, for logs. */
  readonly where: string;
  /** Whether the client is connected (on a cluster: to the seeds; a node may still be away). */
  isOpen(): boolean;
  /**
   * The Redis Cluster's configuration epoch, which grows with every failover
   * and slot move (undefined on one Redis).
   */
  topologyEpoch(): Promise<number | undefined>;
  /** After a failover, subscribes the adapter's channels again on the shards' new masters. */
  resubscribe(): Promise<void>;
  connect(): Promise<void>;
  /** Called on every (re)connection, and with the error on every failure. */
  onReady(listener: () => void): void;
  onError(listener: (err: Error) => void): void;
  close(): Promise<void>;
}

/** Reconnection backoff: 100 ms doubling up to 3 s, with jitter so instances do not reconnect in step. */
const backoff = (retries: number) => Math.min(100 * 2 ** retries, 3000) + Math.floor(Math.random() * 100);

/** A connection's name in CLIENT LIST, after the prefix (a name holds no spaces): `peer-lookups`, `direct`, `subscriber`. */
const connectionName = (prefix: string, role: string) => `${prefix.replace(/[^\x21-\x7e]/g, '_')}${role}`;

/**
 * Client-side cache of the lookup connection (RESP3 is what Redis's
 * invalidation messages need). Entries live until Redis invalidates them; the
 * bound keeps an instance whose peers come and go from growing it.
 */

const LOOKUP_CACHE = { ttl: 0, maxEntries: 20_000, evictPolicy: 'LRU', recordStats: false } as const;

/** A seed node as a URL: `host:port` gets the scheme and credentials of REDIS_URL (or plain redis://). */
export function seedUrl(node: string, base: string | undefined): string {
  if (/^rediss?:\/\//.test(node)) return node;
  const url = new URL(base ?? 'redis://localhost');
  url.host = node;
  url.pathname = '';
  return url.toString();
}

export function connectRedis(target: RedisTarget, prefix: string, log: Logger): RedisConnection {
  return target.clusterNodes?.length ? connectCluster(target.clusterNodes, target.url, prefix, log) : connectOne(target.url ?? '', prefix);
}

function connectOne(url: string, prefix: string): RedisConnection {
  // Loaded only here, so a single instance without Redis never loads them;
  // require() because this factory is synchronous.
  /* eslint-disable @typescript-eslint/no-require-imports -- lazy load, see above */
  const { createClient } = require('redis') as typeof import('redis');
  const { createAdapter } = require('@socket.io/redis-streams-adapter') as typeof import('@socket.io/redis-streams-adapter');
  /* eslint-enable @typescript-eslint/no-require-imports */

  // Commands fail at once while Redis is away (no offline queue), so a join
  // is refused with a clear error instead of hanging.
  const client = createClient({ url, disableOfflineQueue: true, socket: { reconnectStrategy: backoff } });
  // The adapter reads its stream on a copy of the client, blocked in XREAD;
  // that copy keeps an offline queue so a Redis outage parks it instead of
  // making it spin. Its copies are kept to be released on close.
  const copies: { isOpen: boolean; isReady: boolean; unref(): void; destroy(): void }[] = [];
  const duplicate = client.duplicate.bind(client);
  client.duplicate = ((overrides?: Parameters<typeof duplicate>[0]) => {
    const copy = duplicate({ ...overrides, disableOfflineQueue: false });
    // The adapter disconnects its copy when its reader stops, which may be
    // after close() has destroyed it: that must not throw.
    const disconnect = copy.disconnect.bind(copy);
    copy.disconnect = () => (copy.isOpen ? disconnect() : Promise.resolve());
    copies.push(copy);
    return copy;
  }) as typeof client.duplicate;
  const adapter = createAdapter(client, {
    streamName: `${prefix}socket.io`,
    channelPrefix: `${prefix}socket.io`,
    sessionKeyPrefix: `${prefix}sio:session:`,
  });
  client.duplicate = duplicate;
  const lookups = createClient({
    url,
    name: connectionName(prefix, 'peer-lookups'),
    RESP: 3,
    clientSideCache: LOOKUP_CACHE,
    disableOfflineQueue: true,
    socket: { reconnectStrategy: backoff },
  });
  // Its failures show on the main client too; commands on it fail on their own.
  lookups.on('error', () => undefined);
  // Messages sent straight to this instance. While it is away, PUBLISH finds
  // no subscriber and the sender falls back to the adapter (direct.ts).
  const subscriber = createClient({ url, name: connectionName(prefix, 'direct'), socket: { reconnectStrategy: backoff } });
  subscriber.on('error', () => undefined);

  return {
    clustered: false,
    commands: { send: (args) => client.sendCommand(args) },
    direct: {
      publish: async (channel, message) => Number(await client.sendCommand(['PUBLISH', channel, message])),
      // Its offline queue holds the SUBSCRIBE until the connection is up.
      subscribe: async (channel, listener) => void (await subscriber.subscribe(channel, listener, true)),
    },
    cachedReads: {
      // While the lookup connection is away (it reconnects on its own
      // schedule, after the main one may have), the read goes uncached.
      hashField: async (key, field) => (await lookups.hGet(key, field).catch(() => client.hGet(key, field))) ?? undefined,
    },
    client,
    adapter,
    where: redactedUrl(url),
    isOpen: () => client.isReady,
    topologyEpoch: async () => undefined,
    resubscribe: async () => undefined,
    // One stream that every instance reads: nothing to wait for.
    roomSubscribed: async () => undefined,
    connect: async () => void (await Promise.all([client.connect(), lookups.connect(), subscriber.connect()])),
    onReady: (listener) => void client.on('ready', listener),
    onError: (listener) => void client.on('error', listener),
    async close() {
      // The adapter ends its stream reader after the reader's current XREAD
      // (up to 5 s); it must not hold the process until then.
      // A copy still reconnecting would wait for Redis forever, its XREAD
      // queued: it is destroyed.
      for (const copy of copies) {
        if (copy.isReady) copy.unref();
        else if (copy.isOpen) copy.destroy();
      }
      for (const one of [client, lookups, subscriber]) {
        if (one.isReady) await one.close();
        else if (one.isOpen) one.destroy();
      }
    },
  };
}

function connectCluster(nodes: string[], url: string | undefined, prefix: string, log: Logger): RedisConnection {
  /* eslint-disable @typescript-eslint/no-require-imports -- lazy load, see connectOne */
  const { createCluster } = require('redis') as typeof import('redis');
  const { createShardedAdapter } = require('@socket.io/redis-adapter') as typeof import('@socket.io/redis-adapter');
  /* eslint-enable @typescript-eslint/no-require-imports */
  const rootNodes = nodes.map((node) => ({ url: seedUrl(node, url) }));
  const first = new URL(rootNodes[0]?.url ?? 'redis://localhost');
  const options = {
    rootNodes,
    // Credentials and TLS of the seeds apply to the nodes they reveal.
    defaults: {
      ...(first.username && { username: decodeURIComponent(first.username) }),
      ...(first.password && { password: decodeURIComponent(first.password) }),
      disableOfflineQueue: true,
      socket: { reconnectStrategy: backoff, ...(first.protocol === 'rediss:' && { tls: true as const }) },
    },
  };
  /** The options of a connection with a name of its own in CLIENT LIST. */
  const named = (role: string) => ({ ...options, defaults: { ...options.defaults, name: connectionName(prefix, role) } });
  const cluster = createCluster(options);
  const lookups = createCluster({
    ...named('peer-lookups'),
    RESP: 3,
    clientSideCache: LOOKUP_CACHE,
  });
  lookups.on('error', () => undefined);
  let connected = () => {};
  // Sharded Pub/Sub on a connection of its own, replaced after a failover.
  const subscriberOptions = named('subscriber');
  let subscriber = createCluster(subscriberOptions);
  let closed = false;
  // The adapter subscribes as soon as Socket.IO creates it, before the
  // cluster's slots are known: its subscriptions wait for the connection.
  // They are kept, so that a new subscriber can take them over: node-redis
  // does not move a shard's subscriptions when its master dies.
  type Subscription = Parameters<typeof subscriber.sSubscribe>;
  const subscriptions = new Map<string, Subscription>();
  let subscribed = new Promise<void>((resolve) => (connected = resolve));
  // The last subscribe or unsubscribe of each channel, while it runs: the
  // next one on that channel waits for it, and roomSubscribed() reads it.
  // node-redis drops a shard's Pub/Sub connection when an unsubscribe leaves
  // it with no channel; a subscribe to the same channel sent meanwhile (a
  // socket refused from a room, then another joining it) went out on that
  // connection and was lost with it.
  const inFlight = new Map<string, Promise<unknown>>();
  const channelPrefix = `${prefix}socket.io`;
  function inTurn(channels: string[], run: () => Promise<unknown>) {
    const before = channels.map((channel) => inFlight.get(channel));
    const done = Promise.all([subscribed, ...before]).then(run);
    for (const channel of channels) {
      inFlight.set(channel, done);
      void done.finally(() => inFlight.get(channel) === done && inFlight.delete(channel));
    }
    return done;
  }
  const waitingSubscriber = {
    sSubscribe(...args: Subscription) {
      const channels = [args[0]].flat().map(String);
      for (const channel of channels) subscriptions.set(channel, [channel, ...args.slice(1)] as Subscription);
      return inTurn(channels, () =>
        subscriber.sSubscribe(...args).catch((err: unknown) => log.warn({ err }, 'Redis Cluster: subscribing failed')),
      );
    },
    sUnsubscribe(...args: Parameters<typeof subscriber.sUnsubscribe>) {
      const channels = [args[0] ?? []].flat().map(String);
      for (const channel of channels) subscriptions.delete(channel);
      return inTurn(channels, () => subscriber.sUnsubscribe(...args).catch(() => undefined));
    },
  };
  /**
   * A fresh subscriber, subscribed to everything the old one was, before the
   * old one goes: an event published meanwhile reaches one of them (one
   * published in the moment both are subscribed may reach both), where
   * dropping the old one first lost what came before the new one subscribed.
   */
  async function resubscribe() {
    if (closed) return;
    const old = subscriber;
    const next = createCluster(subscriberOptions);
    next.on('error', (err: Error) => log.debug({ err: err.message }, 'Redis Cluster subscriber error'));
    // As the first subscriber's (below): a node it loses makes the clients ask for the slots again.
    next.on('node-error', () => rediscover());
    let ready = () => {};
    subscribed = new Promise<void>((resolve) => (ready = resolve));
    try {
      await next.connect();
      // Closed meanwhile: close() ended the old one, and this one must not stay
      // connected. It is dropped here, once connected: one dropped while it
      // connects goes on connecting the nodes it found.
      if (closed) return next.destroy();
      const results = await Promise.allSettled([...subscriptions.values()].map((args) => next.sSubscribe(...args)));
      if (closed) return next.destroy();
      subscriber = next;
      old.destroy();
      const failed = results.filter((result) => result.status === 'rejected');
      if (failed.length)
        throw new AggregateError(
          failed.map((result) => result.reason),
          `${failed.length} channels not subscribed`,
        );
    } catch (err) {
      if (!closed) throw err;
    } finally {
      // Failed to connect: the old one goes on, as it can.
      ready();
    }
  }
  const adapter = createShardedAdapter(cluster, waitingSubscriber, {
    channelPrefix,
    subscriptionMode: 'dynamic-private',
  }) as unknown as AdapterFactory;
  let open = false;
  const readyListeners: (() => void)[] = [];
  const errorListeners: ((err: Error) => void)[] = [];
  // A node that fails is reported; the heartbeat tells when commands go through again (cluster.ts).
  const failed = (err: Error) => errorListeners.forEach((listener) => listener(err));
  // node-redis learns a new slot owner only from a MOVED reply, and a dead
  // master never sends one: when a node fails, the clients ask the cluster
  // for its slots again (once at a time), so a promoted replica is found.
  const rediscover = throttled(REDISCOVER_MS, () =>
    Promise.all([cluster, subscriber, lookups].map((c) => rediscoverSlots(c, rootNodes[0]?.url))).catch((err: unknown) =>
      log.debug({ err: (err as Error).message }, 'Redis Cluster: slots not refreshed'),
    ),
  );
  const onFailure = rediscoverOnFailure(rediscover);
  cluster.on('error', failed);
  cluster.on('node-error', (err: Error) => {
    failed(err);
    rediscover();
  });
  subscriber.on('node-error', () => rediscover());
  lookups.on('node-error', () => rediscover());
  subscriber.on('error', (err: Error) => log.debug({ err: err.message }, 'Redis Cluster subscriber error'));
  return {
    clustered: true,
    // The adapter's channel of a room in the default namespace (ShardedRedisAdapter.dynamicChannel).
    roomSubscribed: async (room) => void (await inFlight.get(`${channelPrefix}#/#${room}#`)),
    commands: {
      send: (args, key) => cluster.sendCommand(key, false, args).catch(onFailure),
    },
    direct: {
      publish: async (channel, message) => Number(await cluster.sPublish(channel, message).catch(onFailure)),
      subscribe: async (channel, listener) =>
        void (await waitingSubscriber.sSubscribe(
          channel,
          (message) => listener(typeof message === 'string' ? Buffer.from(message) : message),
          true,
        )),
    },
    cachedReads: {
      // Uncached while the lookup connection is away, as on one Redis.
      hashField: async (key, field) => (await lookups.hGet(key, field).catch(() => cluster.hGet(key, field).catch(onFailure))) ?? undefined,
    },
    client: cluster,
    adapter,
    where: rootNodes.map((node) => redactedUrl(node.url)).join(','),
    isOpen: () => open,
    resubscribe,
    async topologyEpoch() {
      const info = String(await cluster.sendCommand(undefined, true, ['CLUSTER', 'INFO']));
      const epoch = /cluster_current_epoch:(\d+)/.exec(info)?.[1];
      return epoch === undefined ? undefined : Number(epoch);
    },
    async connect() {
      await Promise.all([cluster.connect(), subscriber.connect(), lookups.connect()]);
      connected();
      open = true;
      readyListeners.forEach((listener) => listener());
    },
    onReady: (listener) => void readyListeners.push(listener),
    onError: (listener) => void errorListeners.push(listener),
    async close() {
      open = false;
      closed = true;
      await Promise.allSettled([cluster.close(), subscriber.close(), lookups.close()]);
    },
  };
}

/**
 * A failed command's handler: a failure other than an error reply (a node
 * gone, a closed connection) asks the cluster for its slots again.
 */
const rediscoverOnFailure =
  (rediscover: () => void) =>
  (err: unknown): never => {
    if (!isErrorReply(err)) rediscover();
    throw err;
  };

/** How often the slots may be asked for again while nodes fail. */
const REDISCOVER_MS = 250;

/** Runs `task` at most once per `ms`, and never twice at once. */
function throttled(ms: number, task: () => Promise<unknown>) {
  let last = 0;
  let running = false;
  return () => {
    const now = performance.now();
    if (running || now - last < ms) return;
    running = true;
    last = now;
    void task().finally(() => (running = false));
  };
}

/**
 * Asks the cluster for its slots again. node-redis does this itself only on
 * MOVED; its slot table (`_slots.rediscover`) is not in its typed API.
 */
function rediscoverSlots(cluster: unknown, seed: string | undefined): Promise<void> {
  const slots = (cluster as { _slots?: { rediscover?: (startWith: { options: { url?: string } }) => Promise<void> } })._slots;
  return slots?.rediscover?.({ options: { url: seed } }) ?? Promise.resolve();
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

/** A plain command connection to one Redis or a Redis Cluster, for a part with a connection of its own (the webhook queue). */
export interface CommandClient extends RedisCommands {
  /** Whether commands can be sent now. */
  isReady(): boolean;
  connect(): Promise<void>;
  /** Closes after the commands in flight; destroys it when Redis is away. */
  close(): Promise<void>;
  /** Drops the connection at once (a blocking read in progress fails). */
  destroy(): void;
  onError(listener: (err: Error) => void): void;
}

export function createCommandClient(target: RedisTarget, { offlineQueue = false } = {}): CommandClient {
  /* eslint-disable-next-line @typescript-eslint/no-require-imports -- lazy load, see connectOne */
  const { createClient, createCluster } = require('redis') as typeof import('redis');
  if (target.clusterNodes?.length) {
    const rootNodes = target.clusterNodes.map((node) => ({ url: seedUrl(node, target.url) }));
    const first = new URL(rootNodes[0]?.url ?? 'redis://localhost');
    const cluster = createCluster({
      rootNodes,
      defaults: {
        ...(first.username && { username: decodeURIComponent(first.username) }),
        ...(first.password && { password: decodeURIComponent(first.password) }),
        disableOfflineQueue: !offlineQueue,
        socket: { reconnectStrategy: backoff, ...(first.protocol === 'rediss:' && { tls: true as const }) },
      },
    });
    let ready = false;
    const rediscover = throttled(REDISCOVER_MS, () => rediscoverSlots(cluster, rootNodes[0]?.url).catch(() => undefined));
    const onFailure = rediscoverOnFailure(rediscover);
    cluster.on('node-error', () => rediscover());
    return {
      send: (args, key) => cluster.sendCommand(key, false, args).catch(onFailure),
      isReady: () => ready && cluster.isOpen,
      connect: async () => {
        await cluster.connect();
        ready = true;
      },
      close: async () => {
        ready = false;
        await cluster.close().catch(() => cluster.destroy());
      },
      destroy: () => {
        ready = false;
        if (cluster.isOpen) cluster.destroy();
      },
      onError: (listener) => void cluster.on('error', listener).on('node-error', listener),
    };
  }
  const client = createClient({ url: target.url, disableOfflineQueue: !offlineQueue, socket: { reconnectStrategy: backoff } });
  return {
    send: (args) => client.sendCommand(args),
    isReady: () => client.isReady,
    connect: async () => void (await client.connect()),
    async close() {
      if (client.isReady) await client.close().catch(() => (client.isOpen ? client.destroy() : undefined));
      else if (client.isOpen) client.destroy();
    },
    destroy: () => {
      if (client.isOpen) client.destroy();
    },
    onError: (listener) => void client.on('error', listener),
  };
}
