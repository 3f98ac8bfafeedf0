// Abuse limits that no plan covers: how fast one socket may send events, and
// how many failed handshakes one address may make (token guessing). Both are
// bounded in memory whatever clients do. Times are monotonic milliseconds
// (performance.now()): a wall clock stepped back by NTP would otherwise stop
// every bucket from refilling, and every socket would go silent.

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
