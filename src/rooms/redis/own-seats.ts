// What this instance seated in Redis, as Redis confirmed it: per socket, its
// account, room, participant and streams there. Sockets here hold exactly
// these seats, so after Redis lost them (a restart without persistence, a
// failover that lost the last writes) the instance writes them back.
import type { RoomParticipant, RoomStream } from '../store';
import { encode } from './scripts';

export interface OwnSeat {
  account: string;
  room: string;
  socketId: string;
  participant: RoomParticipant;
  /** By stream id. */
  streams: Map<string, RoomStream>;
}

export function createOwnSeats() {
  const seats = new Map<string, OwnSeat>();
  const ref = (account: string, room: string, socketId: string) => encode(account) + encode(room) + encode(socketId);

  return {
    seated(account: string, room: string, socketId: string, participant: RoomParticipant) {
      seats.set(ref(account, room, socketId), { account, room, socketId, participant, streams: new Map() });
    },
    left(account: string, room: string, socketId: string) {
      seats.delete(ref(account, room, socketId));
    },
    published(account: string, room: string, stream: RoomStream) {
      seats.get(ref(account, room, stream.socketId))?.streams.set(stream.streamId, stream);
    },
    unpublished(account: string, room: string, socketId: string, streamId: string) {
      seats.get(ref(account, room, socketId))?.streams.delete(streamId);
    },
    /** The seats, by the bucket (its base) of their account; every bucket has an entry. */
    byBucket(buckets: readonly string[], bucketOf: (account: string) => string) {
      const result = new Map(buckets.map((base) => [base, [] as OwnSeat[]]));
      for (const seat of seats.values()) result.get(bucketOf(seat.account))?.push(seat);
      return result;
    },
    get size() {
      return seats.size;
    },
    clear: () => seats.clear(),
  };
}

export type OwnSeats = ReturnType<typeof createOwnSeats>;
