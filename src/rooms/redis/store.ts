// Rooms shared by several instances through Redis: each change is one Lua
// script (scripts.ts). Each instance records the participants it seated, so
// that when it dies (it leaves the channel registry's live instances)
// another instance removes them and their rooms hear them leave. It also
// keeps them in memory (own-seats.ts), so that when Redis lost them (a
// restart without persistence, a failover) it writes them back.
import type { Logger } from 'pino';
import { createExclusiveGate } from '../../channels/redis/gate';
import { keyLayout } from '../../channels/redis/keys';
import { createScriptRunner, type RedisCommands, type Script } from '../../channels/redis/scripts';
import {
  bySummary,
  type RoomDeparture,
  type RoomJoinResult,
  type RoomMessage,
  type RoomParticipant,
  type RoomRefusal,
  type RoomRestore,
  type RoomStore,
  type RoomStream,
  type RoomSummary,
} from '../store';
import {
  addStreamScript,
  after,
  decode,
  encode,
  joinScript,
  leaveScript,
  list,
  listScript,
  messageScript,
  pairs,
  refusals,
  removeStreamScript,
  restoreScript,
  roomsLibrary,
  sweepScript,
} from './scripts';
import { createOwnSeats } from './own-seats';

export interface RedisRoomStoreOptions {
  client: RedisCommands;
  prefix: string;
  /** Buckets the accounts are spread over, as in the channel registry (channels/redis/keys.ts). */
  buckets?: number;
  instanceId: string;
  log: Logger;
}

export interface RedisRoomStore extends RoomStore {
  /** Removes the participants of instances whose heartbeat expired; returns who left. */
  sweep(): Promise<RoomDeparture[]>;
  /** Redis may have lost this instance's seats (the channel registry found it unknown, or a failover): restore them. */
  resync(): void;
  /** Writes this instance's seats back when a resync is due (or a change failed); undefined when none was. */
  restoreIfDue(): Promise<RoomRestore | undefined>;
}

const SWEEP_BATCH = 200;
const SWEEP_MAX_BATCHES = 50;

/** A seat with its streams as the sweep and restore scripts list it: {a, r, s, participant JSON, {stream JSON...}}. */
function departureOf(entry: unknown): RoomDeparture {
  const [a, r, s, participant, streams] = list(entry);
  return {
    account: decode(String(a)),
    room: decode(String(r)),
    socketId: decode(String(s)),
    participant: JSON.parse(String(participant)) as RoomParticipant,
    streams: list(streams).map((v) => JSON.parse(String(v)) as RoomStream),
  };
}

export function createRedisRoomStore({ client, prefix, buckets = 1, instanceId, log }: RedisRoomStoreOptions): RedisRoomStore {
  let closed = false;
  const keys = keyLayout(prefix, buckets);
  const own = createOwnSeats();
  // A restore compares all of this instance's seats: changes to them wait while it runs.
  const gate = createExclusiveGate();
  /** Set when Redis may differ from what this instance's sockets hold. */
  let restoreDue = false;
  /** An instance that never asked for a seat has none in Redis: nothing to restore. */
  let everSeated = false;

  // The keys a script touches are declared on a Redis Cluster only, as the channel registry does.
  const redis = createScriptRunner(client, { library: roomsLibrary, declareKeys: keys.buckets.length > 1 });
  const { send } = redis;
  function run<Input>(script: Script<Input, unknown>, base: string, input: Input): Promise<unknown> {
    if (closed) return Promise.reject(new Error('room store closed'));
    return redis.run(script, base, input);
  }
  /** A change to this instance's seats; one that fails (its reply lost) is repaired by the next restore. */
  const change = <T>(task: () => Promise<T>) =>
    gate.shared(async () => {
      try {
        return await task();
      } catch (err) {
        restoreDue = true;
        throw err;
      }
    });
  const bucket = (account: string) => keys.bucketOf(encode(account));

  const streamsOf = (flat: unknown) =>
    Object.fromEntries(pairs(flat).map(([field, value]) => [decode(field), JSON.parse(after(value, 1)) as RoomStream] as const));

  async function restore(): Promise<RoomRestore> {
    const result: RoomRestore = { departures: [], streamsGone: [], seatsLost: [], streamsLost: [], rejoined: [] };
    const byBucket = own.byBucket(keys.buckets, (account) => bucket(account));
    const replies = await Promise.all([...byBucket].map(([base, seats]) => run(restoreScript, base, { instance: instanceId, seats })));
    for (const reply of replies) {
      const [departed, streamsGone, seatsLost, streamsLost, rejoined] = list(reply);
      result.departures.push(...list(departed).map(departureOf));
      result.rejoined.push(...list(rejoined).map(departureOf));
      for (const entry of list(streamsGone)) {
        const [a, r, streams] = list(entry);
        const gone = list(streams).map((v) => JSON.parse(String(v)) as RoomStream);
        result.streamsGone.push({ account: decode(String(a)), room: decode(String(r)), streams: gone });
      }
      for (const entry of list(seatsLost)) {
        const [a, r, s] = list(entry).map((v) => decode(String(v)));
        result.seatsLost.push({ account: a ?? '', room: r ?? '', socketId: s ?? '' });
      }
      for (const entry of list(streamsLost)) {
        const [a, r, s, i] = list(entry).map((v) => decode(String(v)));
        result.streamsLost.push({ account: a ?? '', room: r ?? '', socketId: s ?? '', streamId: i ?? '' });
      }
    }
    for (const { account, room, socketId } of result.seatsLost) own.left(account, room, socketId);
    for (const { account, room, socketId, streamId } of result.streamsLost) own.unpublished(account, room, socketId, streamId);
    const changed = Object.values(result).reduce((n, changes: unknown[]) => n + changes.length, 0);
    log.info({ seats: own.size, changed }, "this instance's room seats written back to Redis");
    return result;
  }

  return {
    join: ({ account, room, socketId, participant, maxRooms, maxParticipants, history }) =>
      change(async (): Promise<RoomJoinResult> => {
        everSeated = true;
        const reply = list(
          await run(joinScript, bucket(account), {
            instance: instanceId,
            account,
            room,
            socketId,
            participant,
            maxRooms,
            maxParticipants,
            history,
          }),
        );
        const [outcome, seats, streams, messages] = reply;
        if (outcome !== 'ok') {
          if (refusals.includes(outcome as RoomRefusal)) return { ok: false, refusal: outcome as RoomRefusal };
          throw new Error(`unexpected reply from Redis: ${String(outcome)}`);
        }
        own.seated(account, room, socketId, participant);
        const participants = Object.fromEntries(
          pairs(seats).map(([field, value]) => [decode(field), JSON.parse(after(value, 2)) as RoomParticipant] as const),
        );
        return {
          ok: true,
          view: {
            participants,
            streams: streamsOf(streams),
            messages: list(messages).map((m) => JSON.parse(String(m)) as RoomMessage),
            meta: {},
          },
        };
      }),

    leave: (account, room, socketId) =>
      change(async () => {
        // The socket has left whatever Redis answers.
        own.left(account, room, socketId);
        const reply = await run(leaveScript, bucket(account), { instance: instanceId, account, room, socketId });
        if (!Array.isArray(reply)) return null;
        return departureOf([encode(account), encode(room), encode(socketId), ...reply]);
      }),

    addStream: (account, room, stream, maxPerParticipant) =>
      change(async () => {
        const reply = await run(addStreamScript, bucket(account), { account, room, stream, maxPerParticipant });
        if (reply === 'ok') own.published(account, room, stream);
        if (reply === 'ok' || reply === 'exists' || reply === 'absent' || reply === 'tooMany') return reply;
        throw new Error(`unexpected reply from Redis: ${String(reply)}`);
      }),

    removeStream: (account, room, streamId, socketId) =>
      change(async () => {
        const reply = await run(removeStreamScript, bucket(account), { account, room, socketId, streamId });
        if (typeof reply !== 'string') return null;
        own.unpublished(account, room, socketId, streamId);
        return JSON.parse(reply) as RoomStream;
      }),

    async addMessage(account, room, socketId, message, keep) {
      const reply = await run(messageScript, bucket(account), { account, room, socketId, message, keep });
      return reply === 1;
    },

    async list() {
      const replies = await Promise.all(keys.buckets.map((base) => run(listScript, base, undefined)));
      const rooms: RoomSummary[] = replies.flatMap(list).map((entry) => {
        const [a, r, participants, streams] = list(entry);
        return { account: decode(String(a)), room: decode(String(r)), participants: Number(participants), streams: Number(streams) };
      });
      return rooms.sort(bySummary);
    },

    async sweep() {
      const departures: RoomDeparture[] = [];
      // The channel registry's live instances: those with seats that are not among them are dead.
      const live = list(await send(['SMEMBERS', keys.instances], keys.instances)).map(String);
      // The buckets at once (on a Redis Cluster, 120 of them): each shard gets its share of
      // the calls together instead of one round trip per bucket, each waking it on its own.
      const swept = await Promise.all(
        keys.buckets.map(async (base) => {
          const found: RoomDeparture[] = [];
          for (let batch = 0; batch < SWEEP_MAX_BATCHES; batch++) {
            const [more, entries] = list(await run(sweepScript, base, { instance: instanceId, batch: SWEEP_BATCH, live }));
            found.push(...list(entries).map(departureOf));
            if (more !== 1) break;
          }
          return found;
        }),
      );
      departures.push(...swept.flat());
      if (departures.length)
        log.warn({ participants: departures.length }, 'participants of an instance that stopped answering left their rooms');
      return departures;
    },

    resync: () => void (restoreDue = true),

    async restoreIfDue() {
      if (!restoreDue || closed) return undefined;
      restoreDue = false;
      if (!everSeated) return undefined;
      try {
        return await gate.exclusive(restore);
      } catch (err) {
        restoreDue = true;
        throw err;
      }
    },

    // The participants of this instance's sockets leave with the sockets (app close).
    close: async () => {
      closed = true;
      own.clear();
    },
  };
}
