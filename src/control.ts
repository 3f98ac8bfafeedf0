// Requests that every instance of a cluster must answer: reload the accounts,
// report this instance's metrics. They travel through the Socket.IO adapter
// (serverSideEmit with acknowledgements), which counts the live instances by
// their Redis subscriptions and gives up on silent ones after 5 s; without a
// cluster only this instance answers.
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { Logger } from 'pino';
import type { Server } from 'socket.io';
import type { AccountStore, ReloadResult } from './accounts/store';

/** How long socket.io's cluster adapter waits for the other instances' answers. */
const ADAPTER_TIMEOUT_MS = 5000;

export type InstanceMetrics = MetricObjectWithValues<MetricValue<string>>[];

interface InterServerEvents {
  reloadAccounts(ack: (result: ReloadResult) => void): void;
  metrics(ack: (metrics: InstanceMetrics) => void): void;
  /** An address reached the failed-attempt limit: block it for `ms`. */
  authBlocked(address: string, ms: number, ack: () => void): void;
}

export interface ControlDeps {
  /** The Socket.IO server, with the cluster's adapter; undefined for a lone instance. */
  io: Server | undefined;
  accounts: AccountStore;
  /** This instance's own metrics. */
  localMetrics: () => Promise<InstanceMetrics>;
  /** Blocks an address another instance saw reach the failed-attempt limit. */
  blockAddress?: (address: string, ms: number) => void;
  log: Logger;
}

export interface Control {
  /** Reloads the accounts on every instance; `instances` says on how many it worked. */
  reloadAccounts(): Promise<ReloadResult>;
  /** The other instances' metrics (empty for a lone instance). */
  otherMetrics(): Promise<InstanceMetrics[]>;
  /** Tells every other instance to block `address` for `ms`; resolves once they have (or gave no answer in time). */
  announceBlocked(address: string, ms: number): Promise<void>;
}

export function createControl({ io, accounts, localMetrics, blockAddress, log }: ControlDeps): Control {
  // The signaling server's types declare no inter-server events; these are the only ones.
  const cluster = io as Server<Record<string, never>, Record<string, never>, InterServerEvents> | undefined;
  cluster?.on('reloadAccounts', (ack) => void accounts.reload().then(ack));
  cluster?.on('metrics', (ack) => void localMetrics().then(ack, () => ack([])));
  cluster?.on('authBlocked', (address, ms, ack) => {
    if (typeof address === 'string' && typeof ms === 'number') blockAddress?.(address, ms);
    ack();
  });

  /**
   * The other instances' answers; those that did not answer in time are left
   * out. `asked` is undefined when Redis could not say how many there are.
   */
  async function askOthers<T>(event: keyof InterServerEvents): Promise<{ answers: T[]; asked?: number }> {
    if (!cluster) return { answers: [], asked: 0 };
    let asked: number;
    try {
      asked = (await cluster.of('/').adapter.serverCount()) - 1;
    } catch (err) {
      log.warn({ event, err: (err as Error).message }, 'cannot reach the other instances: Redis does not answer');
      return { answers: [] };
    }
    return new Promise((resolve) => {
      // The adapter gives up after 5 s; this bounds the wait should it never answer at all.
      const timer = setTimeout(() => collect(new Error('no answer from the adapter'), []), ADAPTER_TIMEOUT_MS + 1000);
      const collect = (err: Error | null, answers: T[]) => {
        clearTimeout(timer);
        if (err) log.warn({ event, answered: answers.length, asked, err: err.message }, 'some instances did not answer');
        resolve({ answers, asked });
      };
      cluster.serverSideEmit(event, collect as never);
    });
  }

  return {
    async reloadAccounts() {
      if (!cluster) return accounts.reload();
      const [own, others] = await Promise.all([accounts.reload(), askOthers<ReloadResult>('reloadAccounts')]);
      const results = [own, ...others.answers];
      if (others.asked === undefined)
        return { ...own, outcome: 'failed', error: 'reloaded here only: Redis does not answer, the other instances were not reached' };
      const total = others.asked + 1;
      const reloaded = results.filter((r) => r.outcome === 'reloaded').length;
      const result: ReloadResult = { ...own, instances: { reloaded, total } };
      if (own.outcome === 'reloaded' && reloaded < total) {
        result.outcome = 'failed';
        result.error = `reloaded on ${reloaded} of ${total} instances`;
      }
      return result;
    },
    otherMetrics: async () => (await askOthers<InstanceMetrics>('metrics')).answers,
    announceBlocked: (address, ms) =>
      new Promise<void>((resolve) => {
        if (!cluster) return resolve();
        const timer = setTimeout(resolve, ADAPTER_TIMEOUT_MS + 1000);
        const done = () => {
          clearTimeout(timer);
          resolve();
        };
        cluster.serverSideEmit('authBlocked', address, ms, done as never);
      }),
  };
}
