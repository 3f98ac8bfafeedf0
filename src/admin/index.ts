// The /admin console: a page (HTML, CSS, its compiled script and uPlot, all
// served from here with a strict CSP) and a Socket.IO namespace /admin that
// the page joins with the API key. The namespace pushes the live view every
// sample and the last hour's samples on sign-in, and carries the actions
// (suspend, change plan, rotate a token, disconnect a peer), each logged.
import { createHash, timingSafeEqual } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import express, { type Response } from 'express';
import type { Logger } from 'pino';
import type { Namespace, Server, Socket } from 'socket.io';
import { z } from 'zod';
import { STATIC_ACCOUNT } from '../accounts/account';
import type { AccountManager, AccountView } from '../accounts/manage';
import type { AccountStore } from '../accounts/store';
import type { ChannelRegistry, UsageSnapshot } from '../channels/registry';
import { streamFields } from '../protocol';
import { createFailedAuthLimiter } from '../signaling/rate-limits';
import type { Activity } from './activity';
import type { AccountRowView, ActionResult, ChannelView, InstanceView, LiveView, Sample } from './client/view';
import { systemClock, type Clock } from '../clock';

const root = path.resolve(__dirname, '..', '..');
const pageDir = path.join(root, 'src', 'admin', 'page');
const clientScript = path.join(root, 'dist', 'admin', 'public', 'admin.js');
const uplotDir = path.dirname(require.resolve('uplot/dist/uPlot.iife.min.js'));

// Everything comes from this server; no inline script or style, no frames.
const contentSecurityPolicy = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Channels sent in one view; the page says how many more there are. */
const MAX_CHANNELS = 200;
const HOUR_MS = 3_600_000;
const ACCOUNTS_REFRESH_MS = 30_000;

export interface AdminDeps {
  io: Server;
  registry: ChannelRegistry;
  accounts: Pick<AccountStore, 'findByName'>;
  manager: AccountManager | undefined;
  activity: Activity;
  config: { apiKey: string | undefined; production: boolean; sampleMs: number; failedAuthPerMinute: number };
  webhooks: { stats(): LiveView['webhooks'] };
  /** The cluster's instances with their heartbeats; this one alone without Redis. */
  instances: () => Promise<InstanceView[]>;
  log: Logger;
  clock?: Clock;
}

const actionSchema = z.discriminatedUnion('action', [
  z.strictObject({ action: z.literal('suspend'), id: z.number().int().positive(), suspended: z.boolean() }),
  z.strictObject({ action: z.literal('plan'), id: z.number().int().positive(), planId: z.number().int().positive().nullable() }),
  z.strictObject({ action: z.literal('rotate'), id: z.number().int().positive() }),
  z.strictObject({ action: z.literal('disconnect'), socketId: z.string().min(1).max(64) }),
]);

const digest = (value: string) => createHash('sha256').update(value).digest();

function sendFile(res: Response, file: string, type?: string) {
  if (type) res.type(type);
  res.sendFile(file, { headers: { 'Cache-Control': 'no-cache' } });
}

export function createAdmin(deps: AdminDeps) {
  const { io, registry, accounts, manager, activity, config } = deps;
  const clock = deps.clock ?? systemClock;
  const now = () => clock.now();
  const log = deps.log.child({ module: 'admin' });
  const expected = config.apiKey ? digest(config.apiKey) : undefined;
  const failedSignIns = createFailedAuthLimiter({ perMinute: config.failedAuthPerMinute });
  const capacity = Math.max(1, Math.ceil(HOUR_MS / config.sampleMs));
  const history: Sample[] = [];
  let listed: AccountView[] = [];
  let plans: { id: number; name: string }[] = [];
  let listedAt = -Infinity;
  let lastSampleAt = now();
  let closed = false;

  // --- the page --------------------------------------------------------------
  const router = express.Router();
  router.use((_req, res, next) => {
    res.set({
      'Content-Security-Policy': contentSecurityPolicy,
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
      'Cache-Control': 'no-store',
    });
    next();
  });
  router.get('/', (_req, res) => sendFile(res, path.join(pageDir, 'index.html')));
  router.get('/admin.css', (_req, res) => sendFile(res, path.join(pageDir, 'admin.css')));
  router.get('/uPlot.min.css', (_req, res) => sendFile(res, path.join(uplotDir, 'uPlot.min.css')));
  router.get('/uPlot.iife.min.js', (_req, res) => sendFile(res, path.join(uplotDir, 'uPlot.iife.min.js'), 'text/javascript'));
  router.get('/admin.js', (_req, res) => {
    if (!existsSync(clientScript)) {
      res.status(503).type('text/plain').send('The console script is not built yet: run `npm run build` on the server.');
      return;
    }
    sendFile(res, clientScript, 'text/javascript');
  });

  // --- the namespace ----------------------------------------------------------
  const namespace: Namespace = io.of('/admin');
  const address = (socket: Socket) => socket.handshake.address;
  namespace.use((socket, next) => {
    const ip = address(socket);
    const t = clock.monotonic();
    if (failedSignIns.blocked(ip, t)) return next(new Error('Too many failed sign-ins: wait a minute'));
    const key = (socket.handshake.auth as { key?: unknown } | undefined)?.key;
    const valid = !config.production || (expected !== undefined && typeof key === 'string' && timingSafeEqual(digest(key), expected));
    if (valid) return next();
    failedSignIns.failed(ip, t);
    log.warn({ ip }, 'admin sign-in refused: invalid API key');
    next(new Error('Invalid API key'));
  });

  async function refreshAccounts(force = false) {
    if (!manager || (!force && now() - listedAt < ACCOUNTS_REFRESH_MS)) return;
    listedAt = now();
    try {
      const [accountList, planList] = await Promise.all([manager.listAccounts(), manager.listPlans()]);
      listed = accountList;
      plans = planList.map((p) => ({ id: p.id, name: p.name }));
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'admin: accounts not listed');
    }
  }

  /** The accounts' rows: those listed by the account manager, then any other with usage, busiest first. */
  function accountRows(usage: UsageSnapshot): AccountRowView[] {
    const byName = new Map(usage.map(([name, u]) => [name, u]));
    const planNames = new Map(plans.map((p) => [p.id, p.name]));
    const rows = new Map<string, AccountRowView>();
    const row = (name: string, view?: AccountView): AccountRowView => {
      const found = accounts.findByName(name);
      const plan = found?.plan;
      const u = byName.get(name);
      return {
        id: view?.id ?? null,
        name,
        suspended: view?.suspended ?? found?.suspended ?? false,
        planId: view?.planId ?? null,
        planName: view?.planId != null ? (planNames.get(view.planId) ?? null) : null,
        connections: u?.connections ?? 0,
        maxConnections: plan?.connections ?? 0,
        bitrate: u ? u.bitrate + u.audioBitrate : 0,
        maxBitrate: plan?.totalBitrate ?? 0,
        refused: u ? u.refused.connect + u.refused.publish + u.refused.subscribe : 0,
      };
    };
    for (const view of listed) rows.set(view.name, row(view.name, view));
    for (const [name] of usage) if (!rows.has(name)) rows.set(name, row(name));
    return [...rows.values()].sort((a, b) => b.connections - a.connections || (a.name < b.name ? -1 : 1));
  }

  function totalsOf(usage: UsageSnapshot) {
    const totals = { connections: 0, channels: 0, peers: 0 };
    for (const [, u, channels] of usage) {
      totals.connections += u.connections;
      totals.channels += channels;
      totals.peers += u.players + u.broadcasters;
    }
    return totals;
  }

  /** What a console shows: with the channels' peers, so read only while a console is open. */
  async function liveView(usage: UsageSnapshot): Promise<LiveView> {
    await refreshAccounts();
    const snapshot = await registry.snapshot();
    const streams = new Map(snapshot.channels.map(([name, summary]) => [`${summary.account}\u0000${name}`, summary]));
    const channels: ChannelView[] = [];
    for (const [name, peers] of snapshot.connections.slice(0, MAX_CHANNELS)) {
      const list = Object.values(peers);
      const account = list[0]?.account ?? STATIC_ACCOUNT;
      const s = streams.get(`${account}\u0000${name}`);
      channels.push({
        account,
        channel: name,
        stream: s ? { ...streamFields(s), publisher: s.publisher } : null,
        peers: list.map((p) => ({ peerID: p.peerID, type: p.type, socketId: p.socketId })),
      });
    }
    return {
      time: now(),
      totals: totalsOf(usage),
      accounts: accountRows(usage),
      channels,
      moreChannels: Math.max(0, snapshot.connections.length - MAX_CHANNELS),
      refusals: activity.refusals(),
      instances: await deps.instances().catch(() => []),
      plans,
      webhooks: deps.webhooks.stats(),
      manageable: Boolean(manager),
    };
  }

  /** One point for the charts, from the accounts' usage and the activity since the last point. */
  function sampleOf(usage: UsageSnapshot): Sample {
    const t = now();
    const seconds = Math.max((t - lastSampleAt) / 1000, 0.001);
    lastSampleAt = t;
    const { handshakes, refusals, handshakesByAccount, refusalsByAccount } = activity.take();
    const totals = totalsOf(usage);
    const perAccount: Sample['accounts'] = {};
    // The busiest accounts only, so a sample stays small with many sites.
    const busiest = [...usage].sort(([a, ua], [b, ub]) => ub.connections - ua.connections || (a < b ? -1 : 1)).slice(0, 20);
    for (const [name, u, channels] of busiest)
      perAccount[name] = [
        u.connections,
        channels,
        (handshakesByAccount.get(name) ?? 0) / seconds,
        (refusalsByAccount.get(name) ?? 0) / seconds,
      ];
    return {
      time: t,
      connections: totals.connections,
      channels: totals.channels,
      handshakesPerSecond: handshakes / seconds,
      refusalsPerSecond: refusals / seconds,
      accounts: perAccount,
    };
  }

  // Every instance samples for its own consoles. A sample reads only the
  // accounts' usage; the channels' peers are read only while a console of
  // this instance is open.
  let ticking = false;
  async function tick() {
    if (ticking || closed) return;
    ticking = true;
    try {
      const usage = await registry.usage();
      const sample = sampleOf(usage);
      history.push(sample);
      if (history.length > capacity) history.splice(0, history.length - capacity);
      if (namespace.sockets.size) namespace.local.emit('sample', sample, await liveView(usage));
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'admin: sample failed');
    } finally {
      ticking = false;
    }
  }
  const timer = setInterval(() => void tick(), config.sampleMs);
  timer.unref();

  async function act(socket: Socket, input: unknown): Promise<ActionResult> {
    const parsed = actionSchema.safeParse(input);
    if (!parsed.success) return { ok: false, error: 'Invalid action' };
    const action = parsed.data;
    const by = { ip: address(socket), console: socket.id };
    if (action.action === 'disconnect') {
      // Through the adapter: the peer may be on another instance.
      io.of('/').in(action.socketId).disconnectSockets(true);
      log.info({ ...by, action: 'disconnect', socket: action.socketId }, 'admin action: peer disconnected');
      return { ok: true };
    }
    if (!manager) return { ok: false, error: 'Accounts cannot be changed here: set DB_HOST or ACCOUNTS_FILE' };
    const change =
      action.action === 'suspend'
        ? { suspended: action.suspended }
        : action.action === 'plan'
          ? { planId: action.planId }
          : { rotateToken: true };
    const changed = await manager.updateAccount(action.id, change);
    log.info(
      { ...by, action: action.action, account: changed.name, id: changed.id, change: action.action === 'rotate' ? undefined : change },
      'admin action',
    );
    await refreshAccounts(true);
    void tick();
    return changed.token ? { ok: true, token: changed.token } : { ok: true };
  }

  namespace.on('connection', (socket) => {
    log.info({ ip: address(socket) }, 'admin signed in');
    void (async () => {
      await refreshAccounts(true);
      socket.emit('history', history, await liveView(await registry.usage()));
    })().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'admin: first view failed'));
    socket.on('action', (input: unknown, ack: unknown) => {
      const reply = typeof ack === 'function' ? (ack as (r: ActionResult) => void) : () => undefined;
      act(socket, input).then(reply, (err: unknown) => {
        const error = err instanceof Error && 'status' in err ? err.message : 'The action failed; see the server log';
        if (!('status' in (err as object))) log.error({ err }, 'admin action failed');
        reply({ ok: false, error });
      });
    });
  });

  return {
    router,
    close() {
      closed = true;
      clearInterval(timer);
      namespace.local.disconnectSockets(true);
    },
  };
}
