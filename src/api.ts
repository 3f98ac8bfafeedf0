// The REST API: the original's endpoints and shapes. Outside development mode
// every endpoint but `/` needs the API key (query `apikey`, `X-API-Key`, or
// `Authorization: Bearer`), compared in constant time. An address that keeps
// presenting wrong keys is refused for a while, as for wrong socket tokens.
import { createHash, timingSafeEqual } from 'node:crypto';
import express, { type Request, type RequestHandler, type Response } from 'express';
import type { Logger } from 'pino';
import { STATIC_ACCOUNT, type Account } from './accounts/account';
import type { AccountStore } from './accounts/store';
import type { ChannelRegistry, ChannelSummary, RegistrySnapshot } from './channels/registry';
import type { Clock } from './clock';
import type { Config } from './config';
import type { Metrics } from './metrics';
import { lengthWithin } from './protocol';
import type { RoomStore, RoomSummary } from './rooms/store';
import type { FailedAuthLimiter } from './signaling/rate-limits';

export interface ApiDeps {
  config: Pick<Config, 'production' | 'apiKey' | 'maxNameLength' | 'staticAccount'> & { secure?: boolean };
  registry: ChannelRegistry;
  rooms: Pick<RoomStore, 'list'>;
  accounts: AccountStore;
  metrics: Pick<Metrics, 'render' | 'contentType'>;
  /** What `/ready` reports: each check must pass for a load balancer to send traffic. */
  readiness: () => Record<string, boolean>;
  version: string;
  log: Logger;
  /** Failed attempts per address, shared with the handshake: `/status?token=` guesses count. */
  failedAuth: FailedAuthLimiter;
  /** Monotonic time for the failed-attempt windows. */
  clock: Pick<Clock, 'monotonic'>;
}

/** How `GET /` introduces the server, in the original's words. */
const SERVER_NAME = 'VideoWhisper WebRTC';
const SERVER_FEATURES =
  'WebRTC Signaling, SSL, TURN/STUN configuration for VideoWhisper HTML5 Videochat, ' +
  'MySQL accounts, plan limits, isolated accounts, user pin authentication, signed access tokens, ' +
  'restrictPublish, REST API';

const digest = (value: string) => createHash('sha256').update(value).digest();

function presentedKey(req: Request): string | undefined {
  const query = req.query.apikey;
  if (typeof query === 'string') return query;
  const header = req.get('x-api-key');
  if (header) return header;
  const bearer = /^Bearer\s+(.+)$/i.exec(req.get('authorization') ?? '');
  return bearer?.[1];
}

export const API_TOO_MANY_ATTEMPTS = 'Too many failed attempts';

/** Account names are at most this long in MySQL (sql/schema.sql). */
const MAX_ACCOUNT_LENGTH = 255;

/** A query parameter given once as text within `max` characters, else what is wrong with it. */
function textParam(value: unknown, name: string, max: number): { value: string } | { error: string } {
  if (value === undefined || value === '') return { error: `${name} is required` };
  if (typeof value !== 'string') return { error: `${name} must be given once, as text` };
  if (!lengthWithin(value, 1, max)) return { error: `${name} must be at most ${max} characters` };
  return { value };
}

/** Whether a request may use the keyed endpoints: development mode, or the right key. */
function apiKeyCheck({ production, apiKey }: ApiDeps['config']): (req: Request) => boolean {
  const expected = apiKey ? digest(apiKey) : undefined;
  return (req) => {
    if (!production) return true;
    const key = presentedKey(req);
    return Boolean(expected && key !== undefined && timingSafeEqual(digest(key), expected));
  };
}

/** Refuses a blocked address with 429 before anything it sent is looked at: guessing gains nothing. */
function refuseBlocked(failedAuth: FailedAuthLimiter, log: Logger, clock: Pick<Clock, 'monotonic'>): RequestHandler {
  return async (req, res, next) => {
    // req.ip: the client through trusted proxies (app.ts sets `trust proxy`).
    if (!(await failedAuth.blocked(req.ip ?? '', clock.monotonic()))) return next();
    log.warn({ path: req.path, ip: req.ip }, 'API request refused: too many failed attempts');
    res.status(429).set('Retry-After', '60').type('text/plain').send(API_TOO_MANY_ATTEMPTS);
  };
}

export function requireApiKey(
  config: ApiDeps['config'],
  log: Logger,
  failedAuth: FailedAuthLimiter,
  clock: Pick<Clock, 'monotonic'>,
): RequestHandler {
  const accepted = apiKeyCheck(config);
  const blocked = refuseBlocked(failedAuth, log, clock);
  return (req, res, next) =>
    blocked(req, res, () => {
      if (accepted(req)) return next();
      void failedAuth.failed(req.ip ?? '', clock.monotonic());
      log.warn({ path: req.path, ip: req.ip }, 'API request refused: invalid API key');
      res.status(401).type('text/plain').send('Invalid API key');
    });
}

/** Rooms grouped by account: `{ [account]: { [room]: { participants, streams } } }`. */
export function roomsByAccount(rooms: RoomSummary[]) {
  const result: Record<string, Record<string, { participants: number; streams: number }>> = {};
  for (const { account, room, participants, streams } of rooms) (result[account] ??= {})[room] = { participants, streams };
  return result;
}

/** One account's own view, as the original's `/status?token=`: nothing of another account. */
export function accountStatus(account: Account, snapshot: RegistrySnapshot, rooms: RoomSummary[] = []) {
  const own = rooms.filter((r) => r.account === account.name);
  const usage = snapshot.stats.find(([name]) => name === account.name)?.[1];
  const active = Boolean(usage && usage.connections + usage.players + usage.broadcasters > 0);
  return {
    account: account.name,
    status: active ? 'Active' : 'Inactive',
    ...(active && {
      stats: usage,
      webrtc: Object.fromEntries(snapshot.channels.filter(([, summary]) => summary.account === account.name)),
    }),
    plan: account.plan,
    // Only when it has rooms: the original's shape is kept otherwise.
    ...(own.length > 0 && { rooms: roomsByAccount(own)[account.name] }),
  };
}

/**
 * The whole server: channel count, stats by account, and channels grouped by
 * account (one channel name may belong to several accounts).
 */
export function serverStatus(snapshot: RegistrySnapshot) {
  const webrtc: Record<string, Record<string, ChannelSummary>> = {};
  for (const [channel, summary] of snapshot.channels) (webrtc[summary.account] ??= {})[channel] = summary;
  return { connections: snapshot.connections.length, stats: Object.fromEntries(snapshot.stats), webrtc };
}

export function createApi({
  config,
  registry,
  rooms,
  accounts,
  metrics,
  readiness,
  version,
  log,
  failedAuth,
  clock,
}: ApiDeps): express.Router {
  const router = express.Router();
  // Wrong keys and wrong account tokens count per address with failed handshakes: one guesser, one limit.
  const blocked = refuseBlocked(failedAuth, log, clock);
  const keyed = requireApiKey(config, log, failedAuth, clock);
  const keyAccepted = apiKeyCheck(config);
  /** 401 for a wrong token or key, counted toward the address's failed attempts. */
  const refuse = (req: Request, res: Response, reason: string, body: string) => {
    void failedAuth.failed(req.ip ?? '', clock.monotonic());
    log.warn({ path: req.path, ip: req.ip }, `API request refused: ${reason}`);
    res.status(401).type('text/plain').send(body);
  };
  // Express 5 forwards rejected promises to the error handler in app.ts.
  router.get('/', (_req, res) => {
    // SSL only when this server speaks TLS itself.
    res.json({ server: SERVER_NAME, version, features: config.secure === false ? SERVER_FEATURES.replace('SSL, ', '') : SERVER_FEATURES });
  });
  router.get('/connections', keyed, async (_req, res) => {
    res.json((await registry.snapshot()).connections);
  });
  router.get('/channels', keyed, async (_req, res) => {
    res.json((await registry.snapshot()).channels);
  });
  router.get('/stats', keyed, async (_req, res) => {
    res.json((await registry.snapshot()).stats);
  });
  router.get('/rooms', keyed, async (_req, res) => {
    res.json(roomsByAccount(await rooms.list()));
  });
  // An account's token shows that account only; the API key, the whole server.
  router.get('/status', blocked, async (req, res) => {
    const token = req.query.token;
    if (typeof token === 'string' && token !== '') {
      const account = accounts.findByToken(token);
      if (!account) return refuse(req, res, 'invalid account token', 'Invalid account token');
      return void res.json(accountStatus(account, await registry.snapshot(), await rooms.list()));
    }
    if (!keyAccepted(req)) return refuse(req, res, 'invalid API key', 'Invalid API key and no account token');
    res.json(serverStatus(await registry.snapshot()));
  });
  // Where a channel's peers should connect, so that its signaling stays on one
  // instance. Authenticated as /status: a token answers for its own account's
  // channels only (another account's channel is an unknown one to it).
  router.get('/route', blocked, async (req, res) => {
    const token = req.query.token;
    let account: string;
    if (typeof token === 'string' && token !== '') {
      const found = accounts.findByToken(token);
      if (!found) return refuse(req, res, 'invalid account token', 'Invalid account token');
      account = found.name;
    } else {
      if (!keyAccepted(req)) return refuse(req, res, 'invalid API key', 'Invalid API key and no account token');
      // Development mode: the static account unless another is named.
      const fallback = config.production ? undefined : (config.staticAccount ?? STATIC_ACCOUNT);
      const named = textParam(req.query.account ?? fallback, 'account', MAX_ACCOUNT_LENGTH);
      if ('error' in named) return void res.status(400).type('text/plain').send(named.error);
      account = named.value;
    }
    const channel = textParam(req.query.channel, 'channel', config.maxNameLength);
    if ('error' in channel) return void res.status(400).type('text/plain').send(channel.error);
    res.json(await registry.route(account, channel.value));
  });
  // For load balancers and pm2: no key, no secrets, cheap.
  router.get('/health', (_req, res) => {
    res.json({ status: 'ok', uptime: Math.round(process.uptime()) });
  });
  router.get('/ready', (_req, res) => {
    const checks = readiness();
    const ready = Object.values(checks).every(Boolean);
    res.status(ready ? 200 : 503).json({ ready, checks });
  });
  router.get('/metrics', keyed, async (_req, res) => {
    res.type(metrics.contentType).send(await metrics.render());
  });
  router.get('/update-accounts', keyed, async (_req, res) => {
    const result = await accounts.reload();
    log.info({ outcome: result.outcome, accounts: result.accounts }, 'accounts update requested');
    res.json(result);
  });
  return router;
}
