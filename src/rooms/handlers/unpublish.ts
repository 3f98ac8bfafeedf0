// `roomUnpublish {room, stream}`: the participant stops one of its streams;
// the room and its players hear it go.
import type { SignalingSocket } from '../../signaling/session';
import { RoomError, type RoomReplies } from '../replies';
import type { Seats } from '../seats';
import type { RoomStore } from '../store';

export interface RoomUnpublishDeps {
  store: Pick<RoomStore, 'removeStream'>;
  seats: Pick<Seats, 'release' | 'announceStreamsGone'>;
  replies: Pick<RoomReplies, 'refuse' | 'signedIn'>;
}

export const roomUnpublishHandler =
  ({ store, seats, replies }: RoomUnpublishDeps) =>
  async (socket: SignalingSocket, room: string, streamId: string) => {
    const identity = replies.signedIn(socket, room);
    if (!identity) return;
    const seat = socket.data.rooms?.get(room);
    if (!seat) return replies.refuse(socket, room, RoomError.notParticipant, 'notParticipant');
    const account = socket.data.account.name;
    const removed = await store.removeStream(account, room, streamId, socket.id);
    if (!removed || !seat.published.delete(removed.channel))
      return replies.refuse(socket, room, RoomError.notYourStream(streamId), 'notYourStream');
    await seats.release(socket, removed.channel);
    socket.emit('unpublish', identity.user, removed.channel);
    seats.announceStreamsGone(account, room, [removed]);
  };
