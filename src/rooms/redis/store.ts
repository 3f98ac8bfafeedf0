// Rooms shared by several instances through Redis: each change is one Lua
// script (scripts.ts). Each instance records the participants it seated, so
// that when it dies (it leaves the channel registry's live instances)
// another instance removes them and their rooms hear them leave.
import type { Logger } from 'pino';
import { keyLayout } from '../../channels/redis/keys';
import type { RedisCommands } from '../../channels/redis/scripts';
import {
  bySummary,
  type RoomDeparture,
  type RoomJoinResult,
  type RoomMessage,
  type RoomParticipant,
  type RoomRefusal,
  type RoomStore,
  type RoomStream,
  type RoomSummary,
} from '../store';
import {
  addStreamScript,
  after,
  createRoomScriptRunner,
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
  sweepScript,
  type Script,
} from './scripts';

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
}

const SWEEP_BATCH = 200;
const SWEEP_MAX_BATCHES = 50;

export function createRedisRoomStore({ client, prefix, buckets = 1, instanceId, log }: RedisRoomStoreOptions): RedisRoomStore {
  let closed = false;
  const keys = keyLayout(prefix, buckets);

  const redis = createRoomScriptRunner(client);
  const { send } = redis;
  function run(s: Script, base: string, args: string[]): Promise<unknown> {
    if (closed) return Promise.reject(new Error('room store closed'));
    return redis.run(s, base, args);
  }
  const bucket = (account: string) => keys.bucketOf(encode(account));

  const streamsOf = (flat: unknown) =>
    Object.fromEntries(pairs(flat).map(([field, value]) => [decode(field), JSON.parse(after(value, 1)) as RoomStream] as const));

  return {
    async join({ account, room, socketId, participant, maxRooms, maxParticipants, history }): Promise<RoomJoinResult> {
      const reply = list(
        await run(joinScript, bucket(account), [
          instanceId,
          encode(account),
          encode(room),
          encode(socketId),
          encode(participant.name),
          JSON.stringify(participant),
          String(maxRooms),
          String(maxParticipants),
          String(history),
        ]),
      );
      const [outcome, seats, streams, messages] = reply;
      if (outcome !== 'ok') {
        if (refusals.includes(outcome as RoomRefusal)) return { ok: false, refusal: outcome as RoomRefusal };
        throw new Error(`unexpected reply from Redis: ${String(outcome)}`);
      }
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
    },

    async leave(account, room, socketId) {
      const reply = await run(leaveScript, bucket(account), [encode(account), encode(room), encode(socketId)]);
      if (!Array.isArray(reply)) return null;
      const [participant, streams] = reply;
      return {
        account,
        room,
        socketId,
        participant: JSON.parse(String(participant)) as RoomParticipant,
        streams: list(streams).map((s) => JSON.parse(String(s)) as RoomStream),
      };
    },

    async addStream(account, room, stream, maxPerParticipant) {
      const reply = await run(addStreamScript, bucket(account), [
        encode(account),
        encode(room),
        encode(stream.socketId),
        encode(stream.streamId),
        JSON.stringify(stream),
        String(maxPerParticipant),
      ]);
      if (reply === 'ok' || reply === 'exists' || reply === 'absent' || reply === 'tooMany') return reply;
      throw new Error(`unexpected reply from Redis: ${String(reply)}`);
    },

    async removeStream(account, room, streamId, socketId) {
      const reply = await run(removeStreamScript, bucket(account), [encode(account), encode(room), encode(socketId), encode(streamId)]);
      return typeof reply === 'string' ? (JSON.parse(reply) as RoomStream) : null;
    },

    async addMessage(account, room, socketId, message, keep) {
      const reply = await run(messageScript, bucket(account), [
        encode(account),
        encode(room),
        encode(socketId),
        JSON.stringify(message),
        String(keep),
      ]);
      return reply === 1;
    },

    async list() {
      const replies = await Promise.all(keys.buckets.map((base) => run(listScript, base, [])));
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
      for (const base of keys.buckets)
        for (let batch = 0; batch < SWEEP_MAX_BATCHES; batch++) {
          const [more, entries] = list(await run(sweepScript, base, [instanceId, String(SWEEP_BATCH), ...live]));
          for (const entry of list(entries)) {
            const [a, r, s, participant, streams] = list(entry);
            departures.push({
              account: decode(String(a)),
              room: decode(String(r)),
              socketId: decode(String(s)),
              participant: JSON.parse(String(participant)) as RoomParticipant,
              streams: list(streams).map((v) => JSON.parse(String(v)) as RoomStream),
            });
          }
          if (more !== 1) break;
        }
      if (departures.length)
        log.warn({ participants: departures.length }, 'participants of an instance that stopped answering left their rooms');
      return departures;
    },

    // The participants of this instance's sockets leave with the sockets (app close).
    close: async () => void (closed = true),
  };
}
