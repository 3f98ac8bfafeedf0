// A participant's seat in a room: the channel registrations it holds there
// under its user (see RoomSeat), apart from the socket's own
// `publish`/`subscribe` registration. A participant publishes its own
// streams and is a player in everyone else's; when a stream comes or goes,
// every participant on every instance follows, each in its own queue.
import type { Logger } from 'pino';
import type { ChannelRegistry, JoinRefusal } from '../channels/registry';
import type { Telemetry } from '../metrics';
import { unfitMessage, uniquenessMessage, type InterServerEvents, type ServerMessage } from '../protocol';
import { subscribeRefusal } from '../auth/rights';
import type { RecordFailure } from '../signaling/failures';
import type { CountRefusal } from '../signaling/handlers/join';
import { enqueue } from '../signaling/queue';
import { roomChannels, type SignalingServer, type SignalingSocket } from '../signaling/session';
import { bindings, roomKey, RoomError, type RoomReplies } from './replies';
import type { RoomDeparture, RoomStore, RoomStream } from './store';

/** A room stream's channel and who publishes it. */
export interface StreamRef {
  channel: string;
  publisher: string;
}

export interface SeatsDeps {
  io: SignalingServer;
  store: Pick<RoomStore, 'leave'>;
  registry: Pick<ChannelRegistry, 'join' | 'leave'>;
  telemetry: Pick<Telemetry, 'refused'>;
  replies: RoomReplies;
  log: Logger;
  countRefusal: CountRefusal;
  recordFailure: RecordFailure;
  accountMaxChannels: number;
  accountMaxPeers: number;
  /** Tells a channel's remaining peers that `peerID` left (signaling's close message). */
  announceLeave: (peerID: string, channel: string, socketIds: string[]) => void;
  /** Sends to one socket, on this instance or another. */
  deliver: (socketId: string, event: 'message', payload: ServerMessage) => void;
  /** Whether other instances share the rooms (they hear of new and removed streams). */
  clustered: boolean;
}

/** The refusal text of a channel join, as `publish`/`subscribe` would say it. */
export const joinRefusalText = (refusal: JoinRefusal, peerID: string, channel: string) =>
  refusal === 'uniqueness' ? uniquenessMessage(peerID, channel) : unfitMessage([refusal]);

export type Seats = ReturnType<typeof createSeats>;

export function createSeats(deps: SeatsDeps) {
  const { io, store, registry, telemetry, replies, countRefusal, recordFailure, log } = deps;
  const failed = (what: string) => (socket: SignalingSocket, err: unknown) => void recordFailure(what, bindings(socket), err);
  const failedSubscribe = failed('room subscription');
  const failedRelease = failed('room stream release');

  /**
   * This instance's sockets in the room's Socket.IO room. A joiner is there
   * before its seat is made; work queued for it runs after its roomJoin, so
   * it finds the seat.
   */
  function localSockets(account: string, room: string) {
    const ids = io.sockets.adapter.rooms.get(roomKey(account, room));
    const sockets: SignalingSocket[] = [];
    for (const id of ids ?? []) {
      const socket = io.sockets.sockets.get(id);
      if (socket) sockets.push(socket);
    }
    return sockets;
  }

  const holds = (socket: SignalingSocket, channel: string) =>
    socket.data.registration?.channel === channel || roomChannels(socket.data).has(channel);

  /** Lets go of a channel registration no seat and no `publish`/`subscribe` holds any more; its channel hears the user leave. */
  async function release(socket: SignalingSocket, channel: string) {
    const user = socket.data.identity?.user;
    if (!user || holds(socket, channel)) return;
    const remaining = await registry.leave(socket.data.account.name, channel, user, socket.id);
    if (remaining)
      deps.announceLeave(
        user,
        channel,
        remaining.map((p) => p.socketId),
      );
  }

  /** Makes the socket a player of `channel` (another participant's stream); its publisher gets the usual `peer`. */
  async function subscribeSeat(socket: SignalingSocket, room: string, { channel, publisher }: StreamRef) {
    const seat = socket.data.rooms?.get(room);
    const { identity, account } = socket.data;
    if (!seat || !identity || seat.published.has(channel) || seat.subscribed.has(channel)) return;
    if (holds(socket, channel)) return void seat.subscribed.set(channel, publisher);
    const denied = subscribeRefusal({ identity, peerID: identity.user, channel });
    if (denied) return replies.refuse(socket, room, denied.message, denied.issue);
    const result = await registry.join({
      account: account.name,
      channel,
      peerID: identity.user,
      socketId: socket.id,
      role: 'player',
      plan: account.plan,
      maxChannels: deps.accountMaxChannels,
      maxPeers: deps.accountMaxPeers,
    });
    if (!result.ok) {
      if (result.refusal !== 'uniqueness') await countRefusal(socket, account.name, 'subscribe', [result.refusal]);
      telemetry.refused(result.refusal);
      return replies.refuse(socket, room, joinRefusalText(result.refusal, identity.user, channel), result.refusal);
    }
    // The socket may have left the room while the registry answered.
    if (socket.data.rooms?.get(room) !== seat || !socket.connected) return release(socket, channel);
    seat.subscribed.set(channel, publisher);
    if (result.publisher && result.isNew)
      deps.deliver(result.publisher.socketId, 'message', {
        type: 'peer',
        from: identity.user,
        target: result.publisher.peerID,
        peerID: identity.user,
      });
  }

  /** Every participant of the room on this instance becomes a player of a new stream, in its own queue. */
  function streamAdded(account: string, room: string, channel: string, publisher: string) {
    for (const socket of localSockets(account, room))
      if (socket.data.identity?.user !== publisher)
        enqueue(socket, (s: SignalingSocket, stream: StreamRef) => subscribeSeat(s, room, stream), { channel, publisher }, failedSubscribe);
  }

  /** Every participant of the room on this instance stops being a player of a removed stream. */
  function streamRemoved(account: string, room: string, channel: string) {
    const unsubscribe = async (socket: SignalingSocket, c: string) => {
      if (socket.data.rooms?.get(room)?.subscribed.delete(c)) await release(socket, c);
    };
    for (const socket of localSockets(account, room)) enqueue(socket, unsubscribe, channel, failedRelease);
  }

  function tellInstances(change: Parameters<InterServerEvents['roomStream']>[0]) {
    if (deps.clustered) io.serverSideEmit('roomStream', change);
  }

  io.on('roomStream', (change) => {
    if (change.gone) streamRemoved(change.account, change.room, change.channel);
    else streamAdded(change.account, change.room, change.channel, change.publisher);
  });

  /** A new stream: the room hears of it, and its participants here and on the other instances subscribe. */
  function announceStream(account: string, room: string, stream: RoomStream) {
    replies.broadcast(account, room, { streamNew: stream });
    streamAdded(account, room, stream.channel, stream.user);
    tellInstances({ account, room, channel: stream.channel, publisher: stream.user, gone: false });
  }

  /** What the room and the other instances hear when streams are gone. */
  function announceStreamsGone(account: string, room: string, streams: RoomStream[]) {
    for (const stream of streams) {
      replies.broadcast(account, room, { streamRemove: stream.streamId });
      streamRemoved(account, room, stream.channel);
      tellInstances({ account, room, channel: stream.channel, publisher: stream.user, gone: true });
    }
  }

  function announceDeparture({ account, room, participant, streams }: RoomDeparture) {
    announceStreamsGone(account, room, streams);
    replies.broadcast(account, room, { participantLeft: participant });
  }

  /** Takes the socket out of the room and lets go of its channels there; false when it was not in it. */
  async function leaveRoom(socket: SignalingSocket, room: string) {
    const seat = socket.data.rooms?.get(room);
    if (!seat) return false;
    const account = socket.data.account.name;
    // Out of the seat first: `release` must see the room's channels as let go.
    socket.data.rooms?.delete(room);
    if (socket.data.rooms?.size === 0) socket.data.rooms = undefined;
    void socket.leave(roomKey(account, room));
    const departure = await store.leave(account, room, socket.id);
    const user = socket.data.identity?.user ?? '';
    for (const channel of seat.published) {
      await release(socket, channel);
      if (socket.connected) socket.emit('unpublish', user, channel);
    }
    for (const channel of seat.subscribed.keys()) await release(socket, channel);
    if (departure) announceDeparture(departure);
    log.debug({ ...bindings(socket), room }, 'left room');
    return true;
  }

  /** The socket's seat could not be put back in Redis (its user took another meanwhile): it leaves here too. */
  async function forfeitSeat(socket: SignalingSocket, room: string) {
    const user = socket.data.identity?.user ?? '';
    if (await leaveRoom(socket, room)) replies.refuse(socket, room, RoomError.user(user), 'user');
  }

  /** The socket's stream could not be put back in Redis (another took its name meanwhile): it stops publishing it. */
  async function forfeitStream(socket: SignalingSocket, room: string, streamId: string) {
    const seat = socket.data.rooms?.get(room);
    // A room stream's channel is its stream id.
    if (!seat?.published.delete(streamId)) return;
    await release(socket, streamId);
    if (socket.connected) socket.emit('unpublish', socket.data.identity?.user ?? '', streamId);
    replies.refuse(socket, room, RoomError.streamExists(streamId), 'streamExists');
  }

  return { release, subscribeSeat, announceStream, announceStreamsGone, announceDeparture, leaveRoom, forfeitSeat, forfeitStream };
}
