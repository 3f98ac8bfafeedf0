// The REST API: the original's endpoints and shapes. Outside development mode
// every endpoint but `/` needs the API key (query `apikey`, `X-API-Key`, or
// `Authorization: Bearer`), compared in constant time. An address that keeps
// presenting wrong keys is refused for a while, as for wrong socket tokens.
import { createHash, timingSafeEqual } from 'node:crypto';
import express, { type Request, type RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { AccountStore } from './accounts/store';
import type { ChannelRegistry } from './channels/registry';
import type { Config } from './config';
import type { Metrics } from './metrics';
import { SERVER_FEATURES, SERVER_NAME } from './protocol';
import { createFailedAuthLimiter } from './signaling/rate-limits';

export interface ApiDeps {
  config: Pick<Config, 'production' | 'apiKey' | 'rateFailedAuthPerMinute'>;
  registry: ChannelRegistry;
  accounts: AccountStore;
  metrics: Pick<Metrics, 'render' | 'contentType'>;
  /** What `/ready` reports: each check must pass for a load balancer to send traffic. */
  readiness: () => Record<string, boolean>;
  version: string;
  log: Logger;
}

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

export function requireApiKey({ production, apiKey, rateFailedAuthPerMinute }: ApiDeps['config'], log: Logger): RequestHandler {
  const expected = apiKey ? digest(apiKey) : undefined;
  const failed = createFailedAuthLimiter({ perMinute: rateFailedAuthPerMinute });
  return (req, res, next) => {
    if (!production) return next();
    // req.ip: the client through trusted proxies (app.ts sets `trust proxy`).
    const address = req.ip ?? '';
    // A blocked address is refused before its key is looked at, right or wrong: guessing gains nothing.
    if (failed.blocked(address, performance.now())) {
      log.warn({ path: req.path, ip: address }, 'API request refused: too many failed attempts');
      return void res.status(429).set('Retry-After', '60').type('text/plain').send(API_TOO_MANY_ATTEMPTS);
    }
    const key = presentedKey(req);
    if (expected && key !== undefined && timingSafeEqual(digest(key), expected)) return next();
    failed.failed(address, performance.now());
    log.warn({ path: req.path, ip: address }, 'API request refused: invalid API key');
    res.status(401).type('text/plain').send('Invalid API key');
  };
}

export function createApi({ config, registry, accounts, metrics, readiness, version, log }: ApiDeps): express.Router {
  const router = express.Router();
  const keyed = requireApiKey(config, log);
  // Express 5 forwards rejected promises to the error handler in app.ts.
  router.get('/', (_req, res) => {
    res.json({ server: SERVER_NAME, version, features: SERVER_FEATURES });
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
