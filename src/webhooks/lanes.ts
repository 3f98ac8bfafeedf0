// Deliveries in lanes: one lane per order key (target + account + channel),
// so a channel's events arrive in order while other channels go on. A lane
// whose head fails waits for its backoff; the head is retried until it is
// delivered or older than the retry window. Used by both queues.
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../clock';

export interface Job {
  /** The queue's own id (a Redis stream entry id, or a counter). */
  ref: string;
  /** Order key: jobs with the same key are delivered one after another, in order. */
  key: string;
  /** The event's id (for logs). */
  eventId: string;
  /** When the event happened (ms): retries stop `retryMs` after it. */
  firstAt: number;
  attempts: number;
  notBefore: number;
}

export type Outcome = 'delivered' | 'expired';

export interface LaneOptions<J extends Job> {
  /** Resolves true when the receiver accepted the job (2xx). */
  send(job: J): Promise<boolean>;
  /** The job left its lane. */
  done(job: J, outcome: Outcome): void;
  concurrency: number;
  /** First retry delay, doubled per attempt up to `backoffMaxMs`. */
  backoffMs: number;
  backoffMaxMs: number;
  retryMs: number;
  log: Logger;
  clock?: Pick<Clock, 'now'>;
}

export interface Lanes<J extends Job> {
  add(job: J): void;
  /** Jobs waiting or in flight. */
  readonly size: number;
  /** Forgets every job not in flight (another instance takes over). */
  clear(): void;
  /** Resolves once no job is in flight; nothing new starts. */
  close(): Promise<void>;
}

/** The delay before attempt `attempts + 1`, with up to 10% jitter so retries do not come in step. */
export function backoffDelay(attempts: number, baseMs: number, maxMs: number): number {
  const delay = Math.min(baseMs * 2 ** Math.min(attempts - 1, 30), maxMs);
  return Math.round(delay * (1 + Math.random() * 0.1));
}

export function createLanes<J extends Job>(options: LaneOptions<J>): Lanes<J> {
  const clock = options.clock ?? systemClock;
  const now = () => clock.now();
  const lanes = new Map<string, J[]>();
  const busy = new Set<string>();
  let size = 0;
  let timer: NodeJS.Timeout | undefined;
  let timerAt = Infinity;
  let closed = false;
  const idle: (() => void)[] = [];
  // A burst of adds makes one pass over the lanes, not one per add.
  let pumpQueued = false;
  const pumpSoon = () => {
    if (pumpQueued) return;
    pumpQueued = true;
    queueMicrotask(() => {
      pumpQueued = false;
      pump();
    });
  };

  function schedule(at: number) {
    if (closed || at >= timerAt) return;
    clearTimeout(timer);
    timerAt = at;
    timer = setTimeout(
      () => {
        timer = undefined;
        timerAt = Infinity;
        pump();
      },
      Math.max(0, at - now()),
    );
    timer.unref();
  }

  function pump() {
    if (closed) return;
    const t = now();
    let earliest = Infinity;
    for (const [key, lane] of lanes) {
      if (busy.size >= options.concurrency) return;
      if (busy.has(key)) continue;
      const head = lane[0] as J;
      if (head.notBefore > t) {
        earliest = Math.min(earliest, head.notBefore);
        continue;
      }
      start(key, lane, head);
    }
    if (earliest < Infinity) schedule(earliest);
  }

  function finish(key: string, lane: J[], head: J, outcome: Outcome) {
    lane.shift();
    size--;
    if (lane.length === 0 && lanes.get(key) === lane) lanes.delete(key);
    options.done(head, outcome);
  }

  function start(key: string, lane: J[], head: J) {
    busy.add(key);
    head.attempts++;
    options
      .send(head)
      .catch(() => false)
      .then((ok) => {
        busy.delete(key);
        if (lanes.get(key) !== lane) return; // cleared meanwhile
        if (ok) finish(key, lane, head, 'delivered');
        else if (now() - head.firstAt >= options.retryMs) {
          options.log.warn({ event: head.eventId, attempts: head.attempts }, 'webhook given up: retry window over');
          finish(key, lane, head, 'expired');
        } else head.notBefore = now() + backoffDelay(head.attempts, options.backoffMs, options.backoffMaxMs);
      })
      .finally(() => {
        if (busy.size === 0) for (const resolve of idle.splice(0)) resolve();
        pump();
      });
  }

  return {
    add(job) {
      const lane = lanes.get(job.key);
      if (lane) lane.push(job);
      else lanes.set(job.key, [job]);
      size++;
      if (!busy.has(job.key) && busy.size < options.concurrency) pumpSoon();
    },
    get size() {
      return size;
    },
    clear() {
      lanes.clear();
      size = 0;
    },
    close() {
      closed = true;
      clearTimeout(timer);
      if (busy.size === 0) return Promise.resolve();
      return new Promise<void>((resolve) => idle.push(resolve));
    },
  };
}
