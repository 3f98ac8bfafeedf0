// The registry shared by several instances through Redis. It keeps the
// in-memory registry's semantics: every decision (uniqueness, totalBitrate,
// connections) is one Lua script, so it is taken atomically with its update
// whichever instance asks. Each instance also records what it registered, so
// that when it dies another instance can remove its peers and release its
// connections, and so that it can restore its part after Redis lost its data.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { ConnectRefusal } from '../limits';
import type { Peer, PeerRole } from '../protocol';
import {
  channelSummary,
  type AccountUsage,
  type ChannelRegistry,
  type ChannelSummary,
  type JoinRefusal,
  type JoinRequest,
  type JoinResult,
  type RegistrySnapshot,
  RegistryUnavailableError,
} from './registry';

/** The one command the registry needs from a Redis client (node-redis `sendCommand`). */
export interface RedisCommands {
  sendCommand(args: string[]): Promise<unknown>;
}

/** A peer removed for a socket that is gone: the channel's remaining sockets must hear it leave. */
export interface PeerGone {
  channel: string;
  peerID: string;
  socketIds: string[];
}

export interface RedisRegistryOptions {
  client: RedisCommands;
  /** Prefix of every key (REDIS_PREFIX). */
  prefix: string;
  /** This instance's id, unique in the cluster. */
  instanceId: string;
  /** Lifetime of the heartbeat key: an instance silent this long is taken for dead. */
  aliveMs: number;
  log: Logger;
  now?: () => number;
  onPeersGone: (gone: PeerGone[]) => void;
}

export interface RedisRegistry extends ChannelRegistry {
  /** Refreshes this instance's heartbeat; restores its state if Redis lost it. */
  heartbeat(): Promise<void>;
  /** Removes the peers and connections of instances whose heartbeat expired. */
  sweep(): Promise<void>;
}

// Defined with the interface, so that signaling tells an outage from a bug without knowing Redis.
export { RegistryUnavailableError };

// What this instance registered, as sent to Redis (names encoded).
interface OwnPeer {
  a: string;
  c: string;
  p: string;
  s: string;
  role: PeerRole;
  b: string;
  ab: string;
  v: string;
}

/** A Redis that stops answering without closing the connection must not hold joins forever. */
const COMMAND_TIMEOUT_MS = 5000;
const SWEEP_BATCH = 200;
/** Batches one sweep may run per dead instance, so a tick stays bounded. */
const SWEEP_MAX_BATCHES = 100;

const encode = (name: string) => JSON.stringify(name);
const decode = (text: string) => JSON.parse(text) as string;
const num = (value: string | undefined) => (value === undefined ? 0 : Number(value) || 0);
const list = (reply: unknown): unknown[] => (Array.isArray(reply) ? reply : []);
const text = (reply: unknown): string | undefined => (typeof reply === 'string' ? reply : undefined);

function pairs(flat: unknown): [string, string][] {
  const items = list(flat);
  const result: [string, string][] = [];
  for (let i = 0; i + 1 < items.length; i += 2) result.push([String(items[i]), String(items[i + 1])]);
  return result;
}

function toPeer(account: string, field: string, value: string): Peer {
  const [role, socket] = value.split('\n');
  return { socketId: decode(socket ?? '""'), peerID: decode(field), type: role === 'broadcaster' ? 'broadcaster' : 'player', account };
}

function toUsage(flat: unknown): AccountUsage {
  const fields = new Map(pairs(flat));
  const issues = Object.fromEntries(
    [...fields].filter(([field]) => field.startsWith('issue:')).map(([field, value]) => [field.slice(6), num(value)]),
  );
  return {
    connections: num(fields.get('connections')),
    bitrate: num(fields.get('bitrate')),
    audioBitrate: num(fields.get('audioBitrate')),
    players: num(fields.get('players')),
    broadcasters: num(fields.get('broadcasters')),
    issues,
    refused: {
      connect: num(fields.get('refused:connect')),
      publish: num(fields.get('refused:publish')),
      subscribe: num(fields.get('refused:subscribe')),
      message: num(fields.get('refused:message')),
    },
  };
}

function toNotes(reply: unknown): PeerGone[] {
  return list(reply).map((note) => {
    const [channel, peerID, sockets] = list(note);
    return { channel: decode(String(channel)), peerID: decode(String(peerID)), socketIds: list(sockets).map((s) => decode(String(s))) };
  });
}

const refusals: readonly JoinRefusal[] = ['uniqueness', 'totalBitrate', 'channels', 'peers'];
const isRefusal = (reply: unknown): reply is JoinRefusal => refusals.includes(reply as JoinRefusal);

// Sets have no order: the REST API lists accounts and channels by name.
const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

export function createRedisRegistry(options: RedisRegistryOptions): RedisRegistry {
  const { client, prefix, instanceId, aliveMs, log, onPeersGone } = options;
  const now = options.now ?? Date.now;
  const channelKey = (a: string, c: string) => `${prefix}ch:${a}${c}`;

  // This instance's own part of the shared state, as Redis confirmed it.
  const ownConnections = new Map<string, number>();
  const ownPeers = new Map<string, OwnPeer>();
  let registered = false;
  let everRegistered = false;
  /** Set when Redis may differ from what this instance holds (a lost reply, a failed leave). */
  let needsSync = false;
  let closed = false;
  let closing: Promise<void> | undefined;

  // Syncing compares the whole of this instance's part, so it runs alone:
  // calls wait while it runs, and it waits for calls in flight.
  let inFlight = 0;
  let idle: (() => void) | undefined;
  let gate: Promise<void> | undefined;

  function send(args: string[]): Promise<unknown> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      const error = new RegistryUnavailableError(`Redis did not answer within ${COMMAND_TIMEOUT_MS} ms`);
      timer = setTimeout(() => reject(error), COMMAND_TIMEOUT_MS);
    });
    return Promise.race([client.sendCommand(args), late]).finally(() => clearTimeout(timer));
  }

  async function run(script: Script, args: string[]): Promise<unknown> {
    const argv = [prefix, ...args];
    try {
      return await send(['EVALSHA', script.sha, '0', ...argv]);
    } catch (err) {
      // Scripts are forgotten when Redis restarts.
      if (err instanceof Error && err.message.startsWith('NOSCRIPT')) return send(['EVAL', script.source, '0', ...argv]);
      throw err;
    }
  }

  async function exclusive<T>(task: () => Promise<T>): Promise<T> {
    while (gate) await gate;
    let open = () => {};
    gate = new Promise<void>((resolve) => (open = resolve));
    try {
      if (inFlight > 0) await new Promise<void>((resolve) => (idle = resolve));
      return await task();
    } finally {
      idle = undefined;
      gate = undefined;
      open();
    }
  }

  const UNREGISTERED = Symbol('unregistered');

  /** Runs one call; a call that finds this instance unknown to Redis re-registers it and runs again. */
  async function call<T>(task: () => Promise<T | typeof UNREGISTERED>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      if (!registered && !closed) await heartbeat();
      while (gate) await gate;
      if (closed) throw new RegistryUnavailableError('registry closed');
      inFlight++;
      let result: T | typeof UNREGISTERED;
      try {
        result = await task();
      } catch (err) {
        needsSync = true;
        throw err;
      } finally {
        if (--inFlight === 0) idle?.();
      }
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
    const known = await run(heartbeatScript, [instanceId, String(aliveMs)]);
    if (known === 0 && everRegistered)
      log.warn({ peers: ownPeers.size }, 'Redis had lost this instance (restarted, or took it for dead): restoring its peers');
    else if (!everRegistered) log.info('instance registered in Redis');
    registered = everRegistered = true;
    if (known === 0) needsSync = true;
    if (needsSync) await exclusive(() => sync(false));
  }

  function ownState(): string[] {
    const args = [String(ownConnections.size)];
    for (const [a, n] of ownConnections) args.push(a, String(n));
    args.push(String(ownPeers.size));
    for (const e of ownPeers.values()) args.push(e.a, e.c, e.p, e.s, e.role, e.b, e.ab, e.v);
    return args;
  }

  async function sync(retire: boolean) {
    needsSync = false;
    let reply: unknown;
    try {
      reply = await run(syncScript, [instanceId, ...(retire ? ['0', '0'] : ownState()), retire ? 'retire' : '']);
    } catch (err) {
      needsSync = true;
      throw err;
    }
    const [notes, dropped] = list(reply);
    for (const ref of list(dropped)) ownPeers.delete(String(ref));
    const gone = toNotes(notes);
    if (gone.length || list(dropped).length)
      log.info({ removed: gone.length, lost: list(dropped).length }, 'instance state in Redis brought in line');
    if (gone.length) onPeersGone(gone);
  }

  async function sweep() {
    if (closed || !registered) return;
    const gone = list(await run(claimScript, [instanceId])).map(String);
    for (const dead of gone) {
      let removed = 0;
      for (let batch = 0; batch < SWEEP_MAX_BATCHES; batch++) {
        const [done, count, notes] = list(await run(sweepScript, [dead, String(SWEEP_BATCH)]));
        removed += Number(count) || 0;
        const left = toNotes(notes);
        if (left.length) onPeersGone(left);
        if (done === 1) {
          log.warn({ dead, peers: removed }, 'an instance stopped answering: its peers removed, its connections released');
          break;
        }
      }
    }
  }

  const registry: RedisRegistry = {
    async connect(account, plan) {
      const a = encode(account);
      const reply = await call(async () => {
        const answer = await run(connectScript, [instanceId, a, String(plan.connections), String(plan.totalBitrate)]);
        return answer === 'unregistered' ? UNREGISTERED : answer;
      });
      if (reply === 'connections' || reply === 'totalBitrate') return reply satisfies ConnectRefusal;
      if (reply !== 'ok') throw new Error(`unexpected reply from Redis: ${String(reply)}`);
      ownConnections.set(a, (ownConnections.get(a) ?? 0) + 1);
      return null;
    },

    async disconnect(account) {
      const a = encode(account);
      const mine = ownConnections.get(a) ?? 0;
      // The socket is gone whatever Redis answers; a failure is repaired by the next sync.
      if (mine > 1) ownConnections.set(a, mine - 1);
      else ownConnections.delete(a);
      if (closed) return;
      await call(() => run(disconnectScript, [instanceId, a]));
    },

    async join(req: JoinRequest): Promise<JoinResult> {
      const a = encode(req.account);
      const c = encode(req.channel);
      const own: OwnPeer = { a, c, p: encode(req.peerID), s: encode(req.socketId), role: req.role, b: '', ab: '', v: '' };
      if (req.role === 'broadcaster' && req.stream) {
        const s = req.stream;
        own.b = String(s.bitrate);
        own.ab = String(s.audioBitrate);
        own.v = JSON.stringify({ ...s, publisher: req.peerID, time: now() });
      }
      const reply = list(
        await call(async () => {
          const answer = await run(joinScript, [
            ...[instanceId, a, c, own.p, own.s, own.role, String(req.plan.totalBitrate), own.b, own.ab, own.v],
            ...[String(req.maxChannels ?? 0), String(req.maxPeers ?? 0)],
          ]);
          return list(answer)[0] === 'unregistered' ? UNREGISTERED : answer;
        }),
      );
      const [outcome, isNew, peers, publisher, publisherValue] = reply;
      if (outcome !== 'ok') {
        if (isRefusal(outcome)) return { ok: false, refusal: outcome };
        throw new Error(`unexpected reply from Redis: ${String(outcome)}`);
      }
      ownPeers.set(a + c + own.p, own);
      const publisherPeer =
        typeof publisher === 'string' && typeof publisherValue === 'string'
          ? toPeer(req.account, publisher, publisherValue)
          : undefined;
      return {
        ok: true,
        peers: pairs(peers).map(([field, value]) => toPeer(req.account, field, value)),
        publisher: publisherPeer,
        isNew: isNew === 1,
      };
    },

    async leave(account, channel, peerID, socketId) {
      const a = encode(account);
      const c = encode(channel);
      const p = encode(peerID);
      const s = encode(socketId);
      const ref = a + c + p;
      if (ownPeers.get(ref)?.s === s) ownPeers.delete(ref);
      if (closed) return null;
      const reply = await call(() => run(leaveScript, [a, c, p, s]));
      return reply == null ? null : pairs(reply).map(([field, value]) => toPeer(account, field, value));
    },

    async findPeer(account, channel, peerID) {
      const value = text(await send(['HGET', channelKey(encode(account), encode(channel)), encode(peerID)]));
      return value === undefined ? undefined : toPeer(account, encode(peerID), value);
    },

    async peers(account, channel) {
      const reply = await send(['HGETALL', channelKey(encode(account), encode(channel))]);
      return pairs(reply).map(([field, value]) => toPeer(account, field, value));
    },

    async countRefusal(account, action, issues) {
      await run(refusalScript, [encode(account), action, ...issues]);
    },

    async snapshot(): Promise<RegistrySnapshot> {
      const result: RegistrySnapshot = { connections: [], channels: [], stats: [] };
      const accounts = list(await run(snapshotScript, [])).map((entry) => {
        const [a, usage, channels] = list(entry);
        return { name: decode(String(a)), usage, channels: list(channels) };
      });
      for (const { name: account, usage, channels } of accounts.sort(byName)) {
        result.stats.push([account, toUsage(usage)]);
        const named = channels.map((entry) => {
          const [c, peers, stream] = list(entry);
          return { name: decode(String(c)), peers: pairs(peers), stream: text(stream) };
        });
        for (const { name, peers, stream } of named.sort(byName)) {
          const byPeerID = peers.map(([field, value]) => [decode(field), toPeer(account, field, value)] as const);
          result.connections.push([name, Object.fromEntries(byPeerID)]);
          if (!stream) continue;
          const published = JSON.parse(stream) as Omit<ChannelSummary, 'peers' | 'account'>;
          result.channels.push([name, channelSummary(published, peers.length, account)]);
        }
      }
      return result;
    },

    heartbeat,
    sweep,

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
          ownPeers.clear();
        }
      })());
    },
  };
  return registry;
}

// The Lua side. Each script is one atomic step, so a
// limit is decided together with the update it allows, whichever instance
// asks. Names arrive JSON-encoded: a JSON string literal has no raw newline
// and ends at its first unescaped quote, so encoded names can be
// concatenated into keys and newline-joined into values without one name
// ever colliding with another.
//
// Keys, after the prefix (ARGV[1]); a, c, p, s are encoded account,
// channel, peer and socket names:
//   accounts            set of accounts that have something to show
//   acct:<a>            hash: connections, bitrate, audioBitrate, players,
//                       broadcasters, refused:<action>, issue:<name>
//   chans:<a>           set of the account's channels
//   ch:<a><c>           hash: p -> "<role>\n<s>\n<instance>"
//   st:<a><c>           hash: b, ab (the stream's bitrates), p (publisher),
//                       v (the stream as JSON, for the REST API)
//   instances           set of live instances; gone: set of dead ones being swept
//   alive:<instance>    heartbeat key with a TTL
//   conn:<instance>     hash: a -> connections counted by that instance
//   peers:<instance>    hash: <a><c><p> -> "<a>\n<c>\n<p>\n<s>", its registrations

interface Script {
  source: string;
  sha: string;
}

const library = `
local P = ARGV[1]
local ACCOUNTS = P .. 'accounts'
local INSTANCES = P .. 'instances'
local GONE = P .. 'gone'
local function accountKey(a) return P .. 'acct:' .. a end
local function channelsKey(a) return P .. 'chans:' .. a end
local function channelKey(a, c) return P .. 'ch:' .. a .. c end
local function streamKey(a, c) return P .. 'st:' .. a .. c end
local function aliveKey(i) return P .. 'alive:' .. i end
local function connKey(i) return P .. 'conn:' .. i end
local function peersKey(i) return P .. 'peers:' .. i end

local function num(v) return tonumber(v) or 0 end
local function counter(role) if role == 'broadcaster' then return 'broadcasters' end return 'players' end
local function parsePeer(v) return string.match(v, '^([^\\n]*)\\n([^\\n]*)\\n(.*)$') end
local function parseRef(v) return string.match(v, '^([^\\n]*)\\n([^\\n]*)\\n([^\\n]*)\\n(.*)$') end

local function addUsage(a, field, amount)
  if amount ~= 0 then redis.call('HINCRBYFLOAT', accountKey(a), field, amount) end
end

-- An account with nothing left to show is forgotten; refusal counters are
-- its stats, so they keep it.
local function forgetIfIdle(a)
  if redis.call('SCARD', channelsKey(a)) > 0 then return end
  local u = redis.call('HMGET', accountKey(a), 'connections',
    'refused:connect', 'refused:publish', 'refused:subscribe', 'refused:message')
  if num(u[1]) + num(u[2]) + num(u[3]) + num(u[4]) + num(u[5]) > 0 then return end
  redis.call('DEL', accountKey(a))
  redis.call('SREM', ACCOUNTS, a)
end

local function addConnections(a, n)
  if n == 0 then return end
  local left = redis.call('HINCRBY', accountKey(a), 'connections', n)
  if left < 0 then redis.call('HSET', accountKey(a), 'connections', 0) end
  if left > 0 then redis.call('SADD', ACCOUNTS, a) end
  forgetIfIdle(a)
end

-- Registers p for socket s; a limit of 0 is no limit. Returns the refusal
-- name, or nil and whether p is new.
local function addPeer(inst, a, c, p, s, role, b, ab, v, limit, maxChannels, maxPeers)
  local ck = channelKey(a, c)
  local existing = redis.call('HGET', ck, p)
  local oldRole
  if existing then
    local r, es = parsePeer(existing)
    if es ~= s then return 'uniqueness' end
    oldRole = r
  end
  local before = redis.call('HLEN', ck)
  if maxChannels > 0 and before == 0 and redis.call('SCARD', channelsKey(a)) >= maxChannels then return 'channels' end
  if maxPeers > 0 and not existing then
    local u = redis.call('HMGET', accountKey(a), 'players', 'broadcasters')
    if num(u[1]) + num(u[2]) >= maxPeers then return 'peers' end
  end
  local after = before
  if not existing then after = before + 1 end
  local sk = streamKey(a, c)
  local old = redis.call('HMGET', sk, 'b', 'ab', 'p')
  local oldB, oldAB = num(old[1]), num(old[2])
  local newB, newAB = 0, 0
  if role == 'broadcaster' then newB, newAB = num(b), num(ab)
  elseif old[3] and old[3] ~= p then newB, newAB = oldB, oldAB end
  local added = after * (newB + newAB) - before * (oldB + oldAB)
  if limit > 0 and added > 0 then
    local u = redis.call('HMGET', accountKey(a), 'bitrate', 'audioBitrate')
    if num(u[1]) + num(u[2]) + added > limit then return 'totalBitrate' end
  end
  local ak = accountKey(a)
  redis.call('SADD', ACCOUNTS, a)
  redis.call('SADD', channelsKey(a), c)
  if oldRole then redis.call('HINCRBY', ak, counter(oldRole), -1) end
  redis.call('HINCRBY', ak, counter(role), 1)
  redis.call('HSET', ck, p, role .. '\\n' .. s .. '\\n' .. inst)
  redis.call('HSET', peersKey(inst), a .. c .. p, a .. '\\n' .. c .. '\\n' .. p .. '\\n' .. s)
  addUsage(a, 'bitrate', after * newB - before * oldB)
  addUsage(a, 'audioBitrate', after * newAB - before * oldAB)
  if role == 'broadcaster' then redis.call('HSET', sk, 'b', b, 'ab', ab, 'p', p, 'v', v)
  elseif old[3] == p then redis.call('DEL', sk) end
  return nil, not existing
end

-- Removes p if socket s (and instance inst, when given) registered it.
-- Returns the remaining peers as a flat hash, or false.
local function removePeer(a, c, p, s, inst)
  local ck = channelKey(a, c)
  local v = redis.call('HGET', ck, p)
  if not v then return false end
  local role, ps, pi = parsePeer(v)
  if ps ~= s or (inst and pi ~= inst) then return false end
  local before = redis.call('HLEN', ck)
  redis.call('HDEL', ck, p)
  redis.call('HDEL', peersKey(pi), a .. c .. p)
  redis.call('HINCRBY', accountKey(a), counter(role), -1)
  local sk = streamKey(a, c)
  local st = redis.call('HMGET', sk, 'b', 'ab', 'p')
  if st[3] then
    local after = before - 1
    if st[3] == p or after == 0 then
      redis.call('DEL', sk)
      after = 0
    end
    addUsage(a, 'bitrate', num(st[1]) * (after - before))
    addUsage(a, 'audioBitrate', num(st[2]) * (after - before))
  end
  if before == 1 then redis.call('SREM', channelsKey(a), c) end
  forgetIfIdle(a)
  return redis.call('HGETALL', ck)
end

-- Adds what the channel's remaining peers must hear, {c, p, {socket, ...}},
-- leaving out the sockets of instance skip (they are gone too).
local function addNote(notes, c, p, remaining, skip)
  local sockets = {}
  for k = 2, #remaining, 2 do
    local _, s, i = parsePeer(remaining[k])
    if i ~= skip then sockets[#sockets + 1] = s end
  end
  if #sockets > 0 then notes[#notes + 1] = {c, p, sockets} end
end
`;

function script(body: string): Script {
  const source = `${library}\n${body}`;
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

/** ARGV: prefix, instance, a, connections limit, totalBitrate limit. */
const connectScript = script(`
local inst, a = ARGV[2], ARGV[3]
if redis.call('SISMEMBER', INSTANCES, inst) == 0 then return 'unregistered' end
local limit, total = num(ARGV[4]), num(ARGV[5])
local u = redis.call('HMGET', accountKey(a), 'connections', 'bitrate', 'audioBitrate')
if limit > 0 and num(u[1]) >= limit then return 'connections' end
if total > 0 and num(u[2]) + num(u[3]) >= total then return 'totalBitrate' end
redis.call('HINCRBY', connKey(inst), a, 1)
addConnections(a, 1)
return 'ok'
`);

/** ARGV: prefix, instance, a. Only connections this instance counted are released. */
const disconnectScript = script(`
local inst, a = ARGV[2], ARGV[3]
local mine = num(redis.call('HGET', connKey(inst), a))
if mine <= 0 then return 0 end
if mine == 1 then redis.call('HDEL', connKey(inst), a) else redis.call('HINCRBY', connKey(inst), a, -1) end
addConnections(a, -1)
return 1
`);

/**
 * ARGV: prefix, instance, a, c, p, s, role, totalBitrate limit, b, ab, v, max channels, max peers.
 * Returns {refusal} or {'ok', isNew, peers (broadcaster only), publisher p, publisher value}.
 */
const joinScript = script(`
local inst, a, c, p, s, role = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if redis.call('SISMEMBER', INSTANCES, inst) == 0 then return {'unregistered'} end
local refusal, isNew = addPeer(inst, a, c, p, s, role, ARGV[9], ARGV[10], ARGV[11], num(ARGV[8]), num(ARGV[12]), num(ARGV[13]))
if refusal then return {refusal} end
local ck = channelKey(a, c)
local peers = {}
if role == 'broadcaster' then peers = redis.call('HGETALL', ck) end
local publisher, value = false, false
if role == 'player' then
  publisher = redis.call('HGET', streamKey(a, c), 'p')
  if publisher then value = redis.call('HGET', ck, publisher) end
end
return {'ok', isNew and 1 or 0, peers, publisher, value}
`);

/** ARGV: prefix, a, c, p, s. Returns the remaining peers, or nil when s had not registered p. */
const leaveScript = script(`
return removePeer(ARGV[2], ARGV[3], ARGV[4], ARGV[5], nil)
`);

/** ARGV: prefix, a, action, issue... */
const refusalScript = script(`
local ak = accountKey(ARGV[2])
redis.call('HINCRBY', ak, 'refused:' .. ARGV[3], 1)
for k = 4, #ARGV do redis.call('HINCRBY', ak, 'issue:' .. ARGV[k], 1) end
redis.call('SADD', ACCOUNTS, ARGV[2])
return 1
`);

/** ARGV: prefix, instance, ttl ms. Returns 1 when the instance was still known, 0 when its state may be gone. */
const heartbeatScript = script(`
local inst = ARGV[2]
local known = redis.call('SISMEMBER', INSTANCES, inst)
redis.call('SADD', INSTANCES, inst)
redis.call('SREM', GONE, inst)
redis.call('SET', aliveKey(inst), '1', 'PX', ARGV[3])
return known
`);

/** ARGV: prefix, instance. Moves instances without a heartbeat to the gone set; returns the gone ones. */
const claimScript = script(`
for _, i in ipairs(redis.call('SMEMBERS', INSTANCES)) do
  if i ~= ARGV[2] and redis.call('EXISTS', aliveKey(i)) == 0 then
    redis.call('SREM', INSTANCES, i)
    redis.call('SADD', GONE, i)
  end
end
local gone = {}
for _, i in ipairs(redis.call('SMEMBERS', GONE)) do
  if i ~= ARGV[2] then gone[#gone + 1] = i end
end
return gone
`);

/**
 * ARGV: prefix, dead instance, batch size. Removes up to a batch of its
 * peers; once none is left, releases its connections and forgets it.
 * Returns {done, removed, notes}. Stops if the instance beats again.
 */
const sweepScript = script(`
local dead = ARGV[2]
if redis.call('EXISTS', aliveKey(dead)) == 1 then
  redis.call('SREM', GONE, dead)
  return {1, 0, {}}
end
local pk = peersKey(dead)
local entries = redis.call('HSCAN', pk, '0', 'COUNT', ARGV[3])[2]
local notes, removed = {}, 0
for k = 1, #entries, 2 do
  redis.call('HDEL', pk, entries[k])
  local a, c, p, s = parseRef(entries[k + 1])
  if a then
    local remaining = removePeer(a, c, p, s, dead)
    if remaining then
      removed = removed + 1
      addNote(notes, c, p, remaining, dead)
    end
  end
end
if redis.call('EXISTS', pk) == 1 then return {0, removed, notes} end
local conns = redis.call('HGETALL', connKey(dead))
for k = 1, #conns, 2 do addConnections(conns[k], -num(conns[k + 1])) end
redis.call('DEL', connKey(dead))
redis.call('SREM', GONE, dead)
return {1, removed, notes}
`);

/**
 * Makes the instance's state in Redis what the instance knows it holds.
 * ARGV: prefix, instance, n, (a, connections) * n, m, (a, c, p, s, role, b, ab, v) * m, 'retire' or ''.
 * Returns {notes for removed peers, refs of peers that could not be restored}.
 * With 'retire' the instance is forgotten afterwards.
 */
const syncScript = script(`
local inst = ARGV[2]
local at = 3
local want = {}
for _ = 1, num(ARGV[at]) do
  want[ARGV[at + 1]] = num(ARGV[at + 2])
  at = at + 2
end
at = at + 1
local ck = connKey(inst)
local have = redis.call('HGETALL', ck)
for k = 1, #have, 2 do
  local a, n = have[k], num(have[k + 1])
  local w = want[a] or 0
  want[a] = nil
  if w ~= n then
    if w > 0 then redis.call('HSET', ck, a, w) else redis.call('HDEL', ck, a) end
    addConnections(a, w - n)
  end
end
for a, w in pairs(want) do
  if w > 0 then
    redis.call('HSET', ck, a, w)
    addConnections(a, w)
  end
end

local peers, wanted = {}, {}
for _ = 1, num(ARGV[at]) do
  local e = {ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4], ARGV[at + 5], ARGV[at + 6], ARGV[at + 7], ARGV[at + 8]}
  peers[#peers + 1] = e
  wanted[e[1] .. e[2] .. e[3]] = e[4]
  at = at + 8
end
at = at + 1
-- A retiring instance's own sockets are going too; they need no close message.
local retire = ARGV[at] == 'retire'
local skip = ''
if retire then skip = inst end
local pk = peersKey(inst)
local current = redis.call('HGETALL', pk)
local notes = {}
for k = 1, #current, 2 do
  local a, c, p, s = parseRef(current[k + 1])
  if wanted[current[k]] ~= s then
    redis.call('HDEL', pk, current[k])
    if a then
      local remaining = removePeer(a, c, p, s, inst)
      if remaining then addNote(notes, c, p, remaining, skip) end
    end
  end
end
local dropped = {}
for _, e in ipairs(peers) do
  if addPeer(inst, e[1], e[2], e[3], e[4], e[5], e[6], e[7], e[8], 0, 0, 0) then dropped[#dropped + 1] = e[1] .. e[2] .. e[3] end
end
if retire then
  redis.call('SREM', INSTANCES, inst)
  redis.call('SREM', GONE, inst)
  redis.call('DEL', aliveKey(inst))
end
return {notes, dropped}
`);

/** ARGV: prefix. Every account: {a, usage hash, {{c, peers hash, stream JSON or nil}, ...}}. */
const snapshotScript = script(`
local out = {}
for _, a in ipairs(redis.call('SMEMBERS', ACCOUNTS)) do
  local channels = {}
  for _, c in ipairs(redis.call('SMEMBERS', channelsKey(a))) do
    channels[#channels + 1] = {c, redis.call('HGETALL', channelKey(a, c)), redis.call('HGET', streamKey(a, c), 'v')}
  end
  out[#out + 1] = {a, redis.call('HGETALL', accountKey(a)), channels}
end
return out
`);
