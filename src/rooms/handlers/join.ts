// `roomJoin {room}`: a signed-in user becomes a participant, gets the room
// as it is, and becomes a player of every stream already published there.
import type { Logger } from 'pino';
import type { Clock } from '../../clock';
import type { SignalingSocket } from '../../signaling/session';
import { JOIN_HISTORY, type RoomLimits } from '../limits';
import { bindings, roomKey, RoomError, type RoomReplies } from '../replies';
import type { Seats } from '../seats';
import type { RoomRefusal, RoomStore } from '../store';

export interface RoomJoinDeps {
  store: Pick<RoomStore, 'join' | 'leave'>;
  seats: Pick<Seats, 'subscribeSeat' | 'announceDeparture'>;
  replies: RoomReplies;
  limits: Pick<RoomLimits, 'maxRooms' | 'maxParticipants'>;
  clock: Pick<Clock, 'now'>;
  log: Logger;
  /** Resolves once messages other instances send to a Socket.IO room reach this one (a cluster's adapter). */
  roomSubscribed?: ((room: string) => Promise<void>) | undefined;
}

export const roomJoinHandler = ({ store, seats, replies, limits, clock, log, roomSubscribed }: RoomJoinDeps) => {
  const refusalText: Record<RoomRefusal, (user: string) => string> = {
    already: () => RoomError.already,
    user: (user) => RoomError.user(user),
    rooms: () => RoomError.rooms(limits.maxRooms),
    participants: () => RoomError.participants(limits.maxParticipants),
  };

  return async function roomJoin(socket: SignalingSocket, room: string) {
    const identity = replies.signedIn(socket, room);
    if (!identity) return;
    if (socket.data.rooms?.has(room)) return replies.refuse(socket, room, RoomError.already, 'already');
    const account = socket.data.account.name;
    const key = roomKey(account, room);
    // In the Socket.IO room before the store answers, so no change is missed:
    // on a Redis Cluster that includes this instance's subscription to the room.
    await socket.join(key);
    await roomSubscribed?.(key);
    const participant = { name: identity.user, joinedAt: clock.now() };
    const result = await store.join({
      account,
      room,
      socketId: socket.id,
      participant,
      maxRooms: limits.maxRooms,
      maxParticipants: limits.maxParticipants,
      history: JOIN_HISTORY,
    });
    if (!result.ok) {
      await socket.leave(key);
      return replies.refuse(socket, room, refusalText[result.refusal](identity.user), result.refusal);
    }
    if (!socket.connected) {
      const departure = await store.leave(account, room, socket.id);
      if (departure) seats.announceDeparture(departure);
      return;
    }
    (socket.data.rooms ??= new Map()).set(room, { published: new Set(), subscribed: new Map() });
    socket.emit('roomUpdate', { room, ...result.view, type: 'roomJoin' });
    replies.broadcast(account, room, { participantJoin: participant });
    for (const stream of Object.values(result.view.streams))
      if (stream.socketId !== socket.id && stream.type === 'webrtc')
        await seats.subscribeSeat(socket, room, { channel: stream.channel, publisher: stream.user });
    log.debug({ ...bindings(socket), room, participants: Object.keys(result.view.participants).length }, 'joined room');
  };
};
