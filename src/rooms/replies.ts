// How the room events answer: a refusal goes to the one socket as
// `roomUpdate {room, error}`; a change goes to everyone in the room, on every
// instance, and once to the server events (webhooks, the console).
import type { Logger } from 'pino';
import type { Clock } from '../clock';
import { roomEventOf, type ServerEvents } from '../server-events';
import type { SignalingServer, SignalingSocket } from '../signaling/session';
import { MAX_STREAMS_PER_PARTICIPANT } from './limits';

/** The `error` of `roomUpdate {room, error}`: what the client shows. */
export const RoomError = {
  signIn: 'Rooms need a signed-in user: connect with user and PIN, or a signed access token',
  notParticipant: 'You are not a participant in this room',
  already: 'You are already a participant in this room',
  user: (user: string) => `${user} is already in this room from another connection`,
  rooms: (max: number) => `Room limit reached: this account may hold ${max} rooms`,
  participants: (max: number) => `Room is full: ${max} participants`,
  invalid: (event: string, why: string) => `Invalid ${event}: ${why}`,
  parameters: 'Invalid stream parameters for publishing.',
  streamType: (type: unknown) => `Unsupported stream type: ${String(type)}`,
  streamExists: (stream: string) => `Stream ${stream} is already published`,
  streamsPerParticipant: `Stream limit reached: ${MAX_STREAMS_PER_PARTICIPANT} streams per participant`,
  notYourStream: (stream: string) => `Stream ${stream} is not published by you in this room`,
  messageSize: (max: number) => `Message too large: at most ${max} bytes`,
  chatRate: 'Too many messages, slow down',
  unavailable: 'Rooms are unavailable, try again',
} as const;

/** The Socket.IO room of an account's room: names JSON-encoded, so no two pairs meet. */
export const roomKey = (account: string, room: string) => `room:${JSON.stringify([account, room])}`;

/** The fields every log line about a participant's socket starts with. */
export const bindings = (socket: Pick<SignalingSocket, 'id' | 'data'>) => ({
  socket: socket.id,
  account: socket.data.account.name,
  user: socket.data.identity?.user,
});

export interface RoomReplies {
  /** Tells the socket its room event was refused; `why` goes to the log only. */
  refuse(socket: SignalingSocket, room: string, error: string, why: string): void;
  /** Sends a change to everyone in the room, on every instance. */
  broadcast(account: string, room: string, update: Record<string, unknown>): void;
  /** The socket's signed-in user, or undefined (and the socket told) when there is none. */
  signedIn(socket: SignalingSocket, room: string): NonNullable<SignalingSocket['data']['identity']> | undefined;
}

export function createRoomReplies({
  io,
  log,
  events,
  clock,
}: {
  io: SignalingServer;
  log: Logger;
  events?: ServerEvents | undefined;
  clock: Pick<Clock, 'now'>;
}): RoomReplies {
  function refuse(socket: SignalingSocket, room: string, error: string, why: string) {
    socket.emit('roomUpdate', { room, error });
    log.info({ ...bindings(socket), room, why }, 'room event refused');
  }
  return {
    refuse,
    broadcast(account, room, update) {
      const sent = { ...update, room, timestamp: clock.now() };
      io.to(roomKey(account, room)).emit('roomUpdate', sent);
      // Reported once, by the instance that made the change.
      const event = events?.active ? roomEventOf(sent) : undefined;
      if (event) events?.emit(event.type, account, event.data);
    },
    signedIn(socket, room) {
      if (socket.data.identity) return socket.data.identity;
      refuse(socket, room, RoomError.signIn, 'signIn');
      return undefined;
    },
  };
}
