// The four client events and the disconnect, as thin handlers:
// validate (schema) -> decide (limits) -> apply (registry) -> emit.
// Handlers are created once per server and shared by every socket (Socket.IO
// calls them with the socket as `this`), so an idle socket costs no closures.
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { Account } from '../accounts/account';
import { publishRefusal, subscribeRefusal } from '../auth/rights';
import type { ChannelRegistry, JoinRefusal, JoinRequest } from '../channels/registry';
import type { PeerConfig } from '../ice';
import { missingStreamParams, streamIssues } from '../limits';
import type { RefusalReason, Telemetry } from '../metrics';
import type { SignalingReport } from '../server-events';
import {
  closeMessage,
  DEFAULT_CHANNEL,
  HandshakeError,
  unfitMessage,
  uniquenessMessage,
  EVENT_DROPPED,
  RATE_LIMITED,
  SERVER_MESSAGE_TYPES,
  truncateName,
  ZERO_STREAM,
  type EventSchemas,
  type ServerToClientEvents,
} from '../protocol';
import { capSdp, sdpCaps } from '../sdp';
import { takeEvent } from './rate-limits';
import { createSampledLog } from './sampled-log';
import { enqueue, maxPendingEvents, roomChannels, roomChannelsToward, type SignalingServer, type SignalingSocket } from './session';

export interface SignalingDeps {
  io: SignalingServer;
  registry: ChannelRegistry;
  schemas: EventSchemas;
  peerConfig: (account: string) => PeerConfig;
  log: Logger;
  telemetry: Telemetry;
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
}

type ErrorEvent = 'publishError' | 'subscribeError' | 'uniquenessError' | 'messageError';

const describe = (error: z.ZodError) =>
  error.issues
    .slice(0, 3)
    .map((i) => `${i.path.length ? `argument ${i.path.join('.')}` : 'arguments'}: ${i.message}`)
    .join('; ');

export function createSignaling(deps: SignalingDeps) {
  const { io, registry, schemas, peerConfig, log, telemetry } = deps;
  const maxPending = maxPendingEvents(deps.eventsPerSecond);
  // Lines about refused and dropped events: a flooding client must not flood the log too.
  const logDropped = createSampledLog(log);
  // Debug lines cost their arguments even when off: build them only when on.
  const debug = (build: () => Record<string, unknown>, msg: string) => {
    if (log.isLevelEnabled('debug')) log.debug(build(), msg);
  };
  const bindings = (socket: SignalingSocket) => ({
    socket: socket.id,
    account: socket.data.account.name,
    peer: socket.data.registration?.peerID,
  });

  const sendError = (socket: SignalingSocket, event: ErrorEvent, to: unknown, message: string, ...reasons: RefusalReason[]) => {
    for (const reason of reasons) telemetry.refused(reason);
    deps.report?.refused(socket.data.account.name, event, reasons, to);
    // `to` echoes what the client sent: never longer than a valid name.
    socket.emit(event, { from: '_server_', to: typeof to === 'string' ? truncateName(to, deps.maxNameLength) : '', message });
    logDropped(socket, 'info', () => ({ ...bindings(socket), event, message }), 'event refused');
  };

  /**
   * Checks a message a client asked to relay, and with ENFORCE_SDP caps the
   * SDP it carries to the sender's plan (in place: the object is the
   * server's own). The refusal a client sees, or undefined when it may go.
   */
  function relayRefusal(account: Account, message: Record<string, unknown>): { message: string; reason: RefusalReason } | undefined {
    const { type } = message;
    // `peers` and `peer` come from the server only: a peer's copy could hand out its own peerConfig.
    if (typeof type === 'string' && SERVER_MESSAGE_TYPES.has(type))
      return { message: `Invalid message: type ${type} is sent by the server only`, reason: 'validation' };
    if (!deps.enforceSdp) return undefined;
    const content = message.content;
    if (typeof content !== 'object' || content === null || !('sdp' in content)) return undefined;
    const caps = sdpCaps(account.plan);
    if (!caps) return undefined;
    const { sdp } = content as { sdp: unknown };
    const capped = typeof sdp === 'string' ? capSdp(sdp, caps) : { error: 'not a string' };
    if ('error' in capped) return { message: `Invalid SDP: ${capped.error}`, reason: 'sdp' };
    message.content = { ...content, sdp: capped.sdp };
    return undefined;
  }

  // A peer on this process gets the message directly; any other socket id is
  // left to the adapter, which knows the other processes.
  const deliver = <E extends keyof ServerToClientEvents>(
    socketId: string,
    event: E,
    ...payload: Parameters<ServerToClientEvents[E]>
  ) => {
    const local = io.sockets.sockets.get(socketId);
    if (local) local.emit(event, ...payload);
    else io.to(socketId).emit(event, ...payload);
  };

  /** Tells a channel's remaining peers that `peerID` left; peers that disconnected in the same burst need no telling. */
  function announceLeave(peerID: string, channel: string, socketIds: string[]) {
    const notify = socketIds.filter((id) => !departing.has(id));
    // A channel of two (the usual call) has one peer to tell: no broadcast needed.
    if (notify.length === 1) deliver(notify[0] as string, 'message', closeMessage(peerID, channel));
    else if (notify.length) io.to(notify).emit('message', closeMessage(peerID, channel));
  }

  async function leaveChannel(socket: SignalingSocket) {
    const registration = socket.data.registration;
    if (!registration) return;
    socket.data.registration = undefined;
    const { channel, peerID } = registration;
    // A room holds the same registration: it stays until the room lets it go.
    if (socket.data.rooms && roomChannels(socket.data).has(channel)) return;
    const remaining = await registry.leave(socket.data.account.name, channel, peerID, socket.id);
    if (remaining) announceLeave(peerID, channel, remaining.map((p) => p.socketId));
    if (remaining) deps.report?.left(socket, registration, remaining.length);
    debug(() => ({ ...bindings(socket), peer: peerID, channel, remaining: remaining?.length ?? 0 }), 'peer left');
  }

  /**
   * Registers the socket; a socket holds one registration, so a new one
   * replaces the old. Undefined when the registry cannot be reached.
   */
  async function join(socket: SignalingSocket, request: Omit<JoinRequest, 'account' | 'socketId' | 'plan'>) {
    const { account } = socket.data;
    const current = socket.data.registration;
    try {
      if (current && (current.channel !== request.channel || current.peerID !== request.peerID)) await leaveChannel(socket);
      // Fields written out, one shape for every request: this is a hot path.
      const result = await registry.join({
        channel: request.channel,
        peerID: request.peerID,
        role: request.role,
        stream: request.stream,
        account: account.name,
        socketId: socket.id,
        plan: account.plan,
        maxChannels: deps.accountMaxChannels,
        maxPeers: deps.accountMaxPeers,
      });
      if (result.ok) socket.data.registration = { channel: request.channel, peerID: request.peerID, role: request.role };
      if (result.ok && result.isNew) deps.report?.joined(account.name, request);
      return result;
    } catch (err) {
      log.error({ ...bindings(socket), err }, 'registry unavailable, join refused');
      return undefined;
    }
  }

  /** Answers a join the registry refused, or could not decide (no refusal). */
  async function refuseJoin(
    socket: SignalingSocket,
    action: 'publish' | 'subscribe',
    peerID: string,
    channel: string,
    refusal: JoinRefusal | undefined,
  ) {
    const errorEvent = action === 'publish' ? 'publishError' : 'subscribeError';
    if (!refusal) return sendError(socket, errorEvent, peerID, HandshakeError.unavailable, 'unavailable');
    if (refusal === 'uniqueness')
      return sendError(socket, 'uniquenessError', peerID, uniquenessMessage(peerID, channel), 'uniqueness');
    await registry.countRefusal(socket.data.account.name, action, [refusal]);
    return sendError(socket, errorEvent, peerID, unfitMessage([refusal]), refusal);
  }

  async function publish(socket: SignalingSocket, args: unknown[]) {
    const parsed = schemas.publish.safeParse(args);
    if (!parsed.success)
      return sendError(socket, 'publishError', args[0], `Invalid publish: ${describe(parsed.error)}`, 'validation');
    const [peerID, channel, params] = parsed.data;
    const stream = params ?? ZERO_STREAM;
    const { account, identity } = socket.data;
    const denied = publishRefusal({ identity, restrictPublish: account.restrictPublish, peerID, channel });
    if (denied) {
      await registry.countRefusal(account.name, 'publish', [denied.issue]);
      return sendError(socket, 'publishError', peerID, denied.message, 'rights');
    }
    // A limited plan counts and checks what the stream says it is: it must say it.
    const missing = missingStreamParams(account.plan, args[2]);
    if (missing.length)
      return sendError(socket, 'publishError', peerID, `Invalid publish: argument 2: ${missing.join(', ')} required by the plan`, 'validation');
    const issues = streamIssues(account.plan, stream);
    if (issues.length) {
      await registry.countRefusal(account.name, 'publish', issues);
      return sendError(socket, 'publishError', peerID, unfitMessage(issues), ...issues);
    }
    const result = await join(socket, { channel, peerID, role: 'broadcaster', stream });
    if (!result?.ok) return refuseJoin(socket, 'publish', peerID, channel, result?.refusal);
    socket.emit('message', {
      type: 'peers',
      from: '_channel_',
      target: peerID,
      peers: result.peers,
      peerConfig: peerConfig(account.name),
    });
    debug(() => ({ ...bindings(socket), channel, stream, peers: result.peers.length }), 'published');
  }

  async function subscribe(socket: SignalingSocket, args: unknown[]) {
    const parsed = schemas.subscribe.safeParse(args);
    if (!parsed.success)
      return sendError(socket, 'subscribeError', args[0], `Invalid subscribe: ${describe(parsed.error)}`, 'validation');
    const [peerID, requested] = parsed.data;
    const channel = requested || DEFAULT_CHANNEL;
    const denied = subscribeRefusal({ identity: socket.data.identity, peerID, channel });
    if (denied) {
      await registry.countRefusal(socket.data.account.name, 'subscribe', [denied.issue]);
      return sendError(socket, 'subscribeError', peerID, denied.message, 'rights');
    }
    const result = await join(socket, { channel, peerID, role: 'player' });
    if (!result?.ok) return refuseJoin(socket, 'subscribe', peerID, channel, result?.refusal);
    if (result.publisher && result.isNew)
      deliver(result.publisher.socketId, 'message', { type: 'peer', from: peerID, target: result.publisher.peerID, peerID });
    debug(() => ({ ...bindings(socket), channel }), 'subscribed');
  }

  /**
   * The peer `peerID` in a channel the sender shares with it, and the
   * sender's own name there: its registration's channel first, then the
   * channels its rooms hold (those likely to hold the target first, each
   * group asked at once).
   */
  async function findTarget(socket: SignalingSocket, peerID: string) {
    const { registration, account, identity } = socket.data;
    if (registration) {
      const target = await registry.findPeer(account.name, registration.channel, peerID);
      if (target || !socket.data.rooms) return target && { target, from: registration.peerID };
    }
    if (!identity || !socket.data.rooms) return undefined;
    for (const channels of roomChannelsToward(socket.data, peerID)) {
      const found = await Promise.all(channels.map((channel) => registry.findPeer(account.name, channel, peerID)));
      const target = found.find((peer) => peer !== undefined && peer.socketId !== socket.id);
      if (target) return { target, from: identity.user };
    }
    return undefined;
  }

  async function messagePeer(socket: SignalingSocket, args: unknown[]) {
    const registration = socket.data.registration;
    if (!registration && !socket.data.rooms?.size)
      return logDropped(socket, 'info', () => bindings(socket), 'messagePeer dropped: sender is in no channel');
    const message = schemas.peerMessage(args);
    if (!message) {
      telemetry.refused('validation');
      return logDropped(
        socket,
        'info',
        () => {
          const parsed = schemas.messagePeer.safeParse(args);
          return { ...bindings(socket), why: parsed.success ? 'invalid' : describe(parsed.error) };
        },
        'messagePeer dropped: invalid',
      );
    }
    const refusal = relayRefusal(socket.data.account, message);
    if (refusal) return sendError(socket, 'messageError', registration?.peerID ?? socket.data.identity?.user, refusal.message, refusal.reason);
    const found = await findTarget(socket, message.target);
    if (!found)
      return logDropped(socket, 'info', () => ({ ...bindings(socket), target: message.target }), 'messagePeer dropped: no such peer in the channel');
    // `from` is the sender's registered name, whatever the client wrote. The
    // object was decoded for this event alone, so it is stamped, not copied.
    message.from = found.from;
    deliver(found.target.socketId, 'message', message);
    telemetry.relayed(message.type);
  }

  async function message(socket: SignalingSocket, args: unknown[]) {
    const registration = socket.data.registration;
    if (!registration) return logDropped(socket, 'info', () => bindings(socket), 'message dropped: sender is in no channel');
    const parsed = schemas.message.safeParse(args);
    if (!parsed.success) {
      telemetry.refused('validation');
      return logDropped(socket, 'info', () => ({ ...bindings(socket), why: describe(parsed.error) }), 'message dropped: invalid');
    }
    // The parsed object is a copy: it may be stamped and rewritten.
    const relayed = parsed.data[0];
    const refusal = relayRefusal(socket.data.account, relayed);
    if (refusal) return sendError(socket, 'messageError', registration.peerID, refusal.message, refusal.reason);
    relayed.from = registration.peerID;
    const peers = await registry.peers(socket.data.account.name, registration.channel);
    const others = peers.filter((p) => p.socketId !== socket.id).map((p) => p.socketId);
    if (others.length) io.to(others).emit('message', relayed);
    telemetry.relayed('broadcast');
  }

  const handlers = { publish, subscribe, messagePeer, message } as const;

  /** Wires one socket; every listener is shared, none is created per socket. */
  function attach(socket: SignalingSocket) {
    for (const [event, listener] of sharedListeners) socket.on(event, listener);
    socket.on('disconnect', onDisconnect);
  }

  const failed = (event: string) => (socket: SignalingSocket, err: unknown) =>
    log.error({ ...bindings(socket), event, err }, 'event handler failed');

  const errorEventOf = { publish: 'publishError', subscribe: 'subscribeError', messagePeer: 'messageError', message: 'messageError' } as const;
  const refusedActionOf = { publish: 'publish', subscribe: 'subscribe', messagePeer: 'message', message: 'message' } as const;

  /** Drops an event over the socket's rate; tells the client at most once a second. */
  function overRate(socket: SignalingSocket, event: keyof typeof handlers, args: unknown[]) {
    const t = performance.now();
    if (takeEvent(socket.data, deps.eventsPerSecond, t)) return false;
    telemetry.refused('rate');
    if (t - socket.data.rateNoticeAt >= 1000) {
      socket.data.rateNoticeAt = t;
      sendError(socket, errorEventOf[event], typeof args[0] === 'string' ? args[0] : socket.data.registration?.peerID, RATE_LIMITED);
      registry
        .countRefusal(socket.data.account.name, refusedActionOf[event], ['rate'])
        .catch((err: unknown) => log.error({ err }, 'counting a refusal failed'));
    }
    return true;
  }

  const sharedListeners = (Object.keys(handlers) as (keyof typeof handlers)[]).map((event) => {
    const handler = handlers[event];
    const onError = failed(event);
    const listener = function (this: SignalingSocket, ...args: unknown[]) {
      if (overRate(this, event, args)) return;
      // Only when the registry falls a second behind: the client hears of each event it loses.
      if (!enqueue(this, handler, args, onError, maxPending)) {
        sendError(this, errorEventOf[event], typeof args[0] === 'string' ? args[0] : this.data.registration?.peerID, EVENT_DROPPED, 'rate');
      }
    };
    return [event, listener] as const;
  });

  // Disconnects are handled in batches on the next turn of the event loop:
  // when thousands of sockets drop at once (a network cut), each batch is
  // bounded, timers and HTTP requests run between batches, and peers that
  // left together are not sent each other's close messages.
  const LEAVE_BATCH = 256;
  const departing = new Set<string>();
  const leaving: { socket: SignalingSocket; done: () => void }[] = [];
  let flushScheduled = false;

  const scheduleFlush = () => {
    if (flushScheduled || leaving.length === 0) return;
    flushScheduled = true;
    setImmediate(flushLeaves);
  };

  const failedDisconnect = failed('disconnect');

  async function flushLeaves() {
    flushScheduled = false;
    const batch = leaving.splice(0, LEAVE_BATCH);
    await Promise.all(batch.map(({ socket }) => leaveChannel(socket).catch((err: unknown) => failedDisconnect(socket, err))));
    for (const { socket, done } of batch) {
      departing.delete(socket.id);
      done();
    }
    scheduleFlush();
  }

  const leaveSoon = (socket: SignalingSocket) =>
    new Promise<void>((done) => {
      leaving.push({ socket, done });
      scheduleFlush();
    });

  function onDisconnect(this: SignalingSocket, reason: string) {
    deps.releaseConnection(this);
    departing.add(this.id);
    // Queued behind the socket's pending events, and never dropped.
    enqueue(this, leaveSoon, undefined, failedDisconnect);
    debug(() => ({ ...bindings(this), reason }), 'disconnected');
  }

  return { attach, leaveChannel, announceLeave, deliver };
}
