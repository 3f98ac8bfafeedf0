// Signed webhooks: each server event goes to the global WEBHOOK_URL (signed
// with WEBHOOK_SECRET) and to its account's properties.webhookURL (signed with
// the account's token), through a bounded queue that retries with backoff.
// Signaling only pushes to the queue; it never waits for a receiver.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { AccountStore } from '../accounts/store';
import type { Config } from '../config';
import type { ServerEvent, ServerEvents } from '../server-events';
import { createMemoryQueue, type QueuedWebhook, type QueueStats, type WebhookQueue } from './queue';
import type { RedisTarget } from '../channels/redis/connection';
import { createRedisQueue } from './redis-queue';
import { SIGNATURE_HEADER, signatureHeader } from './signature';
import { systemClock, type Clock } from '../clock';

/** The WEBHOOK_* settings delivery needs (the account.limit check has its own). */
export type WebhookConfig = Omit<Config['webhook'], 'limitCheckMs'>;

/** What a receiver gets as the JSON body. */
export interface WebhookEnvelope {
  id: string;
  type: ServerEvent['type'];
  account: string | null;
  /** ISO 8601. */
  time: string;
  data: ServerEvent['data'];
}

export interface WebhookDeps {
  config: WebhookConfig;
  events: ServerEvents;
  accounts: Pick<AccountStore, 'findByName'>;
  log: Logger;
  version: string;
  /** With Redis: the stream and lease live there. */
  redis?: { target: RedisTarget; prefix: string; instanceId: string; leaseMs: number } | undefined;
  clock?: Pick<Clock, 'now'>;
}

export interface Webhooks {
  stats(): QueueStats;
  isDelivering(): boolean;
  close(): Promise<void>;
}

/** The URL as logs show it: origin and path, never a query that may hold a secret. */
const shown = (url: string) => {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return 'invalid URL';
  }
};

export function createWebhooks(deps: WebhookDeps): Webhooks {
  const { config, accounts, events } = deps;
  const clock = deps.clock ?? systemClock;
  const log = deps.log.child({ module: 'webhooks' });
  const userAgent = `VideoWhisper-WebRTC/${deps.version}`;
  // A slow receiver must not hold a shutdown: close() aborts the requests in flight.
  const closing = new AbortController();

  /** The URL and secret now, so a rotated token or a changed URL applies to retries too. */
  function destination(item: QueuedWebhook): { url: string; secret: string } | undefined {
    if (item.target === 'global') return config.url && config.secret ? { url: config.url, secret: config.secret } : undefined;
    const found = item.account ? accounts.findByName(item.account) : undefined;
    const url = found?.webhookURL;
    return found?.token && url ? { url, secret: found.token } : undefined;
  }

  async function send(item: QueuedWebhook): Promise<boolean> {
    const to = destination(item);
    // The account or its URL is gone: nobody to tell.
    if (!to) return true;
    try {
      const response = await fetch(to.url, {
        method: 'POST',
        body: item.body,
        redirect: 'manual',
        signal: AbortSignal.any([AbortSignal.timeout(config.timeoutMs), closing.signal]),
        headers: {
          'Content-Type': 'application/json',
          'User-Agent': userAgent,
          'Webhook-Id': item.eventId,
          [SIGNATURE_HEADER]: signatureHeader(to.secret, item.body, Math.floor(clock.now() / 1000)),
        },
      });
      await response.body?.cancel().catch(() => undefined);
      if (response.ok) return true;
      log.info({ event: item.eventId, url: shown(to.url), status: response.status }, 'webhook refused by the receiver, will retry');
    } catch (err) {
      log.info({ event: item.eventId, url: shown(to.url), err: (err as Error).message }, 'webhook not delivered, will retry');
    }
    return false;
  }

  const delivery = { send, ...config, maxQueued: config.queueSize, log, clock };
  const queue: WebhookQueue = deps.redis ? createRedisQueue({ ...delivery, ...deps.redis }) : createMemoryQueue(delivery);

  const unsubscribe = events.subscribe((event) => {
    const targets: QueuedWebhook['target'][] = [];
    if (config.url && config.secret) targets.push('global');
    if (event.account && accounts.findByName(event.account)?.webhookURL) targets.push('account');
    if (targets.length === 0) return;
    const envelope: WebhookEnvelope = {
      id: randomUUID(),
      type: event.type,
      account: event.account,
      time: new Date(event.time).toISOString(),
      data: event.data,
    };
    const body = JSON.stringify(envelope);
    // One lane per channel, and per room (account events without either share the account's lane).
    const channel = 'channel' in event.data ? event.data.channel : 'room' in event.data ? `room ${event.data.room}` : '';
    for (const target of targets)
      queue.push({
        target,
        account: event.account,
        key: JSON.stringify([target, event.account, channel]),
        eventId: envelope.id,
        body,
        firstAt: event.time,
      });
  });

  return {
    stats: () => queue.stats(),
    isDelivering: () => queue.isDelivering(),
    async close() {
      unsubscribe();
      closing.abort();
      await queue.close();
    },
  };
}
