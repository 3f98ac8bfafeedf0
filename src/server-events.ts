// What happens on the server, as typed events: signaling reports each one in
// one place, and each consumer (webhooks, the admin console) subscribes.
// A listener that throws is logged and never disturbs signaling or the other
// listeners. To add an event, add it to ServerEventMap.
import type { Logger } from 'pino';
import type { PeerRole, Stream } from './protocol';
import { systemClock, type Clock } from './clock';

export type LeaveReason = 'left' | 'disconnected' | 'timed out' | 'instance lost';
export type RefusedAction = 'connect' | 'publish' | 'subscribe';
export type LimitName = 'connections' | 'totalBitrate';

export interface ServerEventMap {
  /** A broadcaster published in the channel (a new publisher, not a re-publish). */
  'channel.started': { channel: string; publisher: string; stream: Stream };
  /** The channel's last peer is gone. */
  'channel.ended': { channel: string };
  'peer.joined': { channel: string; peerID: string; role: PeerRole };
  'peer.left': { channel: string; peerID: string; role: PeerRole | 'unknown'; reason: LeaveReason };
  /** A connect, publish or subscribe refused; `issues` are the plan limits (or `suspended`, `uniqueness`...). */
  refused: { action: RefusedAction; issues: string[]; peerID?: string | undefined; channel?: string | undefined };
  /** Usage crossed `threshold` percent of a plan limit. */
  'account.limit': { limit: LimitName; threshold: 80 | 100; used: number; max: number };
  /** Room changes, as the room's participants hear them in `roomUpdate`. */
  'room.joined': { room: string; participant: Record<string, unknown> };
  'room.left': { room: string; participant: Record<string, unknown> };
  'room.stream.started': { room: string; stream: Record<string, unknown> };
  'room.stream.ended': { room: string; stream: string };
  'room.message': { room: string; message: Record<string, unknown> };
}

/** The server event for a `roomUpdate` change (its one field), if it is one. */
export function roomEventOf(update: Record<string, unknown>) {
  const room = String(update.room);
  const record = (value: unknown) => value as Record<string, unknown>;
  if (update.participantJoin) return { type: 'room.joined', data: { room, participant: record(update.participantJoin) } } as const;
  if (update.participantLeft) return { type: 'room.left', data: { room, participant: record(update.participantLeft) } } as const;
  if (update.streamNew) return { type: 'room.stream.started', data: { room, stream: record(update.streamNew) } } as const;
  if (typeof update.streamRemove === 'string') return { type: 'room.stream.ended', data: { room, stream: update.streamRemove } } as const;
  if (update.messageNew) return { type: 'room.message', data: { room, message: record(update.messageNew) } } as const;
  return undefined;
}

export type ServerEventType = keyof ServerEventMap;

/** One event as consumers receive it: who it is about, what, when. */
export type ServerEvent = {
  [K in ServerEventType]: { type: K; account: string | null; time: number; data: ServerEventMap[K] };
}[ServerEventType];

export type ServerEventListener = (event: ServerEvent) => void;

export interface ServerEvents {
  emit<K extends ServerEventType>(type: K, account: string | null, data: ServerEventMap[K]): void;
  /** Subscribes to every event; returns the unsubscribe function. */
  subscribe(listener: ServerEventListener): () => void;
  /** Whether anyone listens (so callers may skip building an event). */
  readonly active: boolean;
}

export function createServerEvents({ log, clock = systemClock }: { log: Logger; clock?: Pick<Clock, 'now'> }): ServerEvents {
  const listeners = new Set<ServerEventListener>();
  return {
    emit(type, account, data) {
      if (listeners.size === 0) return;
      const event = { type, account, time: clock.now(), data } as ServerEvent;
      for (const listener of listeners) {
        try {
          listener(event);
        } catch (err) {
          log.error({ err, event: type }, 'server event listener failed');
        }
      }
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    get active() {
      return listeners.size > 0;
    },
  };
}

/** Socket.IO's disconnect reason as a peer.left reason. */
export function leaveReasonOf(disconnectReason: string | undefined): LeaveReason {
  if (disconnectReason === undefined) return 'left';
  return disconnectReason === 'ping timeout' ? 'timed out' : 'disconnected';
}

/** Refusal reasons that say nothing about the plan (bad input, floods, outages) make no `refused` event. */
const NOT_PLAN_REASONS = new Set(['validation', 'rate', 'unavailable', 'auth']);

interface ReportedSocket {
  data: { account: { name: string } };
  connected: boolean;
}

/**
 * The few calls signaling makes, turned into server events. Signaling code
 * calls these at the point where it already knows what happened.
 */
export function createSignalingReport(events: ServerEvents) {
  const disconnectReasons = new WeakMap<object, string>();
  let shuttingDown = false;
  return {
    /** From now on peers leave because the server closes. */
    shutdown() {
      shuttingDown = true;
    },
    /** Shared `disconnect` listener (`this` is the socket): remembers why, for peer.left. */
    onDisconnect(this: object, reason: string) {
      disconnectReasons.set(this, reason);
    },
    joined(account: string, join: { channel: string; peerID: string; role: PeerRole; stream?: Stream | undefined }) {
      events.emit('peer.joined', account, { channel: join.channel, peerID: join.peerID, role: join.role });
      if (join.role === 'broadcaster' && join.stream)
        events.emit('channel.started', account, { channel: join.channel, publisher: join.peerID, stream: join.stream });
    },
    left(socket: ReportedSocket, registration: { channel: string; peerID: string; role: PeerRole }, remaining: number) {
      const reason: LeaveReason = shuttingDown
        ? 'disconnected'
        : socket.connected
          ? 'left'
          : leaveReasonOf(disconnectReasons.get(socket) ?? 'transport close');
      const account = socket.data.account.name;
      events.emit('peer.left', account, { ...registration, reason });
      if (remaining === 0) events.emit('channel.ended', account, { channel: registration.channel });
    },
    /** A peer whose instance died, as the cluster reports it (its account and role are known only from a peer still here). */
    lost(account: string | null, channel: string, peerID: string, remaining: number) {
      events.emit('peer.left', account, { channel, peerID, role: 'unknown', reason: 'instance lost' });
      if (remaining === 0) events.emit('channel.ended', account, { channel });
    },
    refused(account: string | undefined, action: RefusedAction | string, reasons: readonly string[], peerID?: unknown, channel?: string) {
      const issues = reasons.filter((r) => !NOT_PLAN_REASONS.has(r));
      if (!account || issues.length === 0) return;
      const refusedAction = action === 'publishError' ? 'publish' : action === 'subscribeError' ? 'subscribe' : action;
      if (refusedAction !== 'connect' && refusedAction !== 'publish' && refusedAction !== 'subscribe') return;
      events.emit('refused', account, {
        action: refusedAction,
        issues,
        peerID: typeof peerID === 'string' ? peerID : undefined,
        channel,
      });
    },
  };
}
export type SignalingReport = ReturnType<typeof createSignalingReport>;
