// Room events (roomJoin, roomLeave, roomPublish, roomUnpublish, roomMessage)
// wired to a socket, as signaling's are: each passes the rate gate, waits its
// turn in the socket's queue, is parsed, and runs its handler (handlers/):
// validate -> decide (rights, plan, room bounds) -> apply (room store,
// channel registry) -> emit `roomUpdate`. A participant is a signed-in user;
// its channel registrations in the room are its seat (seats.ts).
import type { Logger } from 'pino';
import { z } from 'zod';
import type { ChannelRegistry } from '../channels/registry';
import { systemClock, type Clock } from '../clock';
import type { PeerConfig } from '../ice';
import type { Telemetry } from '../metrics';
import { RATE_LIMITED, type EventSchemas, type ServerMessage } from '../protocol';
import type { ServerEvents } from '../server-events';
import { createFailureLog } from '../signaling/failures';
import { createRefusalCounter } from '../signaling/handlers/join';
import { enqueue, maxPendingEvents } from '../signaling/queue';
import { createRateGate } from '../signaling/rate-limits';
import type { SignalingServer, SignalingSocket } from '../signaling/session';
import { roomJoinHandler } from './handlers/join';
import { roomLeaveHandler } from './handlers/leave';
import { roomMessageHandler } from './handlers/message';
import { roomPublishHandler } from './handlers/publish';
import { roomUnpublishHandler } from './handlers/unpublish';
import type { RoomLimits } from './limits';
import { bindings, createRoomReplies, RoomError } from './replies';
import { createSeats } from './seats';
import type { RoomDeparture, RoomRestore, RoomStore } from './store';

export interface RoomDeps {
  io: SignalingServer;
  store: RoomStore;
  registry: ChannelRegistry;
  schemas: EventSchemas;
  peerConfig: (account: string) => PeerConfig;
  log: Logger;
  telemetry: Telemetry;
  limits: RoomLimits;
  /** Resolves once messages other instances send to a Socket.IO room reach this one (a cluster's adapter). */
  roomSubscribed?: (room: string) => Promise<void>;
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
  clock?: Clock;
}

const describe = (error: z.ZodError) =>
  error.issues
    .slice(0, 3)
    .map((i) => `${i.path.length ? i.path.join('.') : 'arguments'}: ${i.message}`)
    .join('; ');

export function createRooms(deps: RoomDeps) {
  const { io, store, registry, schemas, log, telemetry, limits } = deps;
  const clock = deps.clock ?? systemClock;
  const replies = createRoomReplies({ io, log, events: deps.events, clock });
  const recordFailure = createFailureLog({ log, telemetry });
  const countRefusal = createRefusalCounter({ registry, recordFailure });
  const seats = createSeats({
    io,
    store,
    registry,
    telemetry,
    replies,
    log,
    countRefusal,
    recordFailure,
    accountMaxChannels: deps.accountMaxChannels,
    accountMaxPeers: deps.accountMaxPeers,
    announceLeave: deps.announceLeave,
    deliver: deps.deliver,
    clustered: deps.clustered,
  });
  const roomJoin = roomJoinHandler({ store, seats, replies, limits, clock, log, roomSubscribed: deps.roomSubscribed });
  const roomLeave = roomLeaveHandler({ seats, replies });
  const roomPublish = roomPublishHandler({
    store,
    registry,
    seats,
    replies,
    schemas,
    countRefusal,
    telemetry,
    peerConfig: deps.peerConfig,
    accountMaxChannels: deps.accountMaxChannels,
    accountMaxPeers: deps.accountMaxPeers,
    clock,
    log,
  });
  const roomUnpublish = roomUnpublishHandler({ store, seats, replies });
  const roomMessage = roomMessageHandler({ store, replies, limits, telemetry, chatRelayed: deps.chatRelayed, clock });

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
  type Args = unknown[];

  /** The room an event names, for answers about an event that did not parse. */
  const roomOf = (args: Args) => {
    const first = args[0] as { room?: unknown } | null | undefined;
    return typeof first?.room === 'string' ? first.room.slice(0, deps.maxNameLength) : '';
  };

  function invalid(socket: SignalingSocket, event: RoomEvent, args: Args, error: z.ZodError) {
    telemetry.refused('validation');
    replies.refuse(socket, roomOf(args), RoomError.invalid(event, describe(error)), 'validation');
  }

  /** Parses an event's arguments, then hands its one object to `run`. */
  const parsed =
    <T>(event: RoomEvent, schema: z.ZodType<[T, ...unknown[]]>, run: (socket: SignalingSocket, input: T) => Promise<void>) =>
    async (socket: SignalingSocket, args: Args) => {
      const result = schema.safeParse(args);
      if (!result.success) return invalid(socket, event, args, result.error);
      await run(socket, result.data[0]);
    };
  const handlers: Record<RoomEvent, (socket: SignalingSocket, args: Args) => Promise<void>> = {
    roomJoin: parsed('roomJoin', parse.roomJoin, (socket, { room }) => roomJoin(socket, room)),
    roomLeave: parsed('roomLeave', parse.roomLeave, (socket, { room }) => roomLeave(socket, room)),
    roomPublish: parsed('roomPublish', parse.roomPublish, (socket, { room, stream, parameters }) =>
      roomPublish(socket, room, stream, parameters),
    ),
    roomUnpublish: parsed('roomUnpublish', parse.roomUnpublish, (socket, { room, stream }) => roomUnpublish(socket, room, stream)),
    roomMessage: parsed('roomMessage', parse.roomMessage, (socket, { room, message }) => roomMessage(socket, room, message)),
  };

  // A store or registry that fails (Redis away) is logged and answered, in the room's name.
  const failedEvent = (event: RoomEvent) => (socket: SignalingSocket, err: unknown, args: Args) => {
    recordFailure('room event', { ...bindings(socket), event }, err);
    if (socket.connected) socket.emit('roomUpdate', { room: roomOf(args), error: RoomError.unavailable });
  };

  const overRate = createRateGate<SignalingSocket, RoomEvent>({
    eventsPerSecond: deps.eventsPerSecond,
    clock,
    telemetry,
    notify: (socket, _event, args) => replies.refuse(socket, roomOf(args), RATE_LIMITED, 'rate'),
  });

  const maxPending = maxPendingEvents(deps.eventsPerSecond);
  const listeners = (Object.keys(handlers) as RoomEvent[]).map((event) => {
    const handler = handlers[event];
    const onError = failedEvent(event);
    const listener = function (this: SignalingSocket, ...args: unknown[]) {
      if (overRate(this, event, args)) return;
      if (!enqueue(this, handler, args, onError, maxPending)) {
        telemetry.refused('rate');
        replies.refuse(this, roomOf(args), RATE_LIMITED, 'queue');
      }
    };
    return [event, listener] as const;
  });

  /** Leaves every room of the socket (disconnect, shutdown). */
  async function leaveAll(socket: SignalingSocket) {
    for (const room of [...(socket.data.rooms?.keys() ?? [])]) await seats.leaveRoom(socket, room);
  }

  const failedForfeit = (socket: SignalingSocket, err: unknown) => void recordFailure('room seat lost', bindings(socket), err);
  const failedLeave = (socket: SignalingSocket, err: unknown) => void recordFailure('leaving rooms', bindings(socket), err);
  function onDisconnect(this: SignalingSocket) {
    if (this.data.rooms) enqueue(this, leaveAll, undefined, failedLeave);
  }

  return {
    attach(socket: SignalingSocket) {
      for (const [event, listener] of listeners) socket.on(event, listener);
      socket.on('disconnect', onDisconnect);
    },
    leaveAll,
    /** Participants removed for sockets that are gone (a dead instance): their rooms hear them leave. */
    departed(departures: RoomDeparture[]) {
      for (const departure of departures) seats.announceDeparture(departure);
    },
    /**
     * This instance's seats were written back to Redis. Seats Redis had lost
     * are news to nobody; seats a sweep took (this instance was taken for
     * dead) join their rooms again, with their streams; what Redis held that
     * no socket here holds goes, and a socket whose seat or stream another
     * one took meanwhile loses it.
     */
    restored({ departures, streamsGone, seatsLost, streamsLost, rejoined }: RoomRestore) {
      for (const departure of departures) seats.announceDeparture(departure);
      for (const { account, room, participant, streams } of rejoined) {
        replies.broadcast(account, room, { participantJoin: participant });
        for (const stream of streams) seats.announceStream(account, room, stream);
      }
      for (const { account, room, streams } of streamsGone) seats.announceStreamsGone(account, room, streams);
      for (const { room, socketId } of seatsLost) {
        const socket = io.sockets.sockets.get(socketId);
        if (socket) enqueue(socket, seats.forfeitSeat, room, failedForfeit);
      }
      for (const { room, socketId, streamId } of streamsLost) {
        const socket = io.sockets.sockets.get(socketId);
        if (socket) enqueue(socket, (s: SignalingSocket, id: string) => seats.forfeitStream(s, room, id), streamId, failedForfeit);
      }
    },
  };
}
