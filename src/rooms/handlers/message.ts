// `roomMessage {room, message}`: a chat message, stamped with its sender and
// time, kept in the room's history and sent to everyone in the room.
import type { Clock } from '../../clock';
import type { Telemetry } from '../../metrics';
import { takeEvent } from '../../signaling/rate-limits';
import type { SignalingSocket } from '../../signaling/session';
import { jsonBytes, type RoomLimits } from '../limits';
import { RoomError, type RoomReplies } from '../replies';
import type { RoomStore } from '../store';

export interface RoomMessageDeps {
  store: Pick<RoomStore, 'addMessage'>;
  replies: RoomReplies;
  limits: Pick<RoomLimits, 'chatPerSecond' | 'maxMessageBytes' | 'history'>;
  telemetry: Pick<Telemetry, 'refused'>;
  /** Counts a chat message relayed (metrics). */
  chatRelayed: () => void;
  clock: Clock;
}

export const roomMessageHandler =
  ({ store, replies, limits, telemetry, chatRelayed, clock }: RoomMessageDeps) =>
  async (socket: SignalingSocket, room: string, message: Record<string, unknown>) => {
    const identity = replies.signedIn(socket, room);
    if (!identity) return;
    // Refused, never broadcast: the sender must be in the room.
    if (!socket.data.rooms?.has(room)) return replies.refuse(socket, room, RoomError.notParticipant, 'notParticipant');
    const t = clock.monotonic();
    const bucket = (socket.data.chat ??= { tokens: limits.chatPerSecond, refilledAt: t });
    if (!takeEvent(bucket, limits.chatPerSecond, t)) {
      telemetry.refused('rate');
      return replies.refuse(socket, room, RoomError.chatRate, 'chatRate');
    }
    // The client's fields, then the server's: a spoofed user or time is overwritten.
    const stamped = { ...message, user: identity.user, timestamp: clock.now() };
    if (jsonBytes(stamped) > limits.maxMessageBytes)
      return replies.refuse(socket, room, RoomError.messageSize(limits.maxMessageBytes), 'messageSize');
    const account = socket.data.account.name;
    if (!(await store.addMessage(account, room, socket.id, stamped, limits.history)))
      return replies.refuse(socket, room, RoomError.notParticipant, 'notParticipant');
    replies.broadcast(account, room, { messageNew: stamped });
    chatRelayed();
  };
