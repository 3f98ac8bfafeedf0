// The one accounts interface the handshake talks to: the static token beside
// an optional source of account rows (MySQL, a JSON file). A reload swaps the
// whole index at once, and a failed reload keeps the last good one.
import { timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { UNLIMITED } from '../limits';
import { indexAccounts, STATIC_ACCOUNT, type Account, type AccountRows } from './account';

/** Where account rows come from. */
export interface AccountSource {
  /** Names the source in logs, without secrets. */
  readonly description: string;
  fetch(): Promise<AccountRows>;
  close(): Promise<void>;
}

export interface ReloadResult {
  status: 'Updating Accounts';
  outcome: 'reloaded' | 'failed' | 'no-database';
  accounts: number;
  skipped?: number;
  error?: string;
  /** In a cluster: on how many of the live instances the reload worked. */
  instances?: { reloaded: number; total: number };
}

export interface AccountStore {
  findByToken(token: string): Account | undefined;
  /** The account shown under `name` (the static account included), for user/PIN and signed tokens. */
  findByName(name: string): Account | undefined;
  /** How many accounts have a webhook URL. */
  webhookAccounts(): number;
  /** Loads the rows again; never rejects. */
  reload(): Promise<ReloadResult>;
  /** True once the static token is set or the source has loaded once. */
  isReady(): boolean;
  /** True when there is no source, or it has loaded at least once. */
  hasLoaded(): boolean;
  count(): number;
  close(): Promise<void>;
}

export interface AccountStoreOptions {
  staticToken?: string | undefined;
  /** The static token's account name (default `_static`). */
  staticAccount?: string | undefined;
  /** The static account's login URL for user/PIN sign-in. */
  staticLogin?: string | undefined;
  source?: AccountSource | undefined;
  log: Logger;
  /** Retry a failed start-up load after this many ms, doubling up to `retryMaxMs`. */
  retryMs?: number;
  retryMaxMs?: number;
  /** Reload every this many ms (0: only on request). */
  refreshMs?: number;
}

export function createAccountStore(options: AccountStoreOptions): AccountStore {
  const { source, log } = options;
  const staticToken = options.staticToken ? Buffer.from(options.staticToken) : undefined;
  const staticAccount: Account = {
    name: options.staticAccount ?? STATIC_ACCOUNT,
    suspended: false,
    plan: UNLIMITED,
    ...(options.staticToken && { token: options.staticToken }),
    loginURL: options.staticLogin,
  };
  let byToken = new Map<string, Account>();
  let byName = new Map<string, Account>();
  let webhookAccounts = 0;
  let loaded = false;
  let closed = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let refreshTimer: NodeJS.Timeout | undefined;
  let inFlight: Promise<ReloadResult> | undefined;

  async function load(): Promise<ReloadResult> {
    if (!source) return { status: 'Updating Accounts', outcome: 'no-database', accounts: 0 };
    try {
      const { byToken: next, byName: nextByName, skipped, renamed } = indexAccounts(await source.fetch(), staticAccount.name);
      for (const row of skipped) log.warn({ table: row.table, row: row.name, reason: row.reason }, 'account row skipped');
      for (const account of renamed) log.warn(account, 'account name already taken, shown with its id');
      byToken = next;
      byName = nextByName;
      webhookAccounts = [...nextByName.values()].filter((a) => a.webhookURL).length;
      loaded = true;
      log.info({ accounts: next.size, skipped: skipped.length, source: source.description }, 'accounts loaded');
      return { status: 'Updating Accounts', outcome: 'reloaded', accounts: next.size, skipped: skipped.length };
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      log.error({ source: source.description, err: error, kept: byToken.size }, 'accounts reload failed, keeping the last good accounts');
      return { status: 'Updating Accounts', outcome: 'failed', accounts: byToken.size, error };
    }
  }

  // Concurrent reload requests share one database round trip.
  function reload(): Promise<ReloadResult> {
    inFlight ??= load().finally(() => (inFlight = undefined));
    return inFlight;
  }

  function retryUntilLoaded(delay: number) {
    if (closed || loaded || !source) return;
    retryTimer = setTimeout(async () => {
      const result = await reload();
      if (result.outcome === 'failed') retryUntilLoaded(Math.min(delay * 2, options.retryMaxMs ?? 60_000));
    }, delay);
    retryTimer.unref();
  }

  if (source) {
    void reload().then((r) => r.outcome === 'failed' && retryUntilLoaded(options.retryMs ?? 1000));
    if (options.refreshMs) {
      refreshTimer = setInterval(() => void reload(), options.refreshMs);
      refreshTimer.unref();
    }
  }

  return {
    findByToken(token) {
      // Constant time for a token of the right length (the length alone is no secret).
      const presented = staticToken && Buffer.from(token);
      if (staticToken && presented?.length === staticToken.length && timingSafeEqual(presented, staticToken)) return staticAccount;
      return byToken.get(token);
    },
    findByName(name) {
      if (staticToken && name === staticAccount.name) return staticAccount;
      return byName.get(name);
    },
    webhookAccounts: () => webhookAccounts,
    reload,
    isReady: () => Boolean(staticToken) || loaded,
    hasLoaded: () => !source || loaded,
    count: () => byToken.size,
    async close() {
      closed = true;
      clearTimeout(retryTimer);
      clearInterval(refreshTimer);
      await inFlight?.catch(() => undefined);
      await source?.close();
    },
  };
}
