// account.limit events: usage crossing 80% and 100% of an account's
// `connections` or `totalBitrate`. Usage is read from the registry (the
// cluster's, with Redis) every `intervalMs`; an event fires when a threshold
// is crossed upwards, and again only after usage fell back below it.
import type { Logger } from 'pino';
import type { AccountStore } from './accounts/store';
import type { ChannelRegistry } from './channels/registry';
import type { LimitName, ServerEvents } from './server-events';

const THRESHOLDS = [80, 100] as const;

export interface LimitWatchDeps {
  registry: Pick<ChannelRegistry, 'usage'>;
  accounts: Pick<AccountStore, 'findByName'>;
  events: ServerEvents;
  log: Logger;
  intervalMs: number;
  /** In a cluster only one instance reports (the one delivering webhooks). */
  reports?: () => boolean;
}

/** The highest threshold `used` reaches of `max` (0: none, or no limit). */
export function thresholdReached(used: number, max: number): 0 | 80 | 100 {
  if (max <= 0) return 0;
  let reached: 0 | 80 | 100 = 0;
  for (const threshold of THRESHOLDS) if (used * 100 >= max * threshold) reached = threshold;
  return reached;
}

export function watchAccountLimits(deps: LimitWatchDeps) {
  const reached = new Map<string, 0 | 80 | 100>();
  let running = false;

  function check(account: string, limit: LimitName, used: number, max: number) {
    const key = `${limit}\u0000${account}`;
    const before = reached.get(key) ?? 0;
    const now = thresholdReached(used, max);
    if (now === before) return;
    if (now === 0) reached.delete(key);
    else reached.set(key, now);
    for (const threshold of THRESHOLDS)
      if (threshold > before && threshold <= now) deps.events.emit('account.limit', account, { limit, threshold, used, max });
  }

  async function tick() {
    if (running || (deps.reports && !deps.reports())) return;
    running = true;
    try {
      const seen = new Set<string>();
      for (const [account, usage] of await deps.registry.usage()) {
        const plan = deps.accounts.findByName(account)?.plan;
        if (!plan) continue;
        seen.add(account);
        check(account, 'connections', usage.connections, plan.connections);
        check(account, 'totalBitrate', usage.bitrate + usage.audioBitrate, plan.totalBitrate);
      }
      // An account with no usage left is below every threshold.
      for (const key of reached.keys()) if (!seen.has(key.slice(key.indexOf('\u0000') + 1))) reached.delete(key);
    } catch (err) {
      deps.log.debug({ err: (err as Error).message }, 'account limits not checked');
    } finally {
      running = false;
    }
  }

  const timer = setInterval(() => void tick(), deps.intervalMs);
  timer.unref();
  return { tick, close: () => clearInterval(timer) };
}
