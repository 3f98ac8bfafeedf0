// The Lua side of the Redis registry. Each script is one atomic step, so a
// limit is decided together with the update it allows, whichever instance
// asks. Each script comes with a typed argument builder and a reply decoder:
// the positional ARGV of a script is written in one place, next to its Lua.
import { createHash } from 'node:crypto';
import {
  RegistryUnavailableError,
  type AccountUsage,
  type UsageSnapshot,
  type JoinRefusal,
  type PeerGone,
  type RefusedAction,
} from '../registry';
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
/** Calls of a script whose keys depend on what it finds, each declaring the keys the one before found (LIBRARY_LUA, undeclared). */
const UNDECLARED_ROUNDS = 4;

export interface Script<Input, Reply> {
  /** Its function's name in the library, after the library's own name. */
  readonly name: string;
  /** The Lua of this script alone, run after the shared helpers. */
  readonly body: string;
  /** The Lua helpers it shares with the other scripts of its library; they define `begin(KEYS)`. */
  readonly prelude: string;
  /** The whole script for EVAL, where Redis has no functions (Redis 6). */
  readonly source: string;
  readonly sha: string;
  /** ARGV; KEYS[1] is the base of the keys the script touches (keys.ts). */
  args(input: Input): string[];
  decode(reply: unknown): Reply;
  /**
   * The keys it touches, after the base, declared as KEYS[2...] on a Redis
   * Cluster. While a slot moves between shards, Redis then runs the script
   * only where all of them are (or answers TRYAGAIN), never on half of them.
   * Keys it finds in Redis (a dead instance's channels) the script asks for
   * before any write (LIBRARY_LUA, undeclared): the runner calls it again
   * with them declared too.
   */
  touches(input: Input): string[];
}

/**
 * Defines the scripts of one library: each runs after `prelude`, the Lua
 * helpers they share, which define `begin(KEYS)`, called first on every call
 * (a function of a library cannot read KEYS where its helpers are defined).
 */
export function scriptDefiner(prelude: string) {
  return function defineScript<Input, Reply>(
    name: string,
    body: string,
    args: (input: Input) => string[],
    decode: (reply: unknown) => Reply,
    touches: (input: Input) => string[] = () => [],
  ): Script<Input, Reply> {
    const source = `${prelude}\nbegin(KEYS)\n${body}`;
    return { name, body, prelude, source, sha: createHash('sha1').update(source).digest('hex'), args, decode, touches };
  };
}

/**
 * The scripts as one Redis Functions library (Redis 7): FUNCTION LOAD defines
 * the shared helpers once, where EVAL defines them again on every call. Its
 * name, `<prefix>_<hash of its code>`, carries a hash of its code, so
 * instances of different versions never replace each other's functions.
 */
export interface ScriptLibrary {
  readonly name: string;
  readonly source: string;
  /** The FCALL name of a script of the library; undefined for another script. */
  functionName(script: Script<never, unknown>): string | undefined;
}

export function defineLibrary(prefix: string, scripts: readonly Script<never, unknown>[]): ScriptLibrary {
  const prelude = scripts[0]?.prelude ?? '';
  if (scripts.some((script) => script.prelude !== prelude)) throw new Error(`the scripts of library ${prefix} differ in their helpers`);
  const functions = scripts.map(
    (script) => `redis.register_function('%LIB%_${script.name}', function(KEYS, ARGV)\nbegin(KEYS)\n${script.body}\nend)`,
  );
  const code = `${prelude}\n${functions.join('\n')}`;
  const name = `${prefix}_${createHash('sha1').update(code).digest('hex').slice(0, 16)}`;
  const members = new Set<Script<never, unknown>>(scripts);
  return {
    name,
    source: `#!lua name=${name}\n${code.replaceAll('%LIB%', name)}`,
    functionName: (script) => (members.has(script) ? `${name}_${script.name}` : undefined),
  };
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

const errorText = (err: unknown) => (err instanceof Error ? err.message : '');
/** FCALL of a function Redis does not have (restarted without persistence, FUNCTION FLUSH, a new version). */
const isMissingFunction = (err: unknown) => isErrorReply(err) && /^ERR Function not found/i.test(errorText(err));
/** A Redis without functions (6), or one that refuses them to this user. */
const cannotUseFunctions = (err: unknown) => isErrorReply(err) && /^(ERR unknown command|NOPERM)/i.test(errorText(err));

/**
 * Runs scripts as the functions of `library` where Redis has them (7 and
 * newer), loading the library on the first call that misses it; else, or for
 * a script outside the library, with EVALSHA (EVAL when Redis forgot it).
 */
export interface ScriptRunnerOptions {
  library?: ScriptLibrary;
  /**
   * Declare the keys a script touches (Script.touches): needed on a Redis
   * Cluster, where a slot may be moving; on one Redis they would only cost
   * Redis their conversion on every call.
   */
  declareKeys?: boolean;
}

export function createScriptRunner(client: RedisCommands, { library, declareKeys = true }: ScriptRunnerOptions = {}): ScriptRunner {
  const send = (args: string[], key: string) => guard(client.send(args, key));
  let functions = library !== undefined;
  // Every command of every event passes here: nothing is built for the
  // timeout unless it fires (an Error captures a stack when it is made, and
  // making one per command cost more than the rest of the path).
  function guard<T>(request: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new RegistryUnavailableError(`Redis did not answer within ${COMMAND_TIMEOUT_MS} ms`)),
        COMMAND_TIMEOUT_MS,
      );
      request.then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(isOutage(err) ? new RegistryUnavailableError(`Redis unavailable: ${(err as Error).message}`, { cause: err }) : err);
        },
      );
    });
  }
  /** Loads the library on the shard of `key`; false when Redis will not take it (the runner then uses EVALSHA). */
  async function load(key: string): Promise<boolean> {
    try {
      await send(['FUNCTION', 'LOAD', (library as ScriptLibrary).source], key);
    } catch (err) {
      // Another instance loaded it meanwhile.
      if (isErrorReply(err) && /already exists/i.test(errorText(err))) return true;
      if (!cannotUseFunctions(err)) throw err;
      functions = false;
      return false;
    }
    return true;
  }
  async function call(script: Script<never, unknown>, argv: string[], base: string): Promise<unknown> {
    const name = functions ? library?.functionName(script) : undefined;
    if (name !== undefined) {
      try {
        return await send(['FCALL', name, ...argv], base);
      } catch (err) {
        if (cannotUseFunctions(err)) functions = false;
        else if (!isMissingFunction(err)) throw err;
        else if (await load(base)) return await send(['FCALL', name, ...argv], base);
      }
    }
    try {
      return await send(['EVALSHA', script.sha, ...argv], base);
    } catch (err) {
      // Scripts are forgotten when Redis restarts (or a replica takes over).
      if (err instanceof Error && err.message.startsWith('NOSCRIPT')) return await send(['EVAL', script.source, ...argv], base);
      throw err;
    }
  }
  /** One call, waiting while its slot moves between shards. */
  async function callWhileMoving(script: Script<never, unknown>, argv: string[], base: string): Promise<unknown> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await call(script, argv, base);
      } catch (err) {
        // A slot being moved to another shard: its keys are on both sides for a moment.
        const moving = err instanceof RegistryUnavailableError && err.cause instanceof Error && err.cause.message.startsWith('TRYAGAIN');
        if (!moving || attempt >= MIGRATION_RETRIES) throw err;
        await new Promise((resolve) => setTimeout(resolve, MIGRATION_RETRY_MS * attempt));
      }
    }
  }
  async function run<Input, Reply>(script: Script<Input, Reply>, base: string, input: Input): Promise<Reply> {
    const keys = new Set(declareKeys ? [base, ...script.touches(input).map((key) => base + key)] : [base]);
    const args = script.args(input);
    for (let round = 1; ; round++) {
      const reply = await callWhileMoving(script as Script<never, unknown>, [String(keys.size), ...keys, ...args], base);
      const undeclared = undeclaredKeys(reply);
      if (!undeclared) return script.decode(reply);
      // The script found keys it would touch and wrote nothing: called again with them declared.
      if (round >= UNDECLARED_ROUNDS) throw new RegistryUnavailableError(`the keys of script ${script.name} kept changing`);
      for (const key of undeclared) keys.add(key);
    }
  }
  return { send, guard, run };
}

// Reading replies: Redis answers with nested arrays of strings and integers.
export const asArray = (reply: unknown): unknown[] => (Array.isArray(reply) ? reply : []);
export const asString = (reply: unknown): string | undefined => (typeof reply === 'string' ? reply : undefined);

/** The keys of an {'undeclared', key...} reply (LIBRARY_LUA, undeclared), or undefined for any other reply. */
function undeclaredKeys(reply: unknown): string[] | undefined {
  if (!Array.isArray(reply) || reply[0] !== 'undeclared') return undefined;
  return reply.slice(1).map(String);
}
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

/** A peer's channel entry as stored: the encoded peer ID and `<role>\n<s>\n<instance>[\n+]`. */
export type ChannelEntry = [encodedPeerID: string, entry: string];

/** Encoded names start with a quote; a channel's stream fields and an account's counters do not. */
export const isEncodedName = (field: string) => field.startsWith('"');

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

/** A registration's key in this instance's own map (and in its record in Redis, for a socket's extra registrations). */
export const registrationRef = (r: Pick<Registration, 'account' | 'channel' | 'peerID'>) => r.account + r.channel + r.peerID;

// Shared Lua, after the key layout (keys.ts).
/**
 * Declared keys, for the scripts of every library: each call's begin() sets
 * \`declared\` to its KEYS (its base, then on a Redis Cluster every key it
 * touches).
 */
export const DECLARED_KEYS_LUA = `
local declared
-- On a Redis Cluster a call declares every key it touches, so that Redis runs
-- it only where all of them are, never while its slot is split between two
-- masters (where a key not declared may be gone, and a script that fails half
-- way keeps its writes). One Redis declares only the base.
local function declaring() return #declared > 1 end

-- A script whose keys depend on what it finds collects them before any write:
-- the reply that asks the caller to declare those it did not, and call again;
-- nil when all are declared.
local function undeclared(keys)
  local known, missing = {}, {'undeclared'}
  for _, key in ipairs(declared) do known[key] = true end
  for _, key in ipairs(keys) do
    if not known[key] then
      known[key] = true
      missing[#missing + 1] = key
    end
  end
  if #missing > 1 then return missing end
end
`;

const LIBRARY_LUA = `
local function asNumber(v) return tonumber(v) or 0 end
local function roleCounter(role) if role == 'broadcaster' then return 'broadcasters' end return 'players' end
-- Encoded names start with a quote; stream fields and counters do not.
local function isName(field) return string.byte(field, 1) == 34 end
-- A channel entry: role, socket, instance, and '+' when the instance's record
-- of it is under its ref (a socket's extra registration) instead of the socket.
local function parsePeerEntry(v) return string.match(v, '^([^\\n]*)\\n([^\\n]*)\\n([^\\n]*)\\n?(.*)$') end
-- An instance's registration: account, channel, peer, socket.
local function parseRegistration(v) return string.match(v, '^([^\\n]*)\\n([^\\n]*)\\n([^\\n]*)\\n(.*)$') end
-- A published channel's stream, in its hash; 'publisher' is "<p>\\n<s>".
local STREAM_FIELDS = {'publisher', 'bitrate', 'audioBitrate'}
local function parsePublisher(v)
  local p, s = string.match(v, '^([^\\n]*)\\n(.*)$')
  return p, 'broadcaster\\n' .. s
end

-- A number as text, a whole one without exponent or decimals.
local function decimal(n)
  if n == math.floor(n) and n > -1e15 and n < 1e15 then return string.format('%d', n) end
  return string.format('%.17g', n)
end

-- A command with many arguments runs in slices: unpack has a limit.
local function callInSlices(command, key, args)
  for i = 1, #args, 4000 do redis.call(command, key, unpack(args, i, math.min(i + 3999, #args))) end
end

-- An account's counters are read at most once per script, when a decision
-- needs them, and written once at its end (writeUsage). The account hash also
-- lists the account's channels that have peers: a field per encoded channel,
-- its stream as JSON (empty while unpublished), for the REST views.
-- Tables are built whole where they can be: Lua then sizes each one once
-- instead of growing it field by field.
-- The counters scripts change; refusals are counted apart (the refusal script).
local DELTAS = {'connections', 'channels', 'players', 'broadcasters', 'bitrate', 'audioBitrate'}
local FRACTIONAL = {bitrate = true, audioBitrate = true}
-- The accounts this call read or changed (the library's functions share
-- these; begin() empties them at the start of each call).
local usage, touched

-- An account's changes in this call: how much each counter moved, the
-- counters as stored (once read), and its channels listed (c -> stream) or
-- unlisted (c -> false).
local function usageOf(a)
  local u = usage[a]
  if not u then
    u = {connections = 0, channels = 0, players = 0, broadcasters = 0, bitrate = 0, audioBitrate = 0, stored = false, relisted = false}
    usage[a] = u
    touched[#touched + 1] = a
  end
  return u
end

-- The counters, and the refusals summed (they only keep an account listed).
local function readCounters(a)
  local v = redis.call('HMGET', accountKey(a), 'connections', 'channels', 'players', 'broadcasters', 'bitrate',
    'audioBitrate', 'refused:connect', 'refused:publish', 'refused:subscribe', 'refused:message')
  return {
    connections = tonumber(v[1]) or 0, channels = tonumber(v[2]) or 0, players = tonumber(v[3]) or 0,
    broadcasters = tonumber(v[4]) or 0, bitrate = tonumber(v[5]) or 0, audioBitrate = tonumber(v[6]) or 0,
    refused = (tonumber(v[7]) or 0) + (tonumber(v[8]) or 0) + (tonumber(v[9]) or 0) + (tonumber(v[10]) or 0),
  }
end

-- An account's counter, with this script's changes.
local function counter(a, field)
  local u = usageOf(a)
  if not u.stored then u.stored = readCounters(a) end
  return u.stored[field] + u[field]
end

local function count(a, field, n)
  if n == 0 then return end
  local u = usageOf(a)
  u[field] = u[field] + n
end

local function relist(u, c, stream)
  local relisted = u.relisted
  if not relisted then
    relisted = {}
    u.relisted = relisted
  end
  relisted[c] = stream
end

local function listChannel(a, c, stream)
  local u = usageOf(a)
  relist(u, c, stream)
  u.channels = u.channels + 1
end

local function listStream(a, c, stream)
  relist(usageOf(a), c, stream)
end

local function unlistChannel(a, c)
  local u = usageOf(a)
  relist(u, c, false)
  u.channels = u.channels - 1
end

-- An account with nothing to show is forgotten; refusal counters are its
-- stats, so they keep it.
local function showsSomething(v)
  return v.connections > 0 or v.channels > 0 or v.refused > 0
end

local function forget(a)
  redis.call('DEL', accountKey(a))
  redis.call('SREM', ACCOUNTS, a)
end

local function writeAccount(a, u)
  local changed, last = 0, nil
  for i = 1, #DELTAS do
    if u[DELTAS[i]] ~= 0 then changed, last = changed + 1, DELTAS[i] end
  end
  if changed == 0 and not u.relisted then return end
  local ak = accountKey(a)
  if not u.stored and changed == 1 and not u.relisted then
    -- One counter moved and none was read: one increment.
    local n = u[last]
    local now
    if FRACTIONAL[last] then now = tonumber(redis.call('HINCRBYFLOAT', ak, last, n))
    else now = redis.call('HINCRBY', ak, last, n) end
    if last ~= 'connections' then return end
    -- The first connection lists the account; after the last one it may have nothing to show.
    if now > 0 then
      if now == n then redis.call('SADD', ACCOUNTS, a) end
      return
    end
    local after = readCounters(a)
    after.connections = 0
    if not showsSomething(after) then forget(a)
    elseif now < 0 then redis.call('HSET', ak, 'connections', 0) end
    return
  end
  local before = u.stored or readCounters(a)
  local connections = before.connections + u.connections
  if connections < 0 then connections = 0 end
  if connections <= 0 and before.channels + u.channels <= 0 and before.refused <= 0 then return forget(a) end
  local fields, n = {}, 0
  for i = 1, #DELTAS do
    local field = DELTAS[i]
    if u[field] ~= 0 then
      local value = before[field] + u[field]
      if field == 'connections' then value = connections end
      fields[n + 1], fields[n + 2], n = field, decimal(value), n + 2
    end
  end
  local unlisted
  if u.relisted then
    for c, stream in pairs(u.relisted) do
      if stream then fields[n + 1], fields[n + 2], n = c, stream, n + 2
      else
        unlisted = unlisted or {}
        unlisted[#unlisted + 1] = c
      end
    end
  end
  if n > 0 then callInSlices('HSET', ak, fields) end
  if unlisted then callInSlices('HDEL', ak, unlisted) end
  if not showsSomething(before) then redis.call('SADD', ACCOUNTS, a) end
end

-- Every script that changes usage ends with this.
local function writeUsage()
  for _, a in ipairs(touched) do writeAccount(a, usage[a]) end
end

-- A channel read whole: its peers (a flat hash), p's entry and the stream,
-- with room for what findRegistration adds.
local function readChannel(a, c, p)
  local all = redis.call('HGETALL', channelKey(a, c))
  local peers, n = {}, 0
  local ch = {
    peers = peers, size = 0, bitrate = 0, audioBitrate = 0, entry = nil, publisher = nil,
    a = nil, c = nil, p = nil, s = nil, role = nil, instance = nil, record = nil,
  }
  for k = 1, #all, 2 do
    local field, value = all[k], all[k + 1]
    if isName(field) then
      peers[n + 1], peers[n + 2], n = field, value, n + 2
      if field == p then ch.entry = value end
    elseif field == 'publisher' then ch.publisher = string.match(value, '^([^\\n]*)')
    elseif field == 'bitrate' then ch.bitrate = asNumber(value)
    elseif field == 'audioBitrate' then ch.audioBitrate = asNumber(value) end
  end
  ch.size = n / 2
  return ch
end

-- A flat hash with field p set to v (in place, or added at the end, as Redis
-- keeps a small hash).
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

-- Registers p for socket s; a limit of 0 is no limit. With takeRecord, the
-- socket's record (under s) was freed by the registration it just left, and
-- a new registration takes it over. Returns {refusal = ...}, or what the join
-- answers: isNew, for a broadcaster the channel's peers afterwards (a flat
-- hash), for a player the publisher's name and entry when it is someone
-- else; tookRecord when it took the socket's record over.
local function addPeer(inst, a, c, p, s, role, bitrate, audioBitrate, stream, limit, maxChannels, maxPeers, takeRecord)
  local ck = channelKey(a, c)
  local ch, before
  if role == 'broadcaster' then
    ch = readChannel(a, c, p)
    before = ch.size
  else
    -- A player reads no other peer: p's entry and the stream are enough.
    local v = redis.call('HMGET', ck, p, 'publisher', 'bitrate', 'audioBitrate')
    ch = {bitrate = asNumber(v[3]), audioBitrate = asNumber(v[4])}
    if v[1] then ch.entry = v[1] end
    if v[2] then ch.publisher, ch.publisherEntry = parsePublisher(v[2]) end
    -- The size matters when the channel may be empty, or when p's own stream ends.
    if (not ch.entry and not ch.publisher) or ch.publisher == p then
      before = redis.call('HLEN', ck)
      if ch.publisher then before = before - #STREAM_FIELDS end
    end
  end
  local existing, oldRole, extra = ch.entry, nil, ''
  if existing then
    local r, es, _, x = parsePeerEntry(existing)
    if es ~= s then return {refusal = 'uniqueness'} end
    oldRole, extra = r, x
  end
  local grows = 1
  if existing then grows = 0 end
  -- The stream afterwards: a broadcaster's own; a player keeps someone else's and ends its own.
  local newBitrate, newAudio = 0, 0
  if role == 'broadcaster' then newBitrate, newAudio = asNumber(bitrate), asNumber(audioBitrate)
  elseif ch.publisher and ch.publisher ~= p then newBitrate, newAudio = ch.bitrate, ch.audioBitrate end
  local addBitrate, addAudio
  if before then
    local oldBitrate, oldAudio = 0, 0
    if ch.publisher then oldBitrate, oldAudio = ch.bitrate, ch.audioBitrate end
    addBitrate = (before + grows) * newBitrate - before * oldBitrate
    addAudio = (before + grows) * newAudio - before * oldAudio
  else
    -- A player in a channel whose stream stays: one more viewer of it, or none.
    addBitrate, addAudio = grows * newBitrate, grows * newAudio
  end
  if maxChannels > 0 and before == 0 and counter(a, 'channels') >= maxChannels then return {refusal = 'channels'} end
  if maxPeers > 0 and not existing and counter(a, 'players') + counter(a, 'broadcasters') >= maxPeers then
    return {refusal = 'peers'}
  end
  local added = addBitrate + addAudio
  if limit > 0 and added > 0 and counter(a, 'bitrate') + counter(a, 'audioBitrate') + added > limit then
    return {refusal = 'totalBitrate'}
  end
  if before == 0 then listChannel(a, c, '')
  elseif role ~= 'broadcaster' and ch.publisher == p then listStream(a, c, '') end
  if role == 'broadcaster' then listStream(a, c, stream) end
  if oldRole then count(a, roleCounter(oldRole), -1) end
  count(a, roleCounter(role), 1)
  count(a, 'bitrate', addBitrate)
  count(a, 'audioBitrate', addAudio)
  -- The instance's record: under the socket for its one registration, under
  -- the ref for the extra ones a socket holds in rooms.
  local tookRecord = false
  if not existing then
    local pk = peersKey(inst)
    local registration = a .. '\\n' .. c .. '\\n' .. p .. '\\n' .. s
    if takeRecord then
      redis.call('HSET', pk, s, registration)
      tookRecord = true
    elseif redis.call('HSETNX', pk, s, registration) == 0 then
      redis.call('HSET', pk, a .. c .. p, registration)
      extra = '+'
    end
  end
  local entry = role .. '\\n' .. s .. '\\n' .. inst
  if extra == '+' then entry = entry .. '\\n+' end
  if role == 'broadcaster' then
    redis.call('HSET', ck, p, entry, 'publisher', p .. '\\n' .. s, 'bitrate', bitrate, 'audioBitrate', audioBitrate)
    return {isNew = not existing, peers = withEntry(ch.peers, p, entry), tookRecord = tookRecord}
  end
  if existing ~= entry then redis.call('HSET', ck, p, entry) end
  if ch.publisher == p then redis.call('HDEL', ck, unpack(STREAM_FIELDS)) end
  local joined = {isNew = not existing, tookRecord = tookRecord}
  if ch.publisher and ch.publisher ~= p then
    -- Its own entry names its instance: the peer notice goes straight there.
    joined.publisher, joined.publisherEntry = ch.publisher, redis.call('HGET', ck, ch.publisher) or ch.publisherEntry
  end
  return joined
end

-- The registration of p by socket s (and instance inst, when given) in
-- channel c, read for removal; nil when there is none.
local function findRegistration(a, c, p, s, inst)
  local r = readChannel(a, c, p)
  if not r.entry then return nil end
  local role, ps, pi, extra = parsePeerEntry(r.entry)
  if ps ~= s or (inst and pi ~= inst) then return nil end
  r.a, r.c, r.p, r.s, r.role, r.instance = a, c, p, s, role, pi
  -- Where the instance's record of it is.
  if extra == '+' then r.record = a .. c .. p else r.record = s end
  return r
end

-- Removes a found registration from its channel and its account's usage
-- (its record is the caller's). Returns the remaining peers as a flat hash.
local function removeRegistration(r)
  local a, c, p = r.a, r.c, r.p
  local ck = channelKey(a, c)
  local remaining = {}
  for k = 1, #r.peers, 2 do
    if r.peers[k] ~= p then remaining[#remaining + 1], remaining[#remaining + 2] = r.peers[k], r.peers[k + 1] end
  end
  local before = r.size
  local after = before - 1
  count(a, roleCounter(r.role), -1)
  -- The stream goes with its publisher, or with the last peer.
  local streamGoes = r.publisher ~= nil and (r.publisher == p or after == 0)
  if r.publisher then
    local viewers = 1
    if streamGoes then viewers = before end
    count(a, 'bitrate', -viewers * r.bitrate)
    count(a, 'audioBitrate', -viewers * r.audioBitrate)
  end
  -- While the channel has peers it stays listed.
  if after == 0 then
    redis.call('DEL', ck)
    unlistChannel(a, c)
  elseif streamGoes then
    redis.call('HDEL', ck, p, unpack(STREAM_FIELDS))
    listStream(a, c, '')
  else redis.call('HDEL', ck, p) end
  return remaining
end

-- Every call starts here.
local function begin(keys)
  setBase(keys[1])
  usage, touched = {}, {}
  declared = keys
end

-- The accounts and channels that registration records (the values of a flat hash) name.
local function recordKeys(keys, flat)
  for k = 2, #flat, 2 do
    local a, c = parseRegistration(flat[k])
    if a then keys[#keys + 1], keys[#keys + 2] = accountKey(a), channelKey(a, c) end
  end
end

-- The accounts that the fields of a flat hash name (an instance's connections).
local function accountKeys(keys, flat)
  for k = 1, #flat, 2 do keys[#keys + 1] = accountKey(flat[k]) end
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

const defineScript = scriptDefiner(`${KEYS_LUA}\n${DECLARED_KEYS_LUA}\n${LIBRARY_LUA}`);

export type ConnectReply = 'ok' | 'connections' | 'totalBitrate' | 'unregistered';

/** Counts one more connection of the account, unless its plan refuses it. */
export const connectScript = defineScript(
  'connect',
  `
local inst, a, maxConnections, maxTotalBitrate = ARGV[1], ARGV[2], asNumber(ARGV[3]), asNumber(ARGV[4])
if redis.call('SISMEMBER', SYNCED, inst) == 0 then return 'unregistered' end
if maxConnections > 0 and counter(a, 'connections') >= maxConnections then return 'connections' end
if maxTotalBitrate > 0 and counter(a, 'bitrate') + counter(a, 'audioBitrate') >= maxTotalBitrate then return 'totalBitrate' end
redis.call('HINCRBY', connKey(inst), a, 1)
count(a, 'connections', 1)
writeUsage()
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
  ({ instance, account }) => [k.synced, k.accounts, k.account(account), k.connections(instance)],
);

/** Releases one connection this instance counted; true when there was one. */
export const disconnectScript = defineScript(
  'disconnect',
  `
local inst, a = ARGV[1], ARGV[2]
local mine = asNumber(redis.call('HGET', connKey(inst), a))
if mine <= 0 then return 0 end
if mine == 1 then redis.call('HDEL', connKey(inst), a) else redis.call('HINCRBY', connKey(inst), a, -1) end
count(a, 'connections', -1)
writeUsage()
return 1
`,
  (input: { instance: string; account: string }) => [input.instance, input.account],
  (reply) => reply === 1,
  ({ instance, account }) => [k.accounts, k.account(account), k.connections(instance)],
);

export type JoinReply =
  | { outcome: 'unregistered' }
  | {
      outcome: 'refused';
      refusal: JoinRefusal;
      /** The peers left in the channel the socket left, or null when it was not registered there. */
      left: ChannelEntry[] | null;
    }
  | {
      outcome: 'ok';
      isNew: boolean;
      /** Everyone in the channel (for a broadcaster; empty for a player). */
      peers: ChannelEntry[];
      /** The channel's broadcaster (for a player joining a published channel). */
      publisher?: ChannelEntry | undefined;
      left: ChannelEntry[] | null;
    };

/**
 * Registers a peer in a channel, unless uniqueness or a limit refuses it;
 * first leaves the registration the socket moves from, if any, whether the
 * join is refused or not.
 */
export const joinScript = defineScript(
  'join',
  `
local inst, a, c, p, s, role = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local maxTotalBitrate, bitrate, audioBitrate, stream = asNumber(ARGV[7]), ARGV[8], ARGV[9], ARGV[10]
local maxChannels, maxPeers = asNumber(ARGV[11]), asNumber(ARGV[12])
local leftChannel, leftPeer = ARGV[13], ARGV[14]
local old
if leftChannel ~= '' then old = findRegistration(a, leftChannel, leftPeer, s, nil) end
-- A registration of this instance here shows that this bucket holds its
-- state (a sweep removes them all before it forgets the instance).
if not (old and old.instance == inst) and redis.call('SISMEMBER', SYNCED, inst) == 0 then return {'unregistered'} end
local left, takeRecord = false, false
if old then
  left = removeRegistration(old)
  -- The socket's record passes to its new registration.
  if old.record == s and old.instance == inst then takeRecord = true
  else redis.call('HDEL', peersKey(old.instance), old.record) end
end
local joined = addPeer(inst, a, c, p, s, role, bitrate, audioBitrate, stream, maxTotalBitrate, maxChannels, maxPeers, takeRecord)
if takeRecord and not joined.tookRecord then redis.call('HDEL', peersKey(inst), s) end
writeUsage()
if joined.refusal then return {joined.refusal, 0, {}, false, false, left} end
return {'ok', joined.isNew and 1 or 0, joined.peers or {}, joined.publisher or false, joined.publisherEntry or false, left}
`,
  (input: {
    instance: string;
    registration: Registration;
    maxTotalBitrate: number;
    maxChannels: number;
    maxPeers: number;
    /** The socket's registration it leaves first (encoded names), if any. */
    leaving: { channel: string; peerID: string } | undefined;
  }) => {
    const r = input.registration;
    return [
      ...[input.instance, r.account, r.channel, r.peerID, r.socketId, r.role],
      ...[String(input.maxTotalBitrate), r.bitrate, r.audioBitrate, r.stream],
      ...[String(input.maxChannels), String(input.maxPeers), input.leaving?.channel ?? '', input.leaving?.peerID ?? ''],
    ];
  },
  (reply): JoinReply => {
    const [outcome, isNew, peers, publisher, entry, leftPeers] = asArray(reply);
    if (outcome === 'unregistered') return { outcome };
    const left = Array.isArray(leftPeers) ? hashEntries(leftPeers) : null;
    if (isJoinRefusal(outcome)) return { outcome: 'refused', refusal: outcome, left };
    if (outcome !== 'ok') return unexpected(outcome);
    const publisherEntry: ChannelEntry | undefined =
      typeof publisher === 'string' && typeof entry === 'string' ? [publisher, entry] : undefined;
    return { outcome, isNew: isNew === 1, peers: hashEntries(peers), publisher: publisherEntry, left };
  },
  ({ instance, registration: { account, channel }, leaving }) => [
    ...[k.synced, k.accounts, k.account(account), k.channel(account, channel), k.registrations(instance)],
    ...(leaving && leaving.channel !== channel ? [k.channel(account, leaving.channel)] : []),
  ],
);

type LeaveInput = Pick<Registration, 'account' | 'channel' | 'peerID' | 'socketId'> & { instance: string };

/** Removes a registration made by a socket; the channel's remaining peers, or null when it had none. */
export const leaveScript = defineScript(
  'leave',
  `
local r = findRegistration(ARGV[1], ARGV[2], ARGV[3], ARGV[4], nil)
if not r then return false end
local remaining = removeRegistration(r)
redis.call('HDEL', peersKey(r.instance), r.record)
writeUsage()
return remaining
`,
  (input: LeaveInput) => [input.account, input.channel, input.peerID, input.socketId],
  (reply): ChannelEntry[] | null => (reply == null ? null : hashEntries(reply)),
  // The registration is this instance's (its socket left), so its record is the one touched.
  ({ instance, account, channel }) => [k.accounts, k.account(account), k.channel(account, channel), k.registrations(instance)],
);

export const refusalScript = defineScript(
  'refusal',
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

/**
 * Renews the instance's heartbeat, whose value is the instance's PUBLIC_URL
 * (or '1' without one, as before it had one); false when Redis did not know
 * it (its state may be gone).
 */
export const heartbeatScript = defineScript(
  'heartbeat',
  `
local inst, aliveMs, url = ARGV[1], ARGV[2], ARGV[3]
local known = redis.call('SISMEMBER', INSTANCES, inst)
redis.call('SADD', INSTANCES, inst)
redis.call('SREM', GONE, inst)
redis.call('SET', aliveKey(inst), url, 'PX', aliveMs)
return known
`,
  (input: { instance: string; aliveMs: number; url?: string | undefined }) => [input.instance, String(input.aliveMs), input.url ?? '1'],
  (reply) => reply === 1,
);

/** A heartbeat key's value: the instance's address, or none ('1', or the key expired). */
export const publicUrlOf = (alive: unknown): string | undefined => {
  const value = asString(alive);
  return value === undefined || value === '1' ? undefined : value;
};

/**
 * The instance that holds a channel: its broadcaster's, else the one with
 * most of its peers (nil when it has none). A published channel answers
 * with two field reads, whatever its size.
 */
export const holderScript = defineScript(
  'holder',
  `
local ck = channelKey(ARGV[1], ARGV[2])
local publisher = redis.call('HGET', ck, 'publisher')
local entry = publisher and redis.call('HGET', ck, (parsePublisher(publisher)))
if entry then
  local _, _, inst = parsePeerEntry(entry)
  return inst
end
local all, counts, best, most = redis.call('HGETALL', ck), {}, false, 0
for k = 1, #all, 2 do
  if isName(all[k]) then
    local _, _, inst = parsePeerEntry(all[k + 1])
    if inst then
      counts[inst] = (counts[inst] or 0) + 1
      if counts[inst] > most then best, most = inst, counts[inst] end
    end
  end
end
return best
`,
  (input: { account: string; channel: string }) => [input.account, input.channel],
  asString,
  ({ account, channel }) => [k.channel(account, channel)],
);

/** Forgets a dead instance once every bucket is swept. */
export const forgetScript = defineScript(
  'forget',
  `
redis.call('SREM', GONE, ARGV[1])
return 1
`,
  (input: { dead: string }) => [input.dead],
  () => undefined,
);

/** Forgets a leaving instance: it has removed its own state from every bucket. */
export const retireScript = defineScript(
  'retire',
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
  'claim',
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
  'sweep',
  `
local dead, batch = ARGV[1], ARGV[2]
local pk = peersKey(dead)
local entries = redis.call('HSCAN', pk, '0', 'COUNT', batch)[2]
if declaring() then
  -- The connections are released when this batch is the last; declared whether or not.
  local keys = {}
  recordKeys(keys, entries)
  accountKeys(keys, redis.call('HGETALL', connKey(dead)))
  local missing = undeclared(keys)
  if missing then return missing end
end
local notes, removed, fields = {}, 0, {}
for k = 1, #entries, 2 do
  fields[#fields + 1] = entries[k]
  local a, c, p, s = parseRegistration(entries[k + 1])
  local r = a and findRegistration(a, c, p, s, dead)
  if r then
    removed = removed + 1
    addDeparture(notes, c, p, removeRegistration(r), dead)
  end
end
if #fields > 0 then callInSlices('HDEL', pk, fields) end
local done = redis.call('EXISTS', pk) == 0
if done then
  local conns = redis.call('HGETALL', connKey(dead))
  for k = 1, #conns, 2 do count(conns[k], 'connections', -asNumber(conns[k + 1])) end
  redis.call('DEL', connKey(dead))
  redis.call('SREM', SYNCED, dead)
end
writeUsage()
return {done and 1 or 0, removed, notes}
`,
  (input: { dead: string; batch: number }) => [input.dead, String(input.batch)],
  (reply) => {
    const [done, removed, notes] = asArray(reply);
    return { done: done === 1, removed: asNumber(removed), gone: departures(notes) };
  },
  // Its accounts and channels are in its records: the script asks for them.
  ({ dead }) => [k.accounts, k.synced, k.registrations(dead), k.connections(dead)],
);

export interface SyncInput {
  instance: string;
  /** Connections this instance holds, by encoded account. */
  connections: ReadonlyMap<string, number>;
  registrations: readonly Registration[];
  /** Forget the instance afterwards (it is leaving). */
  retire: boolean;
}

/**
 * Makes the instance's state in one bucket what the instance knows it holds.
 * Returns the peers removed (their channels must hear them leave) and the
 * refs of registrations that could not be restored (someone took the name).
 */
export const syncScript = defineScript(
  'sync',
  `
local inst = ARGV[1]
local at = 2
local want = {}
for _ = 1, asNumber(ARGV[at]) do
  want[ARGV[at + 1]] = asNumber(ARGV[at + 2])
  at = at + 2
end
at = at + 1
local ck, pk = connKey(inst), peersKey(inst)
local have, current = redis.call('HGETALL', ck), redis.call('HGETALL', pk)
if declaring() then
  -- What the instance holds is declared with the call; what Redis holds of it is found here.
  local keys = {}
  accountKeys(keys, have)
  recordKeys(keys, current)
  local missing = undeclared(keys)
  if missing then return missing end
end
for k = 1, #have, 2 do
  local a, n = have[k], asNumber(have[k + 1])
  local w = want[a] or 0
  want[a] = nil
  if w ~= n then
    if w > 0 then redis.call('HSET', ck, a, w) else redis.call('HDEL', ck, a) end
    count(a, 'connections', w - n)
  end
end
for a, w in pairs(want) do
  if w > 0 then
    redis.call('HSET', ck, a, w)
    count(a, 'connections', w)
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
local notes, stale = {}, {}
for k = 1, #current, 2 do
  local a, c, p, s = parseRegistration(current[k + 1])
  if not a or wanted[a .. c .. p] ~= s then
    stale[#stale + 1] = current[k]
    local r = a and findRegistration(a, c, p, s, inst)
    if r then addDeparture(notes, c, p, removeRegistration(r), skip) end
  end
end
if #stale > 0 then callInSlices('HDEL', pk, stale) end
local dropped = {}
for _, r in ipairs(registrations) do
  if addPeer(inst, r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], 0, 0, 0, false).refusal then
    dropped[#dropped + 1] = r[1] .. r[2] .. r[3]
  end
end
if retire then redis.call('SREM', SYNCED, inst) else redis.call('SADD', SYNCED, inst) end
writeUsage()
return {notes, dropped}
`,
  (input: SyncInput) => {
    // A retiring instance claims nothing: everything it registered is removed.
    const connections = input.retire ? new Map<string, number>() : input.connections;
    const registrations = input.retire ? [] : input.registrations;
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
  (input: SyncInput) => [
    ...[k.accounts, k.synced, k.connections(input.instance), k.registrations(input.instance)],
    ...(input.retire ? [] : [...input.connections.keys()].map(k.account)),
    ...(input.retire ? [] : input.registrations.flatMap((r) => [k.account(r.account), k.channel(r.account, r.channel)])),
  ],
);

/** Every account of a bucket with its usage and its number of channels: the account hashes without their channels' streams. */
export const usageScript = defineScript(
  'usage',
  `
local accounts = redis.call('SMEMBERS', ACCOUNTS)
if declaring() then
  local keys = {}
  for i, a in ipairs(accounts) do keys[i] = accountKey(a) end
  local missing = undeclared(keys)
  if missing then return missing end
end
local out = {}
for _, a in ipairs(accounts) do
  local account = redis.call('HGETALL', accountKey(a))
  local counters = {}
  for k = 1, #account, 2 do
    if not isName(account[k]) then counters[#counters + 1], counters[#counters + 2] = account[k], account[k + 1] end
  end
  out[#out + 1] = {a, counters}
end
return out
`,
  () => [],
  (reply): UsageSnapshot =>
    asArray(reply).map((entry) => {
      const [account, counters] = asArray(entry);
      const channels = hashEntries(counters).find(([field]) => field === 'channels')?.[1];
      return [decodeName(String(account)), usageFromHash(counters), asNumber(channels)];
    }),
  () => [k.accounts],
);

export interface AccountSnapshot {
  account: string;
  usage: AccountUsage;
  channels: { channel: string; peers: ChannelEntry[]; stream: string | undefined }[];
}

/** Every account of a bucket with its usage and channels (for the REST API). */
export const snapshotScript = defineScript(
  'snapshot',
  `
local accounts = redis.call('SMEMBERS', ACCOUNTS)
local hashes, keys = {}, {}
for i, a in ipairs(accounts) do
  hashes[i] = redis.call('HGETALL', accountKey(a))
  keys[#keys + 1] = accountKey(a)
  -- The account's channels are its fields named by an encoded channel, each with its stream.
  for k = 1, #hashes[i], 2 do
    if isName(hashes[i][k]) then keys[#keys + 1] = channelKey(a, hashes[i][k]) end
  end
end
-- Read only: a call that has not declared them all answers with the keys it read.
local missing = declaring() and undeclared(keys)
if missing then return missing end
local out = {}
for i, a in ipairs(accounts) do
  local account = hashes[i]
  local channels = {}
  for k = 1, #account, 2 do
    if isName(account[k]) then
      local all = redis.call('HGETALL', channelKey(a, account[k]))
      local peers = {}
      for j = 1, #all, 2 do
        if isName(all[j]) then peers[#peers + 1], peers[#peers + 2] = all[j], all[j + 1] end
      end
      channels[#channels + 1] = {account[k], peers, account[k + 1]}
    end
  end
  out[#out + 1] = {a, account, channels}
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
  () => [k.accounts],
);

/** Every script of the registry, as one library of functions. */
export const registryLibrary = defineLibrary('vw', [
  connectScript,
  disconnectScript,
  joinScript,
  leaveScript,
  refusalScript,
  heartbeatScript,
  holderScript,
  forgetScript,
  retireScript,
  claimScript,
  sweepScript,
  syncScript,
  usageScript,
  snapshotScript,
] as Script<never, unknown>[]);
