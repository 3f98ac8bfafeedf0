// Room events (roomJoin, roomLeave, roomPublish, roomUnpublish, roomMessage)
// as thin handlers: validate -> decide (rights, plan, room bounds) -> apply
// (room store, channel registry) -> emit `roomUpdate`. A participant is a
// signed-in user; in a room its socket publishes its own streams and is a
// player in everyone else's, each an extra registration in the channel
// registry under the user's name (see RoomSeat), apart from the socket's own
// `publish`/`subscribe` registration.
import type { Logger } from 'pino';
import { z } from 'zod';
import { publishRefusal, subscribeRefusal } from '../auth/rights';
import type { ChannelRegistry, JoinRefusal } from '../channels/registry';
import type { PeerConfig } from '../ice';
import { streamIssues } from '../limits';
import type { Telemetry } from '../metrics';
import { RATE_LIMITED, unfitMessage, uniquenessMessage, type EventSchemas, type InterServerEvents, type ServerMessage } from '../protocol';
import { roomEventOf, type ServerEvents } from '../server-events';
import { takeEvent } from '../signaling/rate-limits';
import { enqueue, maxPendingEvents, roomChannels, type SignalingServer, type SignalingSocket } from '../signaling/session';
import type { RoomDeparture, RoomRefusal, RoomStore, RoomStream } from './store';

/** Messages a joiner gets from the history, as upstream. */
export const JOIN_HISTORY = 10;
/** Streams one participant may publish in one room. */
export const MAX_STREAMS_PER_PARTICIPANT = 4;
/** Bytes of a stream's `parameters` (kept in the room and sent to every joiner). */
export const MAX_PARAMETERS_BYTES = 2048;

export interface RoomLimits {
  /** ROOM_MAX_PER_ACCOUNT */
  maxRooms: number;
  /** ROOM_MAX_PARTICIPANTS */
  maxParticipants: number;
  /** ROOM_MAX_MESSAGE_BYTES */
  maxMessageBytes: number;
  /** ROOM_CHAT_PER_SECOND */
  chatPerSecond: number;
  /** ROOM_HISTORY */
  history: number;
}

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

export interface RoomDeps {
  io: SignalingServer;
  store: RoomStore;
  registry: ChannelRegistry;
  schemas: EventSchemas;
  peerConfig: (account: string) => PeerConfig;
  log: Logger;
  telemetry: Telemetry;
  limits: RoomLimits;
  maxNameLength: number;
  eventsPerSecond: number;
  accountMaxChannels: number;
  accountMaxPeers: number;
  /** Tells a channel's remaining peers that `peerID` left (signaling's close message). */
  announceLeave: (peerID: string, channel: string, socketIds: string[]) => void;
  /** Sends to one socket, on this instance or another. */
  deliver: (socketId: string, event: 'message', payload: ServerMessage) => void;
  /** Counts a chat message relayed (metrics). */
  chatRelayed: () => void;
  /** Every room change, for webhooks and the console. */
  events?: ServerEvents;
  /** Whether other instances share the rooms (they hear of new and removed streams). */
  clustered: boolean;
  now?: () => number;
}

/** A room stream's channel and who publishes it. */
interface StreamRef {
  channel: string;
  publisher: string;
}

/** The Socket.IO room of an account's room: names JSON-encoded, so no two pairs meet. */
export const roomKey = (account: string, room: string) => `room:${JSON.stringify([account, room])}`;

const describe = (error: z.ZodError) =>
  error.issues
    .slice(0, 3)
    .map((i) => `${i.path.length ? i.path.join('.') : 'arguments'}: ${i.message}`)
    .join('; ');

const bytes = (value: unknown) => Buffer.byteLength(JSON.stringify(value) ?? '');

export function createRooms(deps: RoomDeps) {
  const { io, store, registry, schemas, log, telemetry, limits } = deps;
  const now = deps.now ?? Date.now;
  const name = z.string().min(1).max(deps.maxNameLength);
  const event = <T extends z.ZodRawShape>(shape: T) => z.tuple([z.looseObject(shape)]).rest(z.unknown());
  const parse = {
    roomJoin: event({ room: name }),
    roomLeave: event({ room: name }),
    roomPublish: event({ room: name, stream: name, parameters: z.looseObject({}) }),
    roomUnpublish: event({ room: name, stream: name }),
    roomMessage: event({ room: name, message: z.looseObject({}) }),
  };
  type RoomEvent = keyof typeof parse;

  const roomOf = (args: unknown[]) => {
    const first = args[0] as { room?: unknown } | null | undefined;
    return typeof first?.room === 'string' ? first.room.slice(0, deps.maxNameLength) : '';
  };

  const bindings = (socket: SignalingSocket) => ({
    socket: socket.id,
    account: socket.data.account.name,
    user: socket.data.identity?.user,
  });

  function refuse(socket: SignalingSocket, room: string, error: string, why: string) {
    socket.emit('roomUpdate', { room, error });
    log.info({ ...bindings(socket), room, why }, 'room event refused');
  }

  /** Sends a change to everyone in the room, on every instance. */
  function broadcast(account: string, room: string, update: Record<string, unknown>) {
    const sent = { ...update, room, timestamp: now() };
    io.to(roomKey(account, room)).emit('roomUpdate', sent);
    // Reported once, by the instance that made the change.
    const event = deps.events?.active ? roomEventOf(sent) : undefined;
    if (event) deps.events?.emit(event.type, account, event.data);
  }

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
    if (remaining) deps.announceLeave(user, channel, remaining.map((p) => p.socketId));
  }

  function joinRefusal(refusal: JoinRefusal, peerID: string, channel: string) {
    return refusal === 'uniqueness' ? uniquenessMessage(peerID, channel) : unfitMessage([refusal]);
  }

  /** Makes the socket a player of `channel` (another participant's stream); its publisher gets the usual `peer`. */
  async function subscribeSeat(socket: SignalingSocket, room: string, { channel, publisher }: StreamRef) {
    const seat = socket.data.rooms?.get(room);
    const { identity, account } = socket.data;
    if (!seat || !identity || seat.published.has(channel) || seat.subscribed.has(channel)) return;
    if (holds(socket, channel)) return void seat.subscribed.set(channel, publisher);
    const denied = subscribeRefusal({ identity, peerID: identity.user, channel });
    if (denied) return refuse(socket, room, denied.message, denied.issue);
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
      if (result.refusal !== 'uniqueness') await registry.countRefusal(account.name, 'subscribe', [result.refusal]);
      telemetry.refused(result.refusal);
      return refuse(socket, room, joinRefusal(result.refusal, identity.user, channel), result.refusal);
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

  const failed = (what: string) => (socket: SignalingSocket, err: unknown) =>
    log.error({ ...bindings(socket), err }, `${what} failed`);
  const failedSubscribe = failed('room subscription');
  const failedRelease = failed('room stream release');

  /** Every participant of the room on this instance becomes a player of a new stream, in its own queue. */
  function streamAdded(account: string, room: string, channel: string, publisher: string) {
    for (const socket of localSockets(account, room))
      if (socket.data.identity?.user !== publisher)
        enqueue(socket, (s, stream: StreamRef) => subscribeSeat(s, room, stream), { channel, publisher }, failedSubscribe);
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

  /** What the room and the other instances hear when streams are gone. */
  function announceStreamsGone(account: string, room: string, streams: RoomStream[]) {
    for (const stream of streams) {
      broadcast(account, room, { streamRemove: stream.streamId });
      streamRemoved(account, room, stream.channel);
      tellInstances({ account, room, channel: stream.channel, publisher: stream.user, gone: true });
    }
  }

  function announceDeparture({ account, room, participant, streams }: RoomDeparture) {
    announceStreamsGone(account, room, streams);
    broadcast(account, room, { participantLeft: participant });
  }

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

  function signedIn(socket: SignalingSocket, room: string) {
    if (socket.data.identity) return socket.data.identity;
    refuse(socket, room, RoomError.signIn, 'signIn');
    return undefined;
  }

  const refusalText: Record<RoomRefusal, (user: string) => string> = {
    already: () => RoomError.already,
    user: (user) => RoomError.user(user),
    rooms: () => RoomError.rooms(limits.maxRooms),
    participants: () => RoomError.participants(limits.maxParticipants),
  };

  async function roomJoin(socket: SignalingSocket, room: string) {
    const identity = signedIn(socket, room);
    if (!identity) return;
    if (socket.data.rooms?.has(room)) return refuse(socket, room, RoomError.already, 'already');
    const account = socket.data.account.name;
    const key = roomKey(account, room);
    // In the Socket.IO room before the store answers, so no change is missed.
    await socket.join(key);
    const participant = { name: identity.user, joinedAt: now() };
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
      return refuse(socket, room, refusalText[result.refusal](identity.user), result.refusal);
    }
    if (!socket.connected) {
      const departure = await store.leave(account, room, socket.id);
      if (departure) announceDeparture(departure);
      return;
    }
    (socket.data.rooms ??= new Map()).set(room, { published: new Set(), subscribed: new Map() });
    socket.emit('roomUpdate', { room, ...result.view, type: 'roomJoin' });
    broadcast(account, room, { participantJoin: participant });
    for (const stream of Object.values(result.view.streams))
      if (stream.socketId !== socket.id && stream.type === 'webrtc')
        await subscribeSeat(socket, room, { channel: stream.channel, publisher: stream.user });
    log.debug({ ...bindings(socket), room, participants: Object.keys(result.view.participants).length }, 'joined room');
  }

  async function roomPublish(socket: SignalingSocket, room: string, streamId: string, parameters: Record<string, unknown>) {
    const identity = signedIn(socket, room);
    if (!identity) return;
    const seat = socket.data.rooms?.get(room);
    if (!seat) return refuse(socket, room, RoomError.notParticipant, 'notParticipant');
    if (parameters.type !== 'webrtc') return refuse(socket, room, RoomError.streamType(parameters.type), 'streamType');
    if (bytes(parameters) > MAX_PARAMETERS_BYTES) return refuse(socket, room, RoomError.parameters, 'parameters');
    const parsed = schemas.publish.safeParse([identity.user, streamId, parameters]);
    if (!parsed.success) return refuse(socket, room, RoomError.parameters, 'parameters');
    const stream = parsed.data[2] ?? undefined;
    const { account } = socket.data;
    const channel = streamId;
    const publishError = (message: string, issues: readonly string[]) => {
      socket.emit('publishError', { from: '_server_', to: identity.user, message });
      refuse(socket, room, message, issues.join(','));
    };
    const denied = publishRefusal({ identity, restrictPublish: account.restrictPublish, peerID: identity.user, channel });
    if (denied) {
      await registry.countRefusal(account.name, 'publish', [denied.issue]);
      telemetry.refused('rights');
      return publishError(denied.message, [denied.issue]);
    }
    const issues = stream ? streamIssues(account.plan, stream) : [];
    if (issues.length) {
      await registry.countRefusal(account.name, 'publish', issues);
      for (const issue of issues) telemetry.refused(issue);
      return publishError(unfitMessage(issues), issues);
    }
    // A channel is one stream: a room never takes over another user's.
    if (seat.published.has(channel)) return refuse(socket, room, RoomError.streamExists(streamId), 'streamExists');
    const present = await registry.peers(account.name, channel);
    if (present.some((p) => p.type === 'broadcaster' && p.peerID !== identity.user))
      return refuse(socket, room, RoomError.streamExists(streamId), 'streamExists');
    const result = await registry.join({
      account: account.name,
      channel,
      peerID: identity.user,
      socketId: socket.id,
      role: 'broadcaster',
      stream,
      plan: account.plan,
      maxChannels: deps.accountMaxChannels,
      maxPeers: deps.accountMaxPeers,
    });
    if (!result.ok) {
      if (result.refusal !== 'uniqueness') await registry.countRefusal(account.name, 'publish', [result.refusal]);
      telemetry.refused(result.refusal);
      return publishError(joinRefusal(result.refusal, identity.user, channel), [result.refusal]);
    }
    const info: RoomStream = {
      ...parameters,
      type: 'webrtc',
      streamId,
      socketId: socket.id,
      user: identity.user,
      channel,
      publishedAt: now(),
    };
    const added = await store.addStream(account.name, room, info, MAX_STREAMS_PER_PARTICIPANT);
    if (added !== 'ok' || socket.data.rooms?.get(room) !== seat) {
      await release(socket, channel);
      if (added === 'exists') return refuse(socket, room, RoomError.streamExists(streamId), 'streamExists');
      if (added === 'tooMany') return refuse(socket, room, RoomError.streamsPerParticipant, 'streamsPerParticipant');
      return refuse(socket, room, RoomError.notParticipant, 'notParticipant');
    }
    seat.published.add(channel);
    socket.emit('message', { type: 'peers', from: '_channel_', target: identity.user, peers: result.peers, peerConfig: deps.peerConfig(account.name) });
    broadcast(account.name, room, { streamNew: info });
    streamAdded(account.name, room, channel, identity.user);
    tellInstances({ account: account.name, room, channel, publisher: identity.user, gone: false });
    log.debug({ ...bindings(socket), room, stream: streamId }, 'published in room');
  }

  async function roomUnpublish(socket: SignalingSocket, room: string, streamId: string) {
    const identity = signedIn(socket, room);
    if (!identity) return;
    const seat = socket.data.rooms?.get(room);
    if (!seat) return refuse(socket, room, RoomError.notParticipant, 'notParticipant');
    const account = socket.data.account.name;
    const removed = await store.removeStream(account, room, streamId, socket.id);
    if (!removed || !seat.published.delete(removed.channel)) return refuse(socket, room, RoomError.notYourStream(streamId), 'notYourStream');
    await release(socket, removed.channel);
    socket.emit('unpublish', identity.user, removed.channel);
    announceStreamsGone(account, room, [removed]);
  }

  async function roomMessage(socket: SignalingSocket, room: string, message: Record<string, unknown>) {
    const identity = signedIn(socket, room);
    if (!identity) return;
    // Refused, never broadcast: the sender must be in the room.
    if (!socket.data.rooms?.has(room)) return refuse(socket, room, RoomError.notParticipant, 'notParticipant');
    const t = performance.now();
    const bucket = (socket.data.chat ??= { tokens: limits.chatPerSecond, refilledAt: t });
    if (!takeEvent(bucket, limits.chatPerSecond, t)) {
      telemetry.refused('rate');
      return refuse(socket, room, RoomError.chatRate, 'chatRate');
    }
    // The client's fields, then the server's: a spoofed user or time is overwritten.
    const stamped = { ...message, user: identity.user, timestamp: now() };
    if (bytes(stamped) > limits.maxMessageBytes) return refuse(socket, room, RoomError.messageSize(limits.maxMessageBytes), 'messageSize');
    const account = socket.data.account.name;
    if (!(await store.addMessage(account, room, socket.id, stamped, limits.history)))
      return refuse(socket, room, RoomError.notParticipant, 'notParticipant');
    broadcast(account, room, { messageNew: stamped });
    deps.chatRelayed();
  }

  type Args = unknown[];
  const handlers: Record<RoomEvent, (socket: SignalingSocket, args: Args) => Promise<void>> = {
    roomJoin: async (socket, args) => {
      const parsed = parse.roomJoin.safeParse(args);
      if (!parsed.success) return invalid(socket, 'roomJoin', args, parsed.error);
      await roomJoin(socket, parsed.data[0].room);
    },
    roomLeave: async (socket, args) => {
      const parsed = parse.roomLeave.safeParse(args);
      if (!parsed.success) return invalid(socket, 'roomLeave', args, parsed.error);
      const { room } = parsed.data[0];
      if (!(await leaveRoom(socket, room))) refuse(socket, room, RoomError.notParticipant, 'notParticipant');
    },
    roomPublish: async (socket, args) => {
      const parsed = parse.roomPublish.safeParse(args);
      if (!parsed.success) return invalid(socket, 'roomPublish', args, parsed.error);
      const { room, stream, parameters } = parsed.data[0];
      await roomPublish(socket, room, stream, parameters);
    },
    roomUnpublish: async (socket, args) => {
      const parsed = parse.roomUnpublish.safeParse(args);
      if (!parsed.success) return invalid(socket, 'roomUnpublish', args, parsed.error);
      await roomUnpublish(socket, parsed.data[0].room, parsed.data[0].stream);
    },
    roomMessage: async (socket, args) => {
      const parsed = parse.roomMessage.safeParse(args);
      if (!parsed.success) return invalid(socket, 'roomMessage', args, parsed.error);
      const { room, message } = parsed.data[0];
      await roomMessage(socket, room, message);
    },
  };

  function invalid(socket: SignalingSocket, name: RoomEvent, args: Args, error: z.ZodError) {
    telemetry.refused('validation');
    refuse(socket, roomOf(args), RoomError.invalid(name, describe(error)), 'validation');
  }

  const onError = (socket: SignalingSocket, err: unknown) => log.error({ ...bindings(socket), err }, 'room event failed');

  const maxPending = maxPendingEvents(deps.eventsPerSecond);
  const listeners = (Object.keys(handlers) as RoomEvent[]).map((name) => {
    // A store or registry that fails (Redis away) is logged and answered, in the room's name.
    const handler = (socket: SignalingSocket, args: Args) =>
      handlers[name](socket, args).catch((err: unknown) => {
        log.error({ ...bindings(socket), event: name, err }, 'room event failed');
        if (socket.connected) socket.emit('roomUpdate', { room: roomOf(args), error: RoomError.unavailable });
      });
    const listener = function (this: SignalingSocket, ...args: unknown[]) {
      const t = performance.now();
      if (!takeEvent(this.data, deps.eventsPerSecond, t)) {
        telemetry.refused('rate');
        if (t - this.data.rateNoticeAt >= 1000) {
          this.data.rateNoticeAt = t;
          refuse(this, roomOf(args), RATE_LIMITED, 'rate');
        }
        return;
      }
      if (!enqueue(this, handler, args, onError, maxPending)) {
        telemetry.refused('rate');
        refuse(this, roomOf(args), RATE_LIMITED, 'queue');
      }
    };
    return [name, listener] as const;
  });

  /** Leaves every room of the socket (disconnect, shutdown). */
  async function leaveAll(socket: SignalingSocket) {
    for (const room of [...(socket.data.rooms?.keys() ?? [])]) await leaveRoom(socket, room);
  }

  const failedLeave = failed('leaving rooms');
  function onDisconnect(this: SignalingSocket) {
    if (this.data.rooms) enqueue(this, leaveAll, undefined, failedLeave);
  }

  return {
    attach(socket: SignalingSocket) {
      for (const [name, listener] of listeners) socket.on(name, listener);
      socket.on('disconnect', onDisconnect);
    },
    leaveAll,
    /** Participants removed for sockets that are gone (a dead instance): their rooms hear them leave. */
    departed(departures: RoomDeparture[]) {
      for (const departure of departures) announceDeparture(departure);
    },
  };
}
