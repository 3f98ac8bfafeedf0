// Webhooks in a Redis Stream with a consumer group, so they survive an
// instance restart and exactly one instance delivers each. Every instance
// adds to the stream; the instance holding a short lease reads it through the
// group and delivers, in lanes (ordered per channel). An entry is acked and
// deleted once delivered or expired; until then it stays in the group's
// pending list, and a new lease holder claims it (XAUTOCLAIM) and delivers it.
import type { Logger } from 'pino';
import { createCommandClient, type RedisTarget } from '../channels/redis/connection';
import { createLanes, type Job } from './lanes';
import { dropCounter, type DeliveryOptions, type QueuedWebhook, type WebhookQueue } from './queue';

export interface RedisQueueOptions extends DeliveryOptions {
  /** REDIS_URL or REDIS_CLUSTER_NODES. */
  target: RedisTarget;
  prefix: string;
  /** This instance's name in the consumer group. */
  instanceId: string;
  /** How long the delivery lease lasts without renewal; renewed every third of it. */
  leaseMs: number;
}

const GROUP = 'delivery';
/** Entries the lease holder keeps in memory at once; the rest wait in the stream. */
const WINDOW = 1000;
const READ_COUNT = 100;

// Adds an entry unless the stream is full (bounded like the memory queue).
const ADD_SCRIPT = `
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))`;
// Renews the lease held by ARGV[1], or takes it when free; 1 when held.
const LEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0`;
const RELEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

type RedisJob = Job & { item: QueuedWebhook };
type Entry = [string, string[] | null];

function toJob(id: string, fields: string[]): RedisJob | undefined {
  const f = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) f.set(String(fields[i]), String(fields[i + 1]));
  const target = f.get('target');
  const key = f.get('key');
  const body = f.get('body');
  if ((target !== 'global' && target !== 'account') || !key || !body) return undefined;
  const item: QueuedWebhook = {
    target,
    account: f.get('account') || null,
    key,
    eventId: f.get('eventId') ?? '',
    body,
    firstAt: Number(f.get('firstAt')) || 0,
  };
  return { ref: id, key, eventId: item.eventId, firstAt: item.firstAt, attempts: 0, notBefore: 0, item };
}

export function createRedisQueue(options: RedisQueueOptions): WebhookQueue {
  const log: Logger = options.log;
  const stream = `${options.prefix}webhooks`;
  const leaseKey = `${options.prefix}webhooks:lease`;
  const me = options.instanceId;
  const drops = dropCounter(log, options.clock);
  let delivered = 0;
  let expired = 0;
  /** Holding the lease: this instance is the one that delivers. */
  let holding = false;
  /** Reading the stream (once it exists). */
  let leading = false;
  let closed = false;
  let reading: Promise<void> | undefined;
  let spaceWaiter: (() => void) | undefined;

  // Commands fail at once while Redis is away; the reader blocks in XREADGROUP on a connection of its own.
  // Both keys are single keys: on a Redis Cluster each command goes to the shard of its key.
  const client = createCommandClient(options.target);
  const reader = createCommandClient(options.target, { offlineQueue: true });
  for (const c of [client, reader]) c.onError((err: Error) => log.debug({ err: err.message }, 'webhook queue: Redis error'));
  const connecting = Promise.all([client.connect(), reader.connect()]).catch((err: unknown) =>
    log.error({ err }, 'webhook queue: Redis client stopped'),
  );

  const lanes = createLanes<RedisJob>({
    ...options,
    send: (job) => options.send(job.item),
    done(job, outcome) {
      if (outcome === 'delivered') delivered++;
      else expired++;
      client
        .send(['XACK', stream, GROUP, job.ref], stream)
        .then(() => client.send(['XDEL', stream, job.ref], stream))
        // Left pending: delivered again after a takeover (at least once).
        .catch((err: unknown) => log.warn({ err: (err as Error).message, event: job.eventId }, 'webhook delivered but not acknowledged'));
      const wake = spaceWaiter;
      spaceWaiter = undefined;
      wake?.();
    },
  });

  async function ensureGroup() {
    try {
      await client.send(['XGROUP', 'CREATE', stream, GROUP, '0'], stream);
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
  }

  /** Takes over what earlier lease holders read but did not finish. */
  async function claimPending() {
    for (let start = '0-0', rounds = 0; rounds < 10_000; rounds++) {
      const [next] = (await client.send(['XAUTOCLAIM', stream, GROUP, me, '0', start, 'COUNT', String(READ_COUNT), 'JUSTID'], stream)) as [
        string,
        ...unknown[],
      ];
      if (!next || next === '0-0') return;
      start = next;
    }
  }

  const add = (entries: Entry[]) => {
    for (const [id, fields] of entries) {
      const job = fields && toJob(id, fields);
      if (job) lanes.add(job);
      // Deleted or unreadable: nothing to deliver.
      else void client.send(['XACK', stream, GROUP, id], stream).catch(() => undefined);
    }
  };

  async function readLoop() {
    // First this consumer's own pending entries (claimed ones included), in stream order; then new ones.
    let cursor = '0';
    while (leading && !closed) {
      if (lanes.size >= WINDOW) {
        await new Promise<void>((resolve) => (spaceWaiter = resolve));
        continue;
      }
      const blocking = cursor === '>' ? ['BLOCK', '1000'] : [];
      const reply = (await reader.send(
        ['XREADGROUP', 'GROUP', GROUP, me, 'COUNT', String(READ_COUNT), ...blocking, 'STREAMS', stream, cursor],
        stream,
      )) as [string, Entry[]][] | null;
      if (!leading || closed) return;
      const entries = reply?.[0]?.[1] ?? [];
      add(entries);
      if (cursor !== '>') cursor = entries.length ? (entries[entries.length - 1] as Entry)[0] : '>';
    }
  }

  async function lead() {
    if (closed) return;
    try {
      const held = Number(await client.send(['EVAL', LEASE_SCRIPT, '1', leaseKey, me, String(options.leaseMs)], leaseKey)) === 1;
      holding = held;
      // Closed meanwhile: close() waits for this renewal, then releases what it took.
      if (closed) return;
      // The first event creates the stream: until then there is nothing to read, and no key is left behind.
      if (held && !leading && Number(await client.send(['EXISTS', stream], stream)) === 1) {
        await ensureGroup();
        await claimPending();
        leading = true;
        log.info('webhook delivery: this instance delivers');
        reading = readLoop()
          .catch((err: unknown) => {
            if (!closed) log.warn({ err: (err as Error).message }, 'webhook delivery: reading the stream failed');
          })
          .finally(() => {
            reading = undefined;
            // Read again on the next renewal.
            if (leading && !closed) stepDown('read failed');
          });
      } else if (!held && leading) stepDown('lease lost');
    } catch (err) {
      holding = false;
      if (leading) stepDown('Redis unreachable');
      log.debug({ err: (err as Error).message }, 'webhook delivery: lease not renewed');
    }
  }

  function stepDown(why: string) {
    leading = false;
    // The next lease holder claims these from the pending list.
    lanes.clear();
    const wake = spaceWaiter;
    spaceWaiter = undefined;
    wake?.();
    log.info({ why }, 'webhook delivery: this instance stands by');
  }

  // One renewal at a time; close() waits for the one in flight, which may take the lease.
  let renewing: Promise<void> | undefined;
  const renew = () => (renewing ??= lead().finally(() => (renewing = undefined)));
  const renewEvery = Math.max(50, Math.round(options.leaseMs / 3));
  const timer = setInterval(() => void renew(), renewEvery);
  timer.unref();
  void connecting.then(renew);

  return {
    push(item) {
      if (!client.isReady()) return drops.drop('Redis unavailable');
      const fields = [
        'target',
        item.target,
        'account',
        item.account ?? '',
        'key',
        item.key,
        'eventId',
        item.eventId,
        'body',
        item.body,
        'firstAt',
        String(item.firstAt),
      ];
      client
        .send(['EVAL', ADD_SCRIPT, '1', stream, String(options.maxQueued), ...fields], stream)
        .then((id) => {
          if (id == null) drops.drop('Redis stream full');
        })
        .catch((err: unknown) => {
          drops.drop('Redis unavailable');
          log.debug({ err: (err as Error).message }, 'webhook not queued');
        });
    },
    stats: () => ({ queued: lanes.size, delivered, expired, dropped: drops.count }),
    isDelivering: () => holding,
    async close() {
      closed = true;
      clearInterval(timer);
      await renewing;
      const wasHolding = holding;
      holding = false;
      leading = false;
      const wake = spaceWaiter;
      spaceWaiter = undefined;
      wake?.();
      await lanes.close();
      await connecting;
      // Let another instance take over at once rather than after the lease runs out.
      if (wasHolding && client.isReady()) await client.send(['EVAL', RELEASE_SCRIPT, '1', leaseKey, me], leaseKey).catch(() => undefined);
      // The reader may sit in a blocking read: drop its connection.
      reader.destroy();
      await reading?.catch(() => undefined);
      // Redis may go away under a closing instance: the connection is dropped either way.
      await client.close();
    },
  };
}
