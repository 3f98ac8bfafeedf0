// The registry shared by several instances through Redis. It keeps the
// in-memory registry's semantics: every decision (uniqueness, totalBitrate,
// connections) is one Lua script (scripts.ts), so it is taken atomically with
// its update whichever instance asks. Each instance also records what it
// registered, so that when it dies another instance can remove its peers and
// release its connections, and so that it can restore its part after Redis
// lost its data.
import type { Logger } from 'pino';
import type { Clock } from '../../clock';
import type { ConnectRefusal } from '../../limits';
import {
  channelSummary,
  type ChannelRegistry,
  type ChannelSummary,
  type JoinRequest,
  type JoinResult,
  type PeerGone,
  type RegistrySnapshot,
  RegistryUnavailableError,
} from '../registry';
import { createExclusiveGate } from './gate';
import { decodeName, encodeName, keyLayout, locatedPeerFromEntry, peerFromEntry } from './keys';
import {
  asString,
  claimScript,
  connectScript,
  createScriptRunner,
  disconnectScript,
  forgetScript,
  hashEntries,
  heartbeatScript,
  holderScript,
  isEncodedName,
  publicUrlOf,
  joinScript,
  leaveScript,
  refusalScript,
  registryLibrary,
  registrationRef,
  retireScript,
  snapshotScript,
  usageScript,
  sweepScript,
  syncScript,
  type CachedReads,
  type ChannelEntry,
  type RedisCommands,
  type Registration,
} from './scripts';

export { RegistryUnavailableError } from '../registry';
export type { RedisCommands } from './scripts';

export interface RedisRegistryOptions {
  client: RedisCommands;
  /** Where peer lookups go: a client-side cache (connection.ts); plain HGETs on `client` without one. */
  cachedReads?: CachedReads;
  /** Prefix of every key (REDIS_PREFIX). */
  prefix: string;
  /** Buckets the accounts are spread over (keys.ts): 1 on one Redis, CLUSTER_BUCKETS on a Redis Cluster. */
  buckets?: number;
  /** This instance's id, unique in the cluster. */
  instanceId: string;
  /** Lifetime of the heartbeat key: an instance silent this long is taken for dead. */
  aliveMs: number;
  /** PUBLIC_URL: published with the heartbeat, for `route` on every instance. */
  publicUrl?: string | undefined;
  log: Logger;
  clock: Clock;
}

export interface RedisRegistry extends ChannelRegistry {
  /** Refreshes this instance's heartbeat; restores its state if Redis lost it. */
  heartbeat(): Promise<void>;
  /** Removes the peers and connections of instances whose heartbeat expired; returns those instances. */
  sweep(): Promise<string[]>;
  /** Redis may have lost recent writes (a replica took over): the next heartbeat restores this instance's part. */
  resync(): void;
  /** Calls `listener` after each time this instance's part was written back (Redis lost it, a failover, a failed call). */
  onSynced(listener: () => void): () => void;
}

const SWEEP_BATCH = 200;
/** Batches one sweep may run per dead instance, so a tick stays bounded. */
const SWEEP_MAX_BATCHES = 100;

// Sets have no order: the REST API lists accounts and channels by name.
const byName =
  <T>(name: (item: T) => string) =>
  (a: T, b: T) =>
    name(a) < name(b) ? -1 : name(a) > name(b) ? 1 : 0;

/** Thrown inside a call when Redis does not know this instance: it registers again and the call runs again. */
const UNREGISTERED = Symbol('unregistered');

export function createRedisRegistry(options: RedisRegistryOptions): RedisRegistry {
  const { client, prefix, instanceId, aliveMs, publicUrl, log, clock } = options;
  const keys = keyLayout(prefix, options.buckets ?? 1);
  const redis = createScriptRunner(client, { library: registryLibrary, declareKeys: keys.buckets.length > 1 });
  const cachedReads = options.cachedReads ?? {
    hashField: async (key: string, field: string) => asString(await client.send(['HGET', key, field], key)),
  };
  const peersGoneListeners = new Set<(gone: PeerGone[]) => void>();
  const syncedListeners = new Set<() => void>();
  const peersGone = (gone: PeerGone[]) => {
    if (gone.length) for (const listener of peersGoneListeners) listener(gone);
  };
  const toPeers = (account: string, entries: ChannelEntry[]) => entries.map(([peerID, entry]) => peerFromEntry(account, peerID, entry));
  const toLocatedPeers = (account: string, entries: ChannelEntry[]) =>
    entries.map(([peerID, entry]) => locatedPeerFromEntry(account, peerID, entry));

  // This instance's own part of the shared state, as Redis confirmed it.
  const ownConnections = new Map<string, number>();
  const ownRegistrations = new Map<string, Registration>();
  let registered = false;
  let everRegistered = false;
  /** Set when Redis may differ from what this instance holds (a lost reply, a failed leave). */
  let needsSync = false;
  let closed = false;
  let closing: Promise<void> | undefined;

  // Syncing compares the whole of this instance's part, so it runs alone:
  // calls wait while it runs, and it waits for calls in flight.
  const gate = createExclusiveGate();
  const exclusive = gate.exclusive;

  /** Runs one call; a call that finds this instance unknown to Redis re-registers it and runs again. */
  async function call<T>(task: () => Promise<T | typeof UNREGISTERED>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      if (!registered && !closed) await heartbeat();
      const result = await gate.shared(async () => {
        if (closed) throw new RegistryUnavailableError('registry closed');
        try {
          return await task();
        } catch (err) {
          needsSync = true;
          throw err;
        }
      });
      if (result !== UNREGISTERED) return result;
      if (attempt > 0) throw new RegistryUnavailableError('this instance could not register in Redis');
      registered = false;
    }
  }

  let beating: Promise<void> | undefined;
  function heartbeat(): Promise<void> {
    if (closed) return Promise.resolve();
    return (beating ??= beat().finally(() => (beating = undefined)));
  }

  async function beat() {
    const known = await redis.run(heartbeatScript, keys.liveness, { instance: instanceId, aliveMs, url: publicUrl });
    if (!known && everRegistered)
      log.warn({ peers: ownRegistrations.size }, 'Redis had lost this instance (restarted, or took it for dead): restoring its peers');
    else if (!everRegistered) log.info('instance registered in Redis');
    registered = everRegistered = true;
    if (!known) needsSync = true;
    if (needsSync) await exclusive(() => sync(false));
  }

  /** This instance's part, bucket by bucket (every bucket, so that each learns this instance is synced). */
  function ownStateByBucket() {
    const state = new Map(
      keys.buckets.map((base) => [base, { connections: new Map<string, number>(), registrations: [] as Registration[] }]),
    );
    for (const [account, count] of ownConnections) state.get(keys.bucketOf(account))?.connections.set(account, count);
    for (const registration of ownRegistrations.values()) state.get(keys.bucketOf(registration.account))?.registrations.push(registration);
    return state;
  }

  async function sync(retire: boolean) {
    needsSync = false;
    const gone: PeerGone[] = [];
    const dropped: string[] = [];
    try {
      const replies = await Promise.all(
        [...ownStateByBucket()].map(([base, own]) => redis.run(syncScript, base, { instance: instanceId, ...own, retire })),
      );
      for (const reply of replies) {
        gone.push(...reply.gone);
        dropped.push(...reply.dropped);
      }
      if (retire) await redis.run(retireScript, keys.liveness, { instance: instanceId });
    } catch (err) {
      needsSync = true;
      throw err;
    }
    for (const ref of dropped) ownRegistrations.delete(ref);
    if (gone.length || dropped.length) log.info({ removed: gone.length, lost: dropped.length }, 'instance state in Redis brought in line');
    peersGone(gone);
    if (!retire) for (const listener of syncedListeners) listener();
  }

  async function sweep(): Promise<string[]> {
    if (closed || !registered) return [];
    const gone = await redis.run(claimScript, keys.liveness, { instance: instanceId });
    for (const dead of gone) {
      let removed = 0;
      const swept = await Promise.all(
        keys.buckets.map(async (base) => {
          for (let batch = 0; batch < SWEEP_MAX_BATCHES; batch++) {
            const reply = await redis.run(sweepScript, base, { dead, batch: SWEEP_BATCH });
            removed += reply.removed;
            peersGone(reply.gone);
            if (reply.done) return true;
          }
          return false;
        }),
      );
      // A bucket with more left is swept on the next tick.
      if (!swept.every(Boolean)) continue;
      await redis.run(forgetScript, keys.liveness, { dead });
      log.warn({ dead, peers: removed }, 'an instance stopped answering: its peers removed, its connections released');
    }
    return gone;
  }

  const registry: RedisRegistry = {
    async connect(account, plan) {
      const encoded = encodeName(account);
      const reply = await call(async () => {
        const input = { instance: instanceId, account: encoded, maxConnections: plan.connections, maxTotalBitrate: plan.totalBitrate };
        const answer = await redis.run(connectScript, keys.bucketOf(encoded), input);
        return answer === 'unregistered' ? UNREGISTERED : answer;
      });
      if (reply !== 'ok') return reply satisfies ConnectRefusal;
      ownConnections.set(encoded, (ownConnections.get(encoded) ?? 0) + 1);
      return null;
    },

    async disconnect(account) {
      const encoded = encodeName(account);
      const mine = ownConnections.get(encoded) ?? 0;
      // The socket is gone whatever Redis answers; a failure is repaired by the next sync.
      if (mine > 1) ownConnections.set(encoded, mine - 1);
      else ownConnections.delete(encoded);
      if (closed) return;
      await call(() => redis.run(disconnectScript, keys.bucketOf(encoded), { instance: instanceId, account: encoded }));
    },

    async join(req: JoinRequest): Promise<JoinResult> {
      const registration: Registration = {
        account: encodeName(req.account),
        channel: encodeName(req.channel),
        peerID: encodeName(req.peerID),
        socketId: encodeName(req.socketId),
        role: req.role,
        bitrate: '',
        audioBitrate: '',
        stream: '',
      };
      if (req.role === 'broadcaster' && req.stream) {
        const stream = req.stream;
        registration.bitrate = String(stream.bitrate);
        registration.audioBitrate = String(stream.audioBitrate);
        registration.stream = JSON.stringify({ ...stream, publisher: req.peerID, time: clock.now() });
      }
      // The registration the socket leaves is gone whatever Redis answers; a failure is repaired by the next sync.
      const leaving = req.leaving && { channel: encodeName(req.leaving.channel), peerID: encodeName(req.leaving.peerID) };
      if (leaving) {
        const ref = registrationRef({ account: registration.account, ...leaving });
        if (ownRegistrations.get(ref)?.socketId === registration.socketId) ownRegistrations.delete(ref);
      }
      const reply = await call(async () => {
        const answer = await redis.run(joinScript, keys.bucketOf(registration.account), {
          instance: instanceId,
          registration,
          maxTotalBitrate: req.plan.totalBitrate,
          maxChannels: req.maxChannels ?? 0,
          maxPeers: req.maxPeers ?? 0,
          leaving,
        });
        return answer.outcome === 'unregistered' ? UNREGISTERED : answer;
      });
      // As the in-memory registry answers: `left` only for a move.
      const left = leaving ? reply.left && toLocatedPeers(req.account, reply.left) : undefined;
      if (reply.outcome === 'refused') return { ok: false, refusal: reply.refusal, left };
      ownRegistrations.set(registrationRef(registration), registration);
      const [publisherID, publisherEntry] = reply.publisher ?? [];
      return {
        ok: true,
        peers: toPeers(req.account, reply.peers),
        publisher:
          publisherID === undefined || publisherEntry === undefined
            ? undefined
            : locatedPeerFromEntry(req.account, publisherID, publisherEntry),
        isNew: reply.isNew,
        left,
      };
    },

    async leave(account, channel, peerID, socketId) {
      const registration = {
        instance: instanceId,
        account: encodeName(account),
        channel: encodeName(channel),
        peerID: encodeName(peerID),
        socketId: encodeName(socketId),
      };
      const ref = registrationRef(registration);
      if (ownRegistrations.get(ref)?.socketId === registration.socketId) ownRegistrations.delete(ref);
      if (closed) return null;
      const remaining = await call(() => redis.run(leaveScript, keys.bucketOf(registration.account), registration));
      return remaining && toLocatedPeers(account, remaining);
    },

    findPeer(account, channel, peerID) {
      const encodedPeerID = encodeName(peerID);
      const encodedAccount = encodeName(account);
      const encodedChannel = encodeName(channel);
      // A peer registered by one of this instance's sockets needs no Redis:
      // this instance made that registration, and Redis confirmed it.
      const own = ownRegistrations.get(registrationRef({ account: encodedAccount, channel: encodedChannel, peerID: encodedPeerID }));
      if (own) return { socketId: decodeName(own.socketId), peerID, type: own.role, account, instance: instanceId };
      const key = keys.channel(encodedAccount, encodedChannel);
      return redis
        .guard(cachedReads.hashField(key, encodedPeerID))
        .then((entry) => (entry === undefined ? undefined : locatedPeerFromEntry(account, encodedPeerID, entry)));
    },

    async peers(account, channel) {
      const key = keys.channel(encodeName(account), encodeName(channel));
      const reply = await redis.send(['HGETALL', key], key);
      // The channel's hash also holds its stream.
      return toPeers(
        account,
        hashEntries(reply).filter(([field]) => isEncodedName(field)),
      );
    },

    async route(account, channel) {
      const here = { url: publicUrl ?? null, instance: instanceId };
      const encoded = encodeName(account);
      const holder = await redis.run(holderScript, keys.bucketOf(encoded), { account: encoded, channel: encodeName(channel) });
      if (holder === undefined) return { ...here, holder: false };
      if (holder === instanceId) return { ...here, holder: true };
      // Another instance: its address is in its heartbeat, unless it has none or is dead.
      const url = publicUrlOf(await redis.send(['GET', keys.alive(holder)], keys.alive(holder)));
      return url === undefined ? { ...here, holder: false } : { url, instance: holder, holder: true };
    },

    async countRefusal(account, action, issues) {
      const encoded = encodeName(account);
      await redis.run(refusalScript, keys.bucketOf(encoded), { account: encoded, action, issues });
    },

    async snapshot(): Promise<RegistrySnapshot> {
      const result: RegistrySnapshot = { connections: [], channels: [], stats: [] };
      const accounts = (await Promise.all(keys.buckets.map((base) => redis.run(snapshotScript, base, undefined)))).flat();
      for (const { account, usage, channels } of accounts.sort(byName((a) => a.account))) {
        result.stats.push([account, usage]);
        for (const { channel, peers, stream } of channels.sort(byName((c) => c.channel))) {
          const byPeerID = toPeers(account, peers).map((peer) => [peer.peerID, peer] as const);
          result.connections.push([channel, Object.fromEntries(byPeerID)]);
          if (!stream) continue;
          const published = JSON.parse(stream) as Omit<ChannelSummary, 'peers' | 'account'>;
          result.channels.push([channel, channelSummary(published, peers.length, account)]);
        }
      }
      return result;
    },

    async usage() {
      const accounts = (await Promise.all(keys.buckets.map((base) => redis.run(usageScript, base, undefined)))).flat();
      return accounts.sort(byName(([account]) => account));
    },

    onPeersGone(listener) {
      peersGoneListeners.add(listener);
      return () => void peersGoneListeners.delete(listener);
    },

    onSynced(listener) {
      syncedListeners.add(listener);
      return () => void syncedListeners.delete(listener);
    },

    heartbeat,
    sweep,
    resync: () => void (needsSync = true),

    /** Removes this instance's part of the shared state (peers left, connections released) and forgets it. */
    close() {
      return (closing ??= (async () => {
        // Calls waiting from here on are refused; those in flight finish first.
        closed = true;
        try {
          if (registered) await exclusive(() => sync(true));
        } catch (err) {
          log.warn({ err }, 'could not leave Redis cleanly; the other instances will clean up after this one');
        } finally {
          ownConnections.clear();
          ownRegistrations.clear();
        }
      })());
    },
  };
  return registry;
}
