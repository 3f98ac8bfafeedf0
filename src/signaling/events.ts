// The four client events and the disconnect, wired to a socket: each event
// passes the rate gate (rate-limits.ts), waits its turn in the socket's queue
// (queue.ts), and runs its handler (handlers/); a handler that fails is
// answered on the event's error event, never left unanswered. Listeners are
// created once per server and shared by every socket (Socket.IO calls them
// with the socket as `this`), so an idle socket costs no closures.
import type { Logger } from 'pino';
import type { ChannelRegistry } from '../channels/registry';
import type { Clock } from '../clock';
import type { PeerConfig } from '../ice';
import type { Telemetry } from '../metrics';
import type { SignalingReport } from '../server-events';
import { EVENT_DROPPED, HandshakeError, RATE_LIMITED, type EventSchemas } from '../protocol';
import { createDelivery, type DirectDelivery } from './delivery';
import { createDepartures } from './departures';
import { createFailureLog } from './failures';
import { createJoining, createRefusalCounter } from './handlers/join';
import { messageHandler } from './handlers/message';
import { messagePeerHandler } from './handlers/message-peer';
import { publishHandler } from './handlers/publish';
import { subscribeHandler } from './handlers/subscribe';
import type { Handler } from './handlers/types';
import { enqueue, maxPendingEvents } from './queue';
import { createRateGate, errorEventOf, refusedActionOf, type SignalingEvent } from './rate-limits';
import { addresseeOf, bindings, createReplies, type PeerSocket } from './replies';
import type { SignalingServer, SignalingSocket } from './session';
import type { VerbatimRelay } from './verbatim';

export interface SignalingDeps {
  io: SignalingServer;
  registry: ChannelRegistry;
  schemas: EventSchemas;
  peerConfig: (account: string) => PeerConfig;
  log: Logger;
  telemetry: Telemetry;
  clock: Clock;
  eventsPerSecond: number;
  /** Names echoed back in error payloads are cut to this many characters. */
  maxNameLength: number;
  /** ENFORCE_SDP: relayed offers and answers get the plan's limits written in. */
  enforceSdp: boolean;
  accountMaxChannels: number;
  accountMaxPeers: number;
  /** Gives the socket's connection back to its account's count. */
  releaseConnection: (socket: SignalingSocket) => void;
  /** Where joins, leaves and refusals become server events (webhooks, the admin console). */
  report?: SignalingReport | undefined;
  /** With Redis: messages to a peer on another instance go straight to it (channels/redis/direct.ts). */
  direct?: DirectDelivery | undefined;
  /** The server's parser, which relays an unchanged messagePeer as the text it came in. */
  verbatim: VerbatimRelay;
}

export function createSignaling(deps: SignalingDeps) {
  const { io, registry, schemas, log, telemetry, clock, enforceSdp, report } = deps;
  const replies = createReplies({ log, telemetry, report, maxNameLength: deps.maxNameLength, clock });
  const recordFailure = createFailureLog({ log, telemetry });
  const delivery = createDelivery(io, deps.direct);
  const departures = createDepartures({ registry, delivery, replies, recordFailure, releaseConnection: deps.releaseConnection, report });
  const countRefusal = createRefusalCounter({ registry, recordFailure });
  const joining = createJoining({
    registry,
    departures,
    replies,
    countRefusal,
    accountMaxChannels: deps.accountMaxChannels,
    accountMaxPeers: deps.accountMaxPeers,
    report,
  });
  const handlers: Record<SignalingEvent, Handler> = {
    publish: publishHandler({ schemas, joining, countRefusal, replies, peerConfig: deps.peerConfig }),
    subscribe: subscribeHandler({ schemas, joining, countRefusal, replies, delivery }),
    messagePeer: messagePeerHandler({ schemas, registry, replies, delivery, telemetry, enforceSdp, verbatim: deps.verbatim }),
    message: messageHandler({ schemas, registry, replies, delivery, telemetry, enforceSdp }),
  };

  const overRate = createRateGate<SignalingSocket, SignalingEvent>({
    eventsPerSecond: deps.eventsPerSecond,
    clock,
    telemetry,
    notify(socket, event, args) {
      replies.refuse(socket, errorEventOf[event], addresseeOf(socket, args), RATE_LIMITED);
      void countRefusal(socket, socket.data.account.name, refusedActionOf[event], ['rate']);
    },
  });

  /** A handler that threw (the registry away, or a bug): the client still gets an answer. */
  const failed = (event: SignalingEvent) => (socket: PeerSocket, err: unknown, args: unknown[]) => {
    recordFailure('event handler', { ...bindings(socket), event }, err);
    replies.refuse(socket, errorEventOf[event], addresseeOf(socket, args), HandshakeError.unavailable, 'unavailable');
  };

  const maxPending = maxPendingEvents(deps.eventsPerSecond);
  const listeners = (Object.keys(handlers) as SignalingEvent[]).map((event) => {
    const handler = handlers[event];
    const onError = failed(event);
    const listener = function (this: SignalingSocket, ...args: unknown[]) {
      if (overRate(this, event, args)) return;
      // Only when the registry falls a second behind: the client hears of each event it loses.
      if (!enqueue(this, handler, args, onError, maxPending))
        replies.refuse(this, errorEventOf[event], addresseeOf(this, args), EVENT_DROPPED, 'rate');
    };
    return [event, listener] as const;
  });

  /** Wires one socket; every listener is shared, none is created per socket. */
  function attach(socket: SignalingSocket) {
    for (const [event, listener] of listeners) socket.on(event, listener);
    socket.on('disconnect', departures.onDisconnect);
  }

  return {
    attach,
    leaveChannel: departures.leaveChannel,
    announceLeave: departures.announceLeave,
    deliver: delivery.toSocket,
  };
}
