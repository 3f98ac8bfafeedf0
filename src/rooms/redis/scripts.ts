// The Lua side of the Redis room store (store.ts). Each change is one
// script, so a bound (rooms per account, participants per room, one seat per
// user) is decided atomically with the change it allows, whichever instance
// asks.
//
// Keys, under the base of the account's bucket (channels/redis/keys.ts: one
// hash tag per bucket, so each script touches one slot of a Redis Cluster);
// a, r, s, u, i are JSON-encoded account, room, socket id, user, stream id (so
// names never collide when concatenated):
//   roomaccts          set of the bucket's accounts with rooms
//   rooms:<a>          set of the account's rooms
//   rm:<a><r>          hash: s -> "<u>\n<instance>\n<participant JSON>"
//   rmu:<a><r>         hash: u -> s (one seat per user)
//   rms:<a><r>         hash: i -> "<s>\n<stream JSON>"
//   rmm:<a><r>         list of message JSON, oldest first
//   rminst             set of instances that seated participants in the bucket
//   rmseats:<instance> hash: <a><r><s> -> "<a>\n<r>\n<s>"
//   rmswept:<instance> hash: <a><r><s> -> 1, the seats a sweep took from an
//                      instance taken for dead, whose rooms heard them leave
//                      (so a restore of them is announced as a join); it
//                      expires after a day, for an instance that never returns
// An instance missing from the channel registry's live instances is dead.
//
// The scripts run through the registry's runner (channels/redis/scripts.ts),
// as their own Redis Functions library. Each declares the keys it touches
// (KEYS[2...]; those of seats it finds in Redis, a dead instance's, it asks
// for before any write, and the runner calls it again with them declared),
// so that on a Redis Cluster a script never runs while its slot is split
// between two masters: it would see a room half moved.
import { DECLARED_KEYS_LUA, defineLibrary, scriptDefiner, type Script } from '../../channels/redis/scripts';
import type { RoomMessage, RoomParticipant, RoomRefusal, RoomStream } from '../store';
import type { OwnSeat } from './own-seats';

export const encode = (name: string) => JSON.stringify(name);
export const decode = (text: string) => JSON.parse(text) as string;
export const list = (reply: unknown): unknown[] => (Array.isArray(reply) ? reply : []);
export const refusals: readonly RoomRefusal[] = ['rooms', 'participants', 'user', 'already'];

export function pairs(flat: unknown): [string, string][] {
  const items = list(flat);
  const result: [string, string][] = [];
  for (let i = 0; i + 1 < items.length; i += 2) result.push([String(items[i]), String(items[i + 1])]);
  return result;
}

/** The part of a stored value after its first `n` newline-separated fields. */
export const after = (value: string, n: number) => value.split('\n').slice(n).join('\n');

/** The keys of a bucket, after its base (a, r encoded): the names the Lua helpers below build. */
const k = {
  accounts: 'roomaccts',
  instances: 'rminst',
  rooms: (a: string) => `rooms:${a}`,
  seats: (a: string, r: string) => `rm:${a}${r}`,
  users: (a: string, r: string) => `rmu:${a}${r}`,
  streams: (a: string, r: string) => `rms:${a}${r}`,
  messages: (a: string, r: string) => `rmm:${a}${r}`,
  instanceSeats: (instance: string) => `rmseats:${instance}`,
  sweptSeats: (instance: string) => `rmswept:${instance}`,
};

/** Every key a join or leave (leaveRoom) of a seat that `instance` holds may touch. */
const seatKeys = (instance: string, a: string, r: string) => [
  ...[k.seats(a, r), k.users(a, r), k.streams(a, r), k.messages(a, r)],
  ...[k.rooms(a), k.accounts, k.instanceSeats(instance), k.instances],
];

// Every call starts with begin(KEYS): its keys are under the base of its bucket, KEYS[1].
const ROOMS_LUA = `
local P, ACCTS, INSTS
local function begin(keys)
  P = keys[1]
  ACCTS, INSTS = P .. 'roomaccts', P .. 'rminst'
  declared = keys
end
local function roomsKey(a) return P .. 'rooms:' .. a end
local function seatsKey(a, r) return P .. 'rm:' .. a .. r end
local function usersKey(a, r) return P .. 'rmu:' .. a .. r end
local function streamsKey(a, r) return P .. 'rms:' .. a .. r end
local function messagesKey(a, r) return P .. 'rmm:' .. a .. r end
local function instKey(i) return P .. 'rmseats:' .. i end
local function sweptKey(i) return P .. 'rmswept:' .. i end
local function num(v) return tonumber(v) or 0 end
local SWEPT_TTL_MS = 86400000

-- Every key a join or leave of seat s in room r of account a (by instance i) may touch.
local function addSeatKeys(keys, a, r, i)
  for _, key in ipairs({seatsKey(a, r), usersKey(a, r), streamsKey(a, r), messagesKey(a, r), roomsKey(a), ACCTS, instKey(i), INSTS}) do
    keys[#keys + 1] = key
  end
end

-- The seats of instance i in an {<a><r><s>, "<a>\\n<r>\\n<s>"...} flat hash, and their keys.
local function seatsOf(flat, i, keys)
  local seats = {}
  for k = 1, #flat, 2 do
    local a, r, s = string.match(flat[k + 1], '^([^\\n]*)\\n([^\\n]*)\\n(.*)$')
    seats[#seats + 1] = {field = flat[k], a = a, r = r, s = s}
    if a then addSeatKeys(keys, a, r, i) end
  end
  return seats
end

-- Removes socket s from room r (only if instance inst seated it, when given).
-- Returns {participant JSON, {stream JSON...}} or false.
local function leaveRoom(a, r, s, inst)
  local sk = seatsKey(a, r)
  local v = redis.call('HGET', sk, s)
  if not v then return false end
  local u, i, pj = string.match(v, '^([^\\n]*)\\n([^\\n]*)\\n(.*)$')
  if inst and i ~= inst then return false end
  redis.call('HDEL', sk, s)
  if redis.call('HGET', usersKey(a, r), u) == s then redis.call('HDEL', usersKey(a, r), u) end
  redis.call('HDEL', instKey(i), a .. r .. s)
  if redis.call('EXISTS', instKey(i)) == 0 then redis.call('SREM', INSTS, i) end
  local removed = {}
  local streams = redis.call('HGETALL', streamsKey(a, r))
  for k = 1, #streams, 2 do
    local owner, sj = string.match(streams[k + 1], '^([^\\n]*)\\n(.*)$')
    if owner == s then
      redis.call('HDEL', streamsKey(a, r), streams[k])
      removed[#removed + 1] = sj
    end
  end
  if redis.call('HLEN', sk) == 0 then
    redis.call('DEL', sk, usersKey(a, r), streamsKey(a, r), messagesKey(a, r))
    redis.call('SREM', roomsKey(a), r)
    if redis.call('SCARD', roomsKey(a)) == 0 then redis.call('SREM', ACCTS, a) end
  end
  return {pj, removed}
end
`;

const defineScript = scriptDefiner(`${DECLARED_KEYS_LUA}\n${ROOMS_LUA}`);
/** The store reads the replies itself. */
const asIs = (reply: unknown) => reply;

interface Seat {
  account: string;
  room: string;
  socketId: string;
}

/** ARGV: inst, a, r, s, u, participant JSON, max rooms, max participants, history. */
export const joinScript = defineScript(
  'join',
  `
local inst, a, r, s, u = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local sk = seatsKey(a, r)
if redis.call('HEXISTS', sk, s) == 1 then return {'already'} end
local owner = redis.call('HGET', usersKey(a, r), u)
if owner and owner ~= s then return {'user'} end
local n = redis.call('HLEN', sk)
local maxRooms, maxParticipants, history = num(ARGV[7]), num(ARGV[8]), num(ARGV[9])
if n == 0 and maxRooms > 0 and redis.call('SCARD', roomsKey(a)) >= maxRooms then return {'rooms'} end
if maxParticipants > 0 and n >= maxParticipants then return {'participants'} end
redis.call('HSET', sk, s, u .. '\\n' .. inst .. '\\n' .. ARGV[6])
redis.call('HSET', usersKey(a, r), u, s)
redis.call('SADD', roomsKey(a), r)
redis.call('SADD', ACCTS, a)
redis.call('HSET', instKey(inst), a .. r .. s, a .. '\\n' .. r .. '\\n' .. s)
redis.call('SADD', INSTS, inst)
local messages = {}
if history > 0 then messages = redis.call('LRANGE', messagesKey(a, r), -history, -1) end
return {'ok', redis.call('HGETALL', sk), redis.call('HGETALL', streamsKey(a, r)), messages}
`,
  (input: Seat & { instance: string; participant: RoomParticipant; maxRooms: number; maxParticipants: number; history: number }) => [
    ...[input.instance, encode(input.account), encode(input.room), encode(input.socketId), encode(input.participant.name)],
    ...[JSON.stringify(input.participant), String(input.maxRooms), String(input.maxParticipants), String(input.history)],
  ],
  asIs,
  ({ instance, account, room }) => seatKeys(instance, encode(account), encode(room)),
);

/** ARGV: a, r, s. */
export const leaveScript = defineScript(
  'leave',
  `
return leaveRoom(ARGV[1], ARGV[2], ARGV[3], nil)
`,
  (input: Seat & { instance: string }) => [encode(input.account), encode(input.room), encode(input.socketId)],
  asIs,
  // The seat is this instance's (its socket left), so its record is the one touched.
  ({ instance, account, room }) => seatKeys(instance, encode(account), encode(room)),
);

/** ARGV: a, r, s, i, stream JSON, max per participant. */
export const addStreamScript = defineScript(
  'addStream',
  `
local a, r, s, i = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('HEXISTS', seatsKey(a, r), s) == 0 then return 'absent' end
if redis.call('HEXISTS', streamsKey(a, r), i) == 1 then return 'exists' end
local max = num(ARGV[6])
if max > 0 then
  local own = 0
  for _, v in ipairs(redis.call('HVALS', streamsKey(a, r))) do
    if string.sub(v, 1, #s + 1) == s .. '\\n' then own = own + 1 end
  end
  if own >= max then return 'tooMany' end
end
redis.call('HSET', streamsKey(a, r), i, s .. '\\n' .. ARGV[5])
return 'ok'
`,
  ({ account, room, stream, maxPerParticipant }: { account: string; room: string; stream: RoomStream; maxPerParticipant: number }) => [
    ...[encode(account), encode(room), encode(stream.socketId), encode(stream.streamId)],
    ...[JSON.stringify(stream), String(maxPerParticipant)],
  ],
  asIs,
  ({ account, room }) => [k.seats(encode(account), encode(room)), k.streams(encode(account), encode(room))],
);

/** ARGV: a, r, s, i. Returns the stream JSON, or false. */
export const removeStreamScript = defineScript(
  'removeStream',
  `
local a, r, s, i = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local v = redis.call('HGET', streamsKey(a, r), i)
if not v or string.sub(v, 1, #s + 1) ~= s .. '\\n' then return false end
redis.call('HDEL', streamsKey(a, r), i)
return string.sub(v, #s + 2)
`,
  (input: Seat & { streamId: string }) => [encode(input.account), encode(input.room), encode(input.socketId), encode(input.streamId)],
  asIs,
  ({ account, room }) => [k.streams(encode(account), encode(room))],
);

/** ARGV: a, r, s, message JSON, keep. */
export const messageScript = defineScript(
  'message',
  `
local a, r = ARGV[1], ARGV[2]
if redis.call('HEXISTS', seatsKey(a, r), ARGV[3]) == 0 then return 0 end
redis.call('RPUSH', messagesKey(a, r), ARGV[4])
redis.call('LTRIM', messagesKey(a, r), -num(ARGV[5]), -1)
return 1
`,
  (input: Seat & { message: RoomMessage; keep: number }) => [
    ...[encode(input.account), encode(input.room), encode(input.socketId)],
    ...[JSON.stringify(input.message), String(input.keep)],
  ],
  asIs,
  ({ account, room }) => [k.seats(encode(account), encode(room)), k.messages(encode(account), encode(room))],
);

/** Every room: {a, r, participants, streams}. */
export const listScript = defineScript(
  'list',
  `
local out = {}
for _, a in ipairs(redis.call('SMEMBERS', ACCTS)) do
  for _, r in ipairs(redis.call('SMEMBERS', roomsKey(a))) do
    out[#out + 1] = {a, r, redis.call('HLEN', seatsKey(a, r)), redis.call('HLEN', streamsKey(a, r))}
  end
end
return out
`,
  () => [],
  asIs,
  () => [k.accounts],
);

/**
 * ARGV: this instance, batch, live instances... Removes up to a batch of the participants of
 * one instance without a heartbeat. Returns {more, {{a, r, s, participant JSON, {stream JSON...}}...}}.
 */
export const sweepScript = defineScript(
  'sweep',
  `
local me, batch = ARGV[1], num(ARGV[2])
local live = {}
for k = 3, #ARGV do live[ARGV[k]] = true end
for _, i in ipairs(redis.call('SMEMBERS', INSTS)) do
  if i ~= me and not live[i] then
    local ik = instKey(i)
    local keys = {ik, sweptKey(i)}
    local seats = seatsOf(redis.call('HSCAN', ik, '0', 'COUNT', batch)[2], i, keys)
    local missing = declaring() and undeclared(keys)
    if missing then return missing end
    local out = {}
    for _, seat in ipairs(seats) do
      local a, r, s = seat.a, seat.r, seat.s
      redis.call('HDEL', ik, seat.field)
      if a then
        local left = leaveRoom(a, r, s, i)
        if left then
          out[#out + 1] = {a, r, s, left[1], left[2]}
          redis.call('HSET', sweptKey(i), seat.field, '1')
        end
      end
    end
    if #out > 0 then redis.call('PEXPIRE', sweptKey(i), SWEPT_TTL_MS) end
    if redis.call('EXISTS', ik) == 0 then redis.call('SREM', INSTS, i) end
    return {1, out}
  end
end
return {0, {}}
`,
  (input: { instance: string; batch: number; live: string[] }) => [input.instance, String(input.batch), ...input.live],
  asIs,
  // The dead instance's seats and their rooms: the script asks for their keys.
  () => [k.instances],
);

/**
 * Makes this instance's seats in one bucket what its sockets hold, after
 * Redis lost them (a restart, a failover). ARGV: inst, seat count, then per
 * seat a, r, s, u, participant JSON, stream count, then i, stream JSON per
 * stream. A seat still there is kept as it is; a missing one is written back
 * with its streams, outside the room bounds (its participant was admitted
 * already), unless another socket took its user's seat meanwhile, and a
 * stream unless another socket took its name. Seats and streams Redis holds
 * for this instance that no socket holds go.
 * Returns {{a, r, s, participant JSON, {stream JSON...}}... (seats gone),
 * {a, r, {stream JSON...}}... (streams gone), {a, r, s}... (seats lost),
 * {a, r, s, i}... (streams lost), {a, r, s, participant JSON, {stream
 * JSON...}}... (seats a sweep took, whose rooms heard them leave, written
 * back with these streams)}.
 */
export const restoreScript = defineScript(
  'restore',
  `
local inst = ARGV[1]
local seats, wanted = {}, {}
local at = 3
for _ = 1, num(ARGV[2]) do
  local seat = {a = ARGV[at], r = ARGV[at + 1], s = ARGV[at + 2], u = ARGV[at + 3], pj = ARGV[at + 4], streams = {}}
  local n = num(ARGV[at + 5])
  at = at + 6
  for k = 1, n do
    seat.streams[k] = {ARGV[at], ARGV[at + 1]}
    at = at + 2
  end
  seats[#seats + 1] = seat
  wanted[seat.a .. seat.r .. seat.s] = true
end
local ik = instKey(inst)
-- Seats Redis holds for this instance that no socket holds: found here, their keys asked for.
local stale, keys = {}, {}
local held = redis.call('HGETALL', ik)
for k = 1, #held, 2 do
  if not wanted[held[k]] then stale[#stale + 1], stale[#stale + 2] = held[k], held[k + 1] end
end
stale = seatsOf(stale, inst, keys)
local missing = declaring() and undeclared(keys)
if missing then return missing end
local departed, streamsGone, seatsLost, streamsLost, rejoined = {}, {}, {}, {}, {}
local swept = {}
local sweptFlat = redis.call('HGETALL', sweptKey(inst))
for k = 1, #sweptFlat, 2 do swept[sweptFlat[k]] = true end
for _, seat in ipairs(stale) do
  local a, r, s = seat.a, seat.r, seat.s
  local left = a and leaveRoom(a, r, s, inst)
  if left then departed[#departed + 1] = {a, r, s, left[1], left[2]} end
  redis.call('HDEL', ik, seat.field)
end
for _, seat in ipairs(seats) do
  local a, r, s, u = seat.a, seat.r, seat.s, seat.u
  local sk, uk, stk = seatsKey(a, r), usersKey(a, r), streamsKey(a, r)
  local present = redis.call('HEXISTS', sk, s) == 1
  local owner = redis.call('HGET', uk, u)
  if not present and owner and owner ~= s and redis.call('HEXISTS', sk, owner) == 1 then
    seatsLost[#seatsLost + 1] = {a, r, s}
  else
    if not present then
      redis.call('HSET', sk, s, u .. '\\n' .. inst .. '\\n' .. seat.pj)
      redis.call('SADD', roomsKey(a), r)
      redis.call('SADD', ACCTS, a)
    end
    redis.call('HSET', uk, u, s)
    redis.call('HSET', ik, a .. r .. s, a .. '\\n' .. r .. '\\n' .. s)
    redis.call('SADD', INSTS, inst)
    local keep, owners, gone = {}, {}, {}
    for _, st in ipairs(seat.streams) do keep[st[1]] = true end
    local have = redis.call('HGETALL', stk)
    for k = 1, #have, 2 do
      local o, sj = string.match(have[k + 1], '^([^\\n]*)\\n(.*)$')
      owners[have[k]] = o
      if o == s and not keep[have[k]] then
        redis.call('HDEL', stk, have[k])
        gone[#gone + 1] = sj
      end
    end
    if #gone > 0 then streamsGone[#streamsGone + 1] = {a, r, gone} end
    local back = {}
    for _, st in ipairs(seat.streams) do
      local o = owners[st[1]]
      if not o then
        redis.call('HSET', stk, st[1], s .. '\\n' .. st[2])
        back[#back + 1] = st[2]
      elseif o ~= s then streamsLost[#streamsLost + 1] = {a, r, s, st[1]} end
    end
    if not present and swept[a .. r .. s] then rejoined[#rejoined + 1] = {a, r, s, seat.pj, back} end
  end
end
redis.call('DEL', sweptKey(inst))
return {departed, streamsGone, seatsLost, streamsLost, rejoined}
`,
  ({ instance, seats }: { instance: string; seats: OwnSeat[] }) => {
    const args = [instance, String(seats.length)];
    for (const { account, room, socketId, participant, streams } of seats) {
      args.push(encode(account), encode(room), encode(socketId), encode(participant.name), JSON.stringify(participant));
      args.push(String(streams.size));
      for (const stream of streams.values()) args.push(encode(stream.streamId), JSON.stringify(stream));
    }
    return args;
  },
  asIs,
  // The keys of seats it finds in Redis that no socket holds, the script asks for.
  ({ instance, seats }) => [
    ...new Set([
      k.instanceSeats(instance),
      k.sweptSeats(instance),
      k.instances,
      ...seats.flatMap(({ account, room }) => seatKeys(instance, encode(account), encode(room))),
    ]),
  ],
);

/** Every room script, as one library of functions. */
export const roomsLibrary = defineLibrary('vw_rooms', [
  joinScript,
  leaveScript,
  addStreamScript,
  removeStreamScript,
  messageScript,
  listScript,
  sweepScript,
  restoreScript,
] as Script<never, unknown>[]);
