// `roomLeave {room}`: the participant leaves; its streams go with it.
import type { SignalingSocket } from '../../signaling/session';
import { RoomError, type RoomReplies } from '../replies';
import type { Seats } from '../seats';

export const roomLeaveHandler =
  ({ seats, replies }: { seats: Pick<Seats, 'leaveRoom'>; replies: Pick<RoomReplies, 'refuse'> }) =>
  async (socket: SignalingSocket, room: string) => {
    if (!(await seats.leaveRoom(socket, room))) replies.refuse(socket, room, RoomError.notParticipant, 'notParticipant');
  };
