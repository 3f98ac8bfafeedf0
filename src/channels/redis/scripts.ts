// The Lua side of the Redis registry. Each script is one atomic step, so a
// limit is decided together with the update it allows, whichever instance
// asks. Each script comes with a typed argument builder and a reply decoder:
// the positional ARGV of a script is written in one place, next to its Lua.
import { createHash } from 'node:crypto';
import { RegistryUnavailableError, type AccountUsage, type JoinRefusal, type PeerGone, type RefusedAction } from '../registry';
import { bucketKeys as k, decodeName, KEYS_LUA } from './keys';

/**
 * The one command the registry needs from a Redis client: `key` is a key the
 * command touches, which routes it on a Redis Cluster (see cluster.ts).
 */
export interface RedisCommands {
  send(args: string[], key: string | undefined): Promise<unknown>;
}

/** Reads that may be answered from a client-side cache that Redis keeps current (connection.ts). */
export interface CachedReads {
  /** HGET. */
  hashField(key: string, field: string): Promise<string | undefined>;
}

/** A Redis that stops answering without closing the connection must not hold joins forever. */
const COMMAND_TIMEOUT_MS = 5000;
/** A script that meets a slot in migration waits for the move to finish: up to about 2 s in all. */
const MIGRATION_RETRIES = 12;
const MIGRATION_RETRY_MS = 30;

export interface Script<Input, Reply> {
  readonly source: string;
  readonly sha: string;
  /** ARGV; KEYS[1] is the base of the keys the script touches (keys.ts). */
  args(input: Input): string[];
  decode(reply: unknown): Reply;
  /**
   * The keys it touches, after the base, declared as KEYS[2...]. While a slot
   * moves between shards, Redis then runs the script only where all of them
   * are (or answers TRYAGAIN), never on half of them.
   */
  touches(input: Input): string[];
}

function defineScript<Input, Reply>(
  body: string,
  args: (input: Input) => string[],
  decode: (reply: unknown) => Reply,
  touches: (input: Input) => string[] = () => [],
): Script<Input, Reply> {
  const source = `${KEYS_LUA}\n${LIBRARY_LUA}\n${body}`;
  return { source, sha: createHash('sha1').update(source).digest('hex'), args, decode, touches };
}

export interface ScriptRunner {
  /** One command on `key`, failing with RegistryUnavailableError if Redis does not answer in time. */
  send(args: string[], key: string): Promise<unknown>;
  /** Any Redis request, failing as `send` does. */
  guard<T>(request: Promise<T>): Promise<T>;
  /** Runs a script on the keys under `base` (a bucket, or the liveness keys). */
  run<Input, Reply>(script: Script<Input, Reply>, base: string, input: Input): Promise<Reply>;
}

// Replies that mean Redis cannot serve now (loading, failing over, a cluster
// without a master for the slot), as opposed to an error in a command.
const OUTAGE_REPLY = /^(LOADING|READONLY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|MOVED|ASK|BUSY)\b/;

/**
 * Whether an error from the client is an outage: anything but an error
 * reply (the connection closed, the client offline, a timeout), or one of
 * the replies above. Other error replies are bugs and stay what they are.
 */
function isOutage(err: unknown): boolean {
  if (err instanceof RegistryUnavailableError) return false;
  if (!(err instanceof Error)) return false;
  return isErrorReply(err) ? OUTAGE_REPLY.test(err.message) : true;
}

/** node-redis's ErrorReply (or a subclass), told by name: the registry does not load the client library itself. */
export function isErrorReply(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  for (let proto: unknown = Object.getPrototypeOf(err); proto && proto !== Error.prototype; proto = Object.getPrototypeOf(proto))
    if ((proto as { constructor: { name: string } }).constructor.name === 'ErrorReply') return true;
  return false;
}

export function createScriptRunner(client: RedisCommands): ScriptRunner {
  const send = (args: string[], key: string) => guard(client.send(args, key));
  function guard<T>(request: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      const error = new RegistryUnavailableError(`Redis did not answer within ${COMMAND_TIMEOUT_MS} ms`);
      timer = setTimeout(() => reject(error), COMMAND_TIMEOUT_MS);
    });
    return Promise.race([request, late])
      .catch((err: unknown) => {
        throw isOutage(err) ? new RegistryUnavailableError(`Redis unavailable: ${(err as Error).message}`, { cause: err }) : err;
      })
      .finally(() => clearTimeout(timer));
  }
  async function run<Input, Reply>(script: Script<Input, Reply>, base: string, input: Input): Promise<Reply> {
    const keys = [base, ...script.touches(input).map((key) => base + key)];
    const argv = [String(keys.length), ...keys, ...script.args(input)];
    for (let attempt = 1; ; attempt++) {
      try {
        return script.decode(await send(['EVALSHA', script.sha, ...argv], base));
      } catch (err) {
        // Scripts are forgotten when Redis restarts (or a replica takes over).
        if (err instanceof Error && err.message.startsWith('NOSCRIPT'))
          return script.decode(await send(['EVAL', script.source, ...argv], base));
        // A slot being moved to another shard: its keys are on both sides for a moment.
        const moving = err instanceof RegistryUnavailableError && err.cause instanceof Error && err.cause.message.startsWith('TRYAGAIN');
        if (!moving || attempt >= MIGRATION_RETRIES) throw err;
        await new Promise((resolve) => setTimeout(resolve, MIGRATION_RETRY_MS * attempt));
      }
    }
  }
  return { send, guard, run };
}

// Reading replies: Redis answers with nested arrays of strings and integers.
export const asArray = (reply: unknown): unknown[] => (Array.isArray(reply) ? reply : []);
export const asString = (reply: unknown): string | undefined => (typeof reply === 'string' ? reply : undefined);
const asNumber = (value: unknown) => (value === undefined || value === null ? 0 : Number(value) || 0);

/** HGETALL's flat [field, value, field, value...] as pairs. */
export function hashEntries(flat: unknown): [string, string][] {
  const items = asArray(flat);
  const entries: [string, string][] = [];
  for (let i = 0; i + 1 < items.length; i += 2) entries.push([String(items[i]), String(items[i + 1])]);
  return entries;
}

function usageFromHash(flat: unknown): AccountUsage {
  const fields = new Map(hashEntries(flat));
  const issues = Object.fromEntries(
    [...fields].filter(([field]) => field.startsWith('issue:')).map(([field, value]) => [field.slice('issue:'.length), asNumber(value)]),
  );
  return {
    connections: asNumber(fields.get('connections')),
    bitrate: asNumber(fields.get('bitrate')),
    audioBitrate: asNumber(fields.get('audioBitrate')),
    players: asNumber(fields.get('players')),
    broadcasters: asNumber(fields.get('broadcasters')),
    issues,
    refused: {
      connect: asNumber(fields.get('refused:connect')),
      publish: asNumber(fields.get('refused:publish')),
      subscribe: asNumber(fields.get('refused:subscribe')),
      message: asNumber(fields.get('refused:message')),
    },
  };
}

/** Decodes the scripts' departure notes: {{c, p, {s, ...}}, ...}. */
function departures(reply: unknown): PeerGone[] {
  return asArray(reply).map((note) => {
    const [channel, peerID, sockets] = asArray(note);
    return {
      channel: decodeName(String(channel)),
      peerID: decodeName(String(peerID)),
      socketIds: asArray(sockets).map((s) => decodeName(String(s))),
    };
  });
}

const JOIN_REFUSALS: readonly JoinRefusal[] = ['uniqueness', 'totalBitrate', 'channels', 'peers'];
const isJoinRefusal = (reply: unknown): reply is JoinRefusal => JOIN_REFUSALS.includes(reply as JoinRefusal);

function unexpected(reply: unknown): never {
  throw new Error(`unexpected reply from Redis: ${String(reply)}`);
}

/** A peer's channel entry as stored: the encoded peer ID and `<role>\n<s>\n<instance>`. */
export type ChannelEntry = [encodedPeerID: string, entry: string];

/**
 * A registration this instance made, as sent to Redis (names encoded). The
 * stream fields are empty for a player.
 */
export interface Registration {
  account: string;
  channel: string;
  peerID: string;
  socketId: string;
  role: 'broadcaster' | 'player';
  bitrate: string;
  audioBitrate: string;
  /** The published stream as JSON, for the REST API. */
  stream: string;
}

/** The key of a registration in this instance's record (`peers:<instance>`). */
export const registrationRef = (r: Pick<Registration, 'account' | 'channel' | 'peerID'>) => r.account + r.channel + r.peerID;

// Shared Lua, after the key layout (keys.ts).
const LIBRARY_LUA = `
local function asNumber(v) return tonumber(v) or 0 end
local function roleCounter(role) if role == 'broadcaster' then return 'broadcasters' end return 'players' end
-- A channel entry: role, socket, instance.
local function parsePeerEntry(v) return string.match(v, '^([^\\n]*)\\n([^\\n]*)\\n(.*)$') end
-- An instance's registration: account, channel, peer, socket.
local function parseRegistration(v) return string.match(v, '^([^\\n]*)\\n([^\\n]*)\\n([^\\n]*)\\n(.*)$') end

local function addUsage(a, field, amount)
  if amount ~= 0 then redis.call('HINCRBYFLOAT', accountKey(a), field, amount) end
end

-- An account with nothing left to show is forgotten; refusal counters are
-- its stats, so they keep it.
local function forgetIfIdle(a)
  if redis.call('SCARD', channelsKey(a)) > 0 then return end
  local u = redis.call('HMGET', accountKey(a), 'connections',
    'refused:connect', 'refused:publish', 'refused:subscribe', 'refused:message')
  if asNumber(u[1]) + asNumber(u[2]) + asNumber(u[3]) + asNumber(u[4]) + asNumber(u[5]) > 0 then return end
  redis.call('DEL', accountKey(a))
  redis.call('SREM', ACCOUNTS, a)
end

local function addConnections(a, n)
  if n == 0 then return end
  local left = redis.call('HINCRBY', accountKey(a), 'connections', n)
  if left < 0 then redis.call('HSET', accountKey(a), 'connections', 0) end
  -- An account with connections is listed and has something to show.
  if left > 0 then
    redis.call('SADD', ACCOUNTS, a)
    return
  end
  forgetIfIdle(a)
end

-- A flat HGETALL reply with field p set to v (in place, or added at the end,
-- as Redis keeps a small hash).
local function withEntry(flat, p, v)
  local out = {}
  local found = false
  for k = 1, #flat, 2 do
    out[k], out[k + 1] = flat[k], flat[k + 1]
    if flat[k] == p then out[k + 1], found = v, true end
  end
  if not found then out[#out + 1], out[#out + 2] = p, v end
  return out
end

-- Registers p for socket s; a limit of 0 is no limit. Returns the refusal
-- name, or nil, whether p is new, and what the join answers: with wantPeers
-- the channel's peers afterwards (a flat hash), else its publisher's name
-- and entry when the publisher is someone else. Each key is read once.
local function addPeer(inst, a, c, p, s, role, bitrate, audioBitrate, stream, limit, maxChannels, maxPeers, wantPeers)
  local ck = channelKey(a, c)
  local sk = streamKey(a, c)
  local old = redis.call('HMGET', sk, 'bitrate', 'audioBitrate', 'publisher')
  local oldBitrate, oldAudio, oldPublisher = asNumber(old[1]), asNumber(old[2]), old[3]
  local existing, before, all, publisherEntry
  if wantPeers then
    all = redis.call('HGETALL', ck)
    before = #all / 2
    for k = 1, #all, 2 do if all[k] == p then existing = all[k + 1] end end
  else
    if oldPublisher and oldPublisher ~= p then
      local e = redis.call('HMGET', ck, p, oldPublisher)
      existing, publisherEntry = e[1], e[2]
    else
      existing = redis.call('HGET', ck, p)
    end
    before = redis.call('HLEN', ck)
  end
  local oldRole
  if existing then
    local r, es = parsePeerEntry(existing)
    if es ~= s then return 'uniqueness' end
    oldRole = r
  end
  local ak = accountKey(a)
  if maxChannels > 0 and before == 0 and redis.call('SCARD', channelsKey(a)) >= maxChannels then return 'channels' end
  if maxPeers > 0 and not existing then
    local u = redis.call('HMGET', ak, 'players', 'broadcasters')
    if asNumber(u[1]) + asNumber(u[2]) >= maxPeers then return 'peers' end
  end
  local after = before
  if not existing then after = before + 1 end
  local newBitrate, newAudio = 0, 0
  if role == 'broadcaster' then newBitrate, newAudio = asNumber(bitrate), asNumber(audioBitrate)
  elseif oldPublisher and oldPublisher ~= p then newBitrate, newAudio = oldBitrate, oldAudio end
  local added = after * (newBitrate + newAudio) - before * (oldBitrate + oldAudio)
  if limit > 0 and added > 0 then
    local u = redis.call('HMGET', ak, 'bitrate', 'audioBitrate')
    if asNumber(u[1]) + asNumber(u[2]) + added > limit then return 'totalBitrate' end
  end
  -- A channel with peers is listed already, and so is its account.
  if before == 0 then
    redis.call('SADD', ACCOUNTS, a)
    redis.call('SADD', channelsKey(a), c)
  end
  if oldRole then redis.call('HINCRBY', ak, roleCounter(oldRole), -1) end
  redis.call('HINCRBY', ak, roleCounter(role), 1)
  local entry = role .. '\\n' .. s .. '\\n' .. inst
  redis.call('HSET', ck, p, entry)
  redis.call('HSET', peersKey(inst), a .. c .. p, a .. '\\n' .. c .. '\\n' .. p .. '\\n' .. s)
  addUsage(a, 'bitrate', after * newBitrate - before * oldBitrate)
  addUsage(a, 'audioBitrate', after * newAudio - before * oldAudio)
  if role == 'broadcaster' then redis.call('HSET', sk, 'bitrate', bitrate, 'audioBitrate', audioBitrate, 'publisher', p, 'stream', stream)
  elseif oldPublisher == p then redis.call('DEL', sk) end
  if wantPeers then return nil, not existing, withEntry(all, p, entry) end
  if publisherEntry then return nil, not existing, nil, oldPublisher, publisherEntry end
  return nil, not existing
end

-- Removes p if socket s (and instance inst, when given) registered it.
-- Returns the remaining peers as a flat hash, or false.
local function removePeer(a, c, p, s, inst)
  local ck = channelKey(a, c)
  -- One read gives p's entry, the count and what remains.
  local all = redis.call('HGETALL', ck)
  local v
  local remaining = {}
  for k = 1, #all, 2 do
    if all[k] == p then v = all[k + 1]
    else remaining[#remaining + 1], remaining[#remaining + 2] = all[k], all[k + 1] end
  end
  if not v then return false end
  local role, ps, pi = parsePeerEntry(v)
  if ps ~= s or (inst and pi ~= inst) then return false end
  local before = #all / 2
  redis.call('HDEL', ck, p)
  redis.call('HDEL', peersKey(pi), a .. c .. p)
  redis.call('HINCRBY', accountKey(a), roleCounter(role), -1)
  local sk = streamKey(a, c)
  local st = redis.call('HMGET', sk, 'bitrate', 'audioBitrate', 'publisher')
  if st[3] then
    local after = before - 1
    if st[3] == p or after == 0 then
      redis.call('DEL', sk)
      after = 0
    end
    addUsage(a, 'bitrate', asNumber(st[1]) * (after - before))
    addUsage(a, 'audioBitrate', asNumber(st[2]) * (after - before))
  end
  -- While the channel has peers it stays listed, and so does its account.
  if before == 1 then
    redis.call('SREM', channelsKey(a), c)
    forgetIfIdle(a)
  end
  return remaining
end

-- Adds what the channel's remaining peers must hear, {c, p, {socket, ...}},
-- leaving out the sockets of instance skip (they are gone too).
local function addDeparture(notes, c, p, remaining, skip)
  local sockets = {}
  for k = 2, #remaining, 2 do
    local _, s, i = parsePeerEntry(remaining[k])
    if i ~= skip then sockets[#sockets + 1] = s end
  end
  if #sockets > 0 then notes[#notes + 1] = {c, p, sockets} end
end
`;

export type ConnectReply = 'ok' | 'connections' | 'totalBitrate' | 'unregistered';

/** Counts one more connection of the account, unless its plan refuses it. */
export const connectScript = defineScript(
  `
local inst, a, maxConnections, maxTotalBitrate = ARGV[1], ARGV[2], asNumber(ARGV[3]), asNumber(ARGV[4])
if redis.call('SISMEMBER', SYNCED, inst) == 0 then return 'unregistered' end
local u = redis.call('HMGET', accountKey(a), 'connections', 'bitrate', 'audioBitrate')
if maxConnections > 0 and asNumber(u[1]) >= maxConnections then return 'connections' end
if maxTotalBitrate > 0 and asNumber(u[2]) + asNumber(u[3]) >= maxTotalBitrate then return 'totalBitrate' end
redis.call('HINCRBY', connKey(inst), a, 1)
addConnections(a, 1)
return 'ok'
`,
  (input: { instance: string; account: string; maxConnections: number; maxTotalBitrate: number }) => [
    input.instance,
    input.account,
    String(input.maxConnections),
    String(input.maxTotalBitrate),
  ],
  (reply): ConnectReply =>
    reply === 'ok' || reply === 'connections' || reply === 'totalBitrate' || reply === 'unregistered' ? reply : unexpected(reply),
  ({ instance, account }) => [k.synced, k.accounts, k.account(account), k.channels(account), k.connections(instance)],
);

/** Releases one connection this instance counted; true when there was one. */
export const disconnectScript = defineScript(
  `
local inst, a = ARGV[1], ARGV[2]
local mine = asNumber(redis.call('HGET', connKey(inst), a))
if mine <= 0 then return 0 end
if mine == 1 then redis.call('HDEL', connKey(inst), a) else redis.call('HINCRBY', connKey(inst), a, -1) end
addConnections(a, -1)
return 1
`,
  (input: { instance: string; account: string }) => [input.instance, input.account],
  (reply) => reply === 1,
  ({ instance, account }) => [k.accounts, k.account(account), k.channels(account), k.connections(instance)],
);

export type JoinReply =
  | { outcome: 'unregistered' }
  | { outcome: 'refused'; refusal: JoinRefusal }
  | {
      outcome: 'ok';
      isNew: boolean;
      /** Everyone in the channel (for a broadcaster; empty for a player). */
      peers: ChannelEntry[];
      /** The channel's broadcaster (for a player joining a published channel). */
      publisher?: ChannelEntry | undefined;
    };

/** Registers a peer in a channel, unless uniqueness or a limit refuses it. */
export const joinScript = defineScript(
  `
local inst, a, c, p, s, role = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local maxTotalBitrate, bitrate, audioBitrate, stream = asNumber(ARGV[7]), ARGV[8], ARGV[9], ARGV[10]
local maxChannels, maxPeers = asNumber(ARGV[11]), asNumber(ARGV[12])
if redis.call('SISMEMBER', SYNCED, inst) == 0 then return {'unregistered'} end
local refusal, isNew, peers, publisher, entry = addPeer(inst, a, c, p, s, role, bitrate, audioBitrate, stream, maxTotalBitrate, maxChannels, maxPeers, role == 'broadcaster')
if refusal then return {refusal} end
peers = peers or {}
publisher = publisher or false
entry = entry or false
return {'ok', isNew and 1 or 0, peers, publisher, entry}
`,
  (input: { instance: string; registration: Registration; maxTotalBitrate: number; maxChannels: number; maxPeers: number }) => {
    const r = input.registration;
    return [
      ...[input.instance, r.account, r.channel, r.peerID, r.socketId, r.role],
      ...[String(input.maxTotalBitrate), r.bitrate, r.audioBitrate, r.stream],
      ...[String(input.maxChannels), String(input.maxPeers)],
    ];
  },
  (reply): JoinReply => {
    const [outcome, isNew, peers, publisher, entry] = asArray(reply);
    if (outcome === 'unregistered') return { outcome };
    if (isJoinRefusal(outcome)) return { outcome: 'refused', refusal: outcome };
    if (outcome !== 'ok') return unexpected(outcome);
    const publisherEntry: ChannelEntry | undefined =
      typeof publisher === 'string' && typeof entry === 'string' ? [publisher, entry] : undefined;
    return { outcome, isNew: isNew === 1, peers: hashEntries(peers), publisher: publisherEntry };
  },
  ({ instance, registration: { account, channel } }) => [
    ...[k.synced, k.accounts, k.account(account), k.channels(account)],
    ...[k.channel(account, channel), k.stream(account, channel), k.registrations(instance)],
  ],
);

type LeaveInput = Pick<Registration, 'account' | 'channel' | 'peerID' | 'socketId'> & { instance: string };

/** Removes a registration made by a socket; the channel's remaining peers, or null when it had none. */
export const leaveScript = defineScript(
  `
return removePeer(ARGV[1], ARGV[2], ARGV[3], ARGV[4], nil)
`,
  (input: LeaveInput) => [input.account, input.channel, input.peerID, input.socketId],
  (reply): ChannelEntry[] | null => (reply == null ? null : hashEntries(reply)),
  // The registration is this instance's (its socket left), so its record is the one touched.
  ({ instance, account, channel }) => [
    ...[k.accounts, k.account(account), k.channels(account)],
    ...[k.channel(account, channel), k.stream(account, channel), k.registrations(instance)],
  ],
);

export const refusalScript = defineScript(
  `
local a, action = ARGV[1], ARGV[2]
local ak = accountKey(a)
redis.call('HINCRBY', ak, 'refused:' .. action, 1)
for k = 3, #ARGV do redis.call('HINCRBY', ak, 'issue:' .. ARGV[k], 1) end
redis.call('SADD', ACCOUNTS, a)
return 1
`,
  (input: { account: string; action: RefusedAction; issues: readonly string[] }) => [input.account, input.action, ...input.issues],
  () => undefined,
  ({ account }) => [k.accounts, k.account(account)],
);

/** Renews the instance's heartbeat; false when Redis did not know it (its state may be gone). */
export const heartbeatScript = defineScript(
  `
local inst, aliveMs = ARGV[1], ARGV[2]
local known = redis.call('SISMEMBER', INSTANCES, inst)
redis.call('SADD', INSTANCES, inst)
redis.call('SREM', GONE, inst)
redis.call('SET', aliveKey(inst), '1', 'PX', aliveMs)
return known
`,
  (input: { instance: string; aliveMs: number }) => [input.instance, String(input.aliveMs)],
  (reply) => reply === 1,
);

/** Forgets a dead instance once every bucket is swept. */
export const forgetScript = defineScript(
  `
redis.call('SREM', GONE, ARGV[1])
return 1
`,
  (input: { dead: string }) => [input.dead],
  () => undefined,
);

/** Forgets a leaving instance: it has removed its own state from every bucket. */
export const retireScript = defineScript(
  `
local inst = ARGV[1]
redis.call('SREM', INSTANCES, inst)
redis.call('SREM', GONE, inst)
redis.call('DEL', aliveKey(inst))
return 1
`,
  (input: { instance: string }) => [input.instance],
  () => undefined,
);

/** Moves instances without a heartbeat to the gone set; the gone ones, other than the caller. */
export const claimScript = defineScript(
  `
local me = ARGV[1]
for _, i in ipairs(redis.call('SMEMBERS', INSTANCES)) do
  if i ~= me and redis.call('EXISTS', aliveKey(i)) == 0 then
    redis.call('SREM', INSTANCES, i)
    redis.call('SADD', GONE, i)
  end
end
local gone = {}
for _, i in ipairs(redis.call('SMEMBERS', GONE)) do
  if i ~= me then gone[#gone + 1] = i end
end
return gone
`,
  (input: { instance: string }) => [input.instance],
  (reply) => asArray(reply).map(String),
);

/**
 * Removes up to a batch of a dead instance's peers in one bucket; once none
 * is left there, releases its connections there and forgets it there.
 */
export const sweepScript = defineScript(
  `
local dead, batch = ARGV[1], ARGV[2]
local pk = peersKey(dead)
local entries = redis.call('HSCAN', pk, '0', 'COUNT', batch)[2]
local notes, removed = {}, 0
for k = 1, #entries, 2 do
  redis.call('HDEL', pk, entries[k])
  local a, c, p, s = parseRegistration(entries[k + 1])
  if a then
    local remaining = removePeer(a, c, p, s, dead)
    if remaining then
      removed = removed + 1
      addDeparture(notes, c, p, remaining, dead)
    end
  end
end
if redis.call('EXISTS', pk) == 1 then return {0, removed, notes} end
local conns = redis.call('HGETALL', connKey(dead))
for k = 1, #conns, 2 do addConnections(conns[k], -asNumber(conns[k + 1])) end
redis.call('DEL', connKey(dead))
redis.call('SREM', SYNCED, dead)
return {1, removed, notes}
`,
  (input: { dead: string; batch: number }) => [input.dead, String(input.batch)],
  (reply) => {
    const [done, removed, notes] = asArray(reply);
    return { done: done === 1, removed: asNumber(removed), gone: departures(notes) };
  },
);

export interface SyncInput {
  instance: string;
  /** Connections this instance holds, by encoded account. */
  connections: ReadonlyMap<string, number>;
  registrations: Iterable<Registration>;
  /** Forget the instance afterwards (it is leaving). */
  retire: boolean;
}

/**
 * Makes the instance's state in one bucket what the instance knows it holds.
 * Returns the peers removed (their channels must hear them leave) and the
 * refs of registrations that could not be restored (someone took the name).
 */
export const syncScript = defineScript(
  `
local inst = ARGV[1]
local at = 2
local want = {}
for _ = 1, asNumber(ARGV[at]) do
  want[ARGV[at + 1]] = asNumber(ARGV[at + 2])
  at = at + 2
end
at = at + 1
local ck = connKey(inst)
local have = redis.call('HGETALL', ck)
for k = 1, #have, 2 do
  local a, n = have[k], asNumber(have[k + 1])
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

-- Registrations: account, channel, peer, socket, role, bitrate, audioBitrate, stream.
local registrations, wanted = {}, {}
for _ = 1, asNumber(ARGV[at]) do
  local r = {ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4], ARGV[at + 5], ARGV[at + 6], ARGV[at + 7], ARGV[at + 8]}
  registrations[#registrations + 1] = r
  wanted[r[1] .. r[2] .. r[3]] = r[4]
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
  local a, c, p, s = parseRegistration(current[k + 1])
  if wanted[current[k]] ~= s then
    redis.call('HDEL', pk, current[k])
    if a then
      local remaining = removePeer(a, c, p, s, inst)
      if remaining then addDeparture(notes, c, p, remaining, skip) end
    end
  end
end
local dropped = {}
for _, r in ipairs(registrations) do
  if addPeer(inst, r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], 0, 0, 0) then dropped[#dropped + 1] = r[1] .. r[2] .. r[3] end
end
if retire then redis.call('SREM', SYNCED, inst) else redis.call('SADD', SYNCED, inst) end
return {notes, dropped}
`,
  (input: SyncInput) => {
    // A retiring instance claims nothing: everything it registered is removed.
    const connections = input.retire ? new Map<string, number>() : input.connections;
    const registrations = input.retire ? [] : [...input.registrations];
    const args = [input.instance, String(connections.size)];
    for (const [account, count] of connections) args.push(account, String(count));
    args.push(String(registrations.length));
    for (const r of registrations) args.push(r.account, r.channel, r.peerID, r.socketId, r.role, r.bitrate, r.audioBitrate, r.stream);
    args.push(input.retire ? 'retire' : '');
    return args;
  },
  (reply) => {
    const [notes, dropped] = asArray(reply);
    return { gone: departures(notes), dropped: asArray(dropped).map(String) };
  },
);

export interface AccountSnapshot {
  account: string;
  usage: AccountUsage;
  channels: { channel: string; peers: ChannelEntry[]; stream: string | undefined }[];
}

/** Every account of a bucket with its usage and channels (for the REST API). */
export const snapshotScript = defineScript(
  `
local out = {}
for _, a in ipairs(redis.call('SMEMBERS', ACCOUNTS)) do
  local channels = {}
  for _, c in ipairs(redis.call('SMEMBERS', channelsKey(a))) do
    channels[#channels + 1] = {c, redis.call('HGETALL', channelKey(a, c)), redis.call('HGET', streamKey(a, c), 'stream')}
  end
  out[#out + 1] = {a, redis.call('HGETALL', accountKey(a)), channels}
end
return out
`,
  () => [],
  (reply): AccountSnapshot[] =>
    asArray(reply).map((entry) => {
      const [account, usage, channels] = asArray(entry);
      return {
        account: decodeName(String(account)),
        usage: usageFromHash(usage),
        channels: asArray(channels).map((item) => {
          const [channel, peers, stream] = asArray(item);
          return { channel: decodeName(String(channel)), peers: hashEntries(peers), stream: asString(stream) };
        }),
      };
    }),
);
