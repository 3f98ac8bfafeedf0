// Abuse limits that no plan covers: how fast one socket may send events (the
// gate every client event passes first), and how many failed handshakes one
// address may make (token guessing). Both are bounded in memory whatever
// clients do. Times are monotonic milliseconds (Clock.monotonic()): a wall
// clock stepped back by NTP would otherwise stop every bucket from refilling,
// and every socket would go silent. Also here: on which event each client
// event's refusals are answered, and what they count as.
import type { Clock } from '../clock';
import type { Telemetry } from '../metrics';

/** The signaling events a client sends, each answered on its own error event. */
export const errorEventOf = {
  publish: 'publishError',
  subscribe: 'subscribeError',
  messagePeer: 'messageError',
  message: 'messageError',
} as const;
export type SignalingEvent = keyof typeof errorEventOf;

/** The events a refusal is answered on (docs/PROTOCOL.md, "Errors"). */
export type ErrorEvent = (typeof errorEventOf)[SignalingEvent] | 'uniquenessError';

/** What a refused event counts as in its account's stats (`refused.message`: relayed events). */
export const refusedActionOf = { publish: 'publish', subscribe: 'subscribe', messagePeer: 'message', message: 'message' } as const;

/** A token bucket: `perSecond` events a second, bursts up to `perSecond`. */
export interface EventBucket {
  tokens: number;
  refilledAt: number;
}

export function takeEvent(bucket: EventBucket, perSecond: number, now: number): boolean {
  const elapsed = now - bucket.refilledAt;
  if (elapsed > 0) {
    bucket.tokens = Math.min(perSecond, bucket.tokens + (elapsed * perSecond) / 1000);
    bucket.refilledAt = now;
  }
  if (bucket.tokens < 1) return false;
  bucket.tokens--;
  return true;
}

/** What the gate keeps per socket: its bucket, and when it last told the client. */
export interface GatedSocket {
  data: EventBucket & { rateNoticeAt: number };
}

export interface RateGateDeps<S extends GatedSocket, E> {
  eventsPerSecond: number;
  clock: Pick<Clock, 'monotonic'>;
  telemetry: Pick<Telemetry, 'refused'>;
  /** Tells the client its `event` was dropped for the rate; called at most once a second per socket. */
  notify(socket: S, event: E, args: unknown[]): void;
}

/**
 * The gate before every client event: true (and the event is dropped) when
 * the socket is over its rate. The client hears of it at most once a second,
 * so that a flood is not answered with a flood.
 */
export function createRateGate<S extends GatedSocket, E>({ eventsPerSecond, clock, telemetry, notify }: RateGateDeps<S, E>) {
  return function overRate(socket: S, event: E, args: unknown[]): boolean {
    const t = clock.monotonic();
    if (takeEvent(socket.data, eventsPerSecond, t)) return false;
    telemetry.refused('rate');
    if (t - socket.data.rateNoticeAt >= 1000) {
      socket.data.rateNoticeAt = t;
      notify(socket, event, args);
    }
    return true;
  };
}

/**
 * Failed handshakes per address in a fixed one-minute window. Successful
 * handshakes are never limited: many visitors of one site may share an
 * address, and the plan's `connections` bounds them already.
 */
export function createFailedAuthLimiter({ perMinute, maxAddresses = 100_000 }: { perMinute: number; maxAddresses?: number }) {
  const windows = new Map<string, { count: number; since: number }>();
  const current = (address: string, now: number) => {
    const entry = windows.get(address);
    if (entry && now - entry.since < 60_000) return entry;
    if (entry) windows.delete(address);
    return undefined;
  };
  return {
    blocked: (address: string, now: number) => (current(address, now)?.count ?? 0) >= perMinute,
    failed(address: string, now: number) {
      const entry = current(address, now);
      if (entry) return void entry.count++;
      // Maps iterate in insertion order: the oldest window goes first.
      if (windows.size >= maxAddresses) windows.delete(windows.keys().next().value as string);
      windows.set(address, { count: 1, since: now });
    },
    size: () => windows.size,
  };
}

/**
 * What the handshake and the REST API ask of a failed-attempt limit: this
 * process's own (above), or one a cluster shares through Redis, which answers
 * asynchronously (src/channels/redis/cluster.ts).
 */
export interface FailedAuthLimiter {
  blocked(address: string, now: number): boolean | Promise<boolean>;
  failed(address: string, now: number): void | Promise<void>;
}
