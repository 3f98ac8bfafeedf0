// REST for accounts and plans, behind the API key:
//   GET/POST /accounts, GET/PATCH/DELETE /accounts/:id
//   GET/POST /plans,    GET/PATCH/DELETE /plans/:id
// Each change is logged (without tokens) and applied before the answer.
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import type { Logger } from 'pino';
import { ManageError, parseId, type AccountManager } from './manage';

export interface AccountRoutesDeps {
  manager: AccountManager;
  keyed: RequestHandler;
  log: Logger;
}

export function createAccountRoutes({ manager, keyed, log }: AccountRoutesDeps): express.Router {
  const router = express.Router();
  const json = express.json({ limit: '64kb' });
  const handle =
    (run: (req: Request) => Promise<{ status?: number; body?: unknown; logged?: Record<string, unknown> }>) =>
    async (req: Request, res: Response, next: NextFunction) => {
      try {
        const { status = 200, body, logged } = await run(req);
        if (logged) log.info({ ...logged, ip: req.ip }, 'accounts changed through the API');
        if (body === undefined) res.status(204).end();
        else res.status(status).json(body);
      } catch (err) {
        if (err instanceof ManageError) {
          log.info({ path: req.path, method: req.method, status: err.status, error: err.message }, 'accounts API request refused');
          res.status(err.status).json({ error: err.message });
        } else next(err);
      }
    };

  router.use(['/accounts', '/plans'], keyed, json);
  router.get(
    '/accounts',
    handle(async () => ({ body: await manager.listAccounts() })),
  );
  router.get(
    '/accounts/:id',
    handle(async (req) => ({ body: await manager.getAccount(parseId(req.params.id)) })),
  );
  router.post(
    '/accounts',
    handle(async (req) => {
      const created = await manager.createAccount(req.body);
      return { status: 201, body: created, logged: { action: 'account created', account: created.name, id: created.id } };
    }),
  );
  router.patch(
    '/accounts/:id',
    handle(async (req) => {
      const changed = await manager.updateAccount(parseId(req.params.id), req.body);
      const fields = Object.keys((req.body ?? {}) as object);
      return { body: changed, logged: { action: 'account changed', account: changed.name, id: changed.id, fields } };
    }),
  );
  router.delete(
    '/accounts/:id',
    handle(async (req) => {
      const accountId = parseId(req.params.id);
      await manager.deleteAccount(accountId);
      return { logged: { action: 'account deleted', id: accountId } };
    }),
  );
  router.get(
    '/plans',
    handle(async () => ({ body: await manager.listPlans() })),
  );
  router.get(
    '/plans/:id',
    handle(async (req) => ({ body: await manager.getPlan(parseId(req.params.id)) })),
  );
  router.post(
    '/plans',
    handle(async (req) => {
      const created = await manager.createPlan(req.body);
      return { status: 201, body: created, logged: { action: 'plan created', plan: created.name, id: created.id } };
    }),
  );
  router.patch(
    '/plans/:id',
    handle(async (req) => {
      const changed = await manager.updatePlan(parseId(req.params.id), req.body);
      return { body: changed, logged: { action: 'plan changed', plan: changed.name, id: changed.id } };
    }),
  );
  router.delete(
    '/plans/:id',
    handle(async (req) => {
      const planId = parseId(req.params.id);
      await manager.deletePlan(planId);
      return { logged: { action: 'plan deleted', id: planId } };
    }),
  );
  // A body that is not JSON, or too large, is the client's mistake.
  router.use(['/accounts', '/plans'], (err: { type?: unknown; status?: unknown }, _req: Request, res: Response, next: NextFunction) => {
    if (typeof err?.type === 'string' && err.type.startsWith('entity.') && typeof err.status === 'number')
      return void res
        .status(err.status)
        .json({ error: `Invalid body: ${err.type === 'entity.too.large' ? 'larger than 64 KB' : 'not JSON'}` });
    next(err);
  });
  return router;
}

/** Without MySQL or an accounts file there is nothing to manage: say so. */
export function noAccountRoutes(keyed: RequestHandler): express.Router {
  const router = express.Router();
  router.use(['/accounts', '/plans'], keyed, (_req, res) => {
    res.status(404).json({ error: 'No accounts to manage: set DB_HOST (MySQL) or ACCOUNTS_FILE' });
  });
  return router;
}
