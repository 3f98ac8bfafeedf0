// Where webhooks wait for delivery. In memory (one instance; lost on a
// crash) or in a Redis Stream (redis-queue.ts). Both are bounded: an event
// that does not fit is dropped, counted and logged.
import type { Logger } from 'pino';
import { createLanes, type Job } from './lanes';
import { systemClock, type Clock } from '../clock';

/** One webhook to deliver: which target, in which lane, what body. No secret is kept here. */
export interface QueuedWebhook {
  /** 'global' (WEBHOOK_URL) or 'account' (the account's properties.webhookURL). */
  target: 'global' | 'account';
  account: string | null;
  /** Order key: the target, account and channel. */
  key: string;
  eventId: string;
  body: string;
  firstAt: number;
}

export interface QueueStats {
  queued: number;
  delivered: number;
  expired: number;
  dropped: number;
}

export interface WebhookQueue {
  /** Never waits and never throws: signaling calls it. */
  push(item: QueuedWebhook): void;
  stats(): QueueStats;
  /** Whether this instance delivers (in memory: always; on Redis: the one holding the lease). */
  isDelivering(): boolean;
  close(): Promise<void>;
}

export interface DeliveryOptions {
  send(item: QueuedWebhook): Promise<boolean>;
  concurrency: number;
  backoffMs: number;
  backoffMaxMs: number;
  retryMs: number;
  maxQueued: number;
  log: Logger;
  clock?: Pick<Clock, 'now'>;
}

/** Logs drops at most every 10 s, with the count so far. */
export function dropCounter(log: Logger, clock: Pick<Clock, 'now'> = systemClock) {
  let dropped = 0;
  let loggedAt = -Infinity;
  return {
    drop(why: string) {
      dropped++;
      const t = clock.now();
      if (t - loggedAt < 10_000) return;
      loggedAt = t;
      log.warn({ dropped, why }, 'webhook queue full: event dropped');
    },
    get count() {
      return dropped;
    },
  };
}

type MemoryJob = Job & { item: QueuedWebhook };

export function createMemoryQueue(options: DeliveryOptions): WebhookQueue {
  const drops = dropCounter(options.log, options.clock);
  let seq = 0;
  let delivered = 0;
  let expired = 0;
  const lanes = createLanes<MemoryJob>({
    ...options,
    send: (job) => options.send(job.item),
    done: (_job, outcome) => (outcome === 'delivered' ? delivered++ : expired++),
  });
  return {
    push(item) {
      if (lanes.size >= options.maxQueued) return drops.drop('memory queue full');
      lanes.add({ ref: String(++seq), key: item.key, eventId: item.eventId, firstAt: item.firstAt, attempts: 0, notBefore: 0, item });
    },
    stats: () => ({ queued: lanes.size, delivered, expired, dropped: drops.count }),
    isDelivering: () => true,
    close: () => lanes.close(),
  };
}
