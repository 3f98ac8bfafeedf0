// The REST API: the original's endpoints and shapes. Outside development mode
// every endpoint but `/` needs the API key (query `apikey`, `X-API-Key`, or
// `Authorization: Bearer`), compared in constant time.
import { createHash, timingSafeEqual } from 'node:crypto';
import express, { type Request, type RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { AccountStore } from './accounts/store';
import type { ChannelRegistry } from './channels/registry';
import type { Config } from './config';
import type { Metrics } from './metrics';
import { SERVER_FEATURES, SERVER_NAME } from './protocol';

export interface ApiDeps {
  config: Pick<Config, 'production' | 'apiKey'> & { secure?: boolean };
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

export function requireApiKey({ production, apiKey }: ApiDeps['config'], log: Logger): RequestHandler {
  const expected = apiKey ? digest(apiKey) : undefined;
  return (req, res, next) => {
    if (!production) return next();
    const key = presentedKey(req);
    if (expected && key !== undefined && timingSafeEqual(digest(key), expected)) return next();
    log.warn({ path: req.path, ip: req.ip }, 'API request refused: invalid API key');
    res.status(401).type('text/plain').send('Invalid API key');
  };
}

export function createApi({ config, registry, accounts, metrics, readiness, version, log }: ApiDeps): express.Router {
  const router = express.Router();
  const keyed = requireApiKey(config, log);
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
