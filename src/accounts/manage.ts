// Accounts and plans managed without SQL: create, change, suspend, rotate a
// token, delete. Input is checked with the schemas loading uses (a plan the
// loader would skip is refused here), every change runs in one transaction
// (MySQL) or one atomic file write, and tokens come from crypto.randomBytes.
// A token is returned only when it is made (creation, rotation).
import { randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import type { PoolConnection, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { z } from 'zod';
import { systemClock, type Clock } from '../clock';
import type { Config } from '../config';
import { planSchema } from '../limits';
import { webhookUrlSchema, type AccountRow, type PlanRow } from './account';
import { accountsPool } from './mysql';

/** 192 bits, URL-safe: sites paste it into settings files. */
export const newToken = () => randomBytes(24).toString('base64url');

/** A refusal the caller caused: its HTTP status and a message that says what to fix. */
export class ManageError extends Error {
  constructor(
    readonly status: 400 | 404 | 409,
    message: string,
  ) {
    super(message);
  }
}

// --- storage ---------------------------------------------------------------

/** One transaction over both tables. */
export interface Tables {
  accounts(): Promise<AccountRow[]>;
  plans(): Promise<PlanRow[]>;
  insertAccount(row: Omit<AccountRow, 'id'>): Promise<number>;
  updateAccount(id: number, row: Omit<AccountRow, 'id'>): Promise<void>;
  deleteAccount(id: number): Promise<void>;
  insertPlan(row: Omit<PlanRow, 'id'>): Promise<number>;
  updatePlan(id: number, row: Omit<PlanRow, 'id'>): Promise<void>;
  deletePlan(id: number): Promise<void>;
}

export interface AccountStorage {
  readonly description: string;
  /** Runs `change` in a transaction: all its writes or none. */
  transaction<T>(change: (tables: Tables) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** `clock` stamps a new account's `created` column. */
export function mysqlStorage(db: NonNullable<Config['database']>, clock: Pick<Clock, 'now'> = systemClock): AccountStorage {
  const pool = accountsPool(db);
  const tablesOf = (c: PoolConnection): Tables => ({
    accounts: async () =>
      (await c.query<(RowDataPacket & AccountRow)[]>('SELECT id, name, token, properties, planId FROM accounts ORDER BY id FOR UPDATE'))[0],
    plans: async () => (await c.query<(RowDataPacket & PlanRow)[]>('SELECT id, name, properties FROM plans ORDER BY id FOR UPDATE'))[0],
    insertAccount: async (r) =>
      (
        await c.query<ResultSetHeader>('INSERT INTO accounts (name, token, properties, planId, meta, created) VALUES (?, ?, ?, ?, ?, ?)', [
          r.name,
          r.token,
          r.properties ?? '{}',
          r.planId,
          '',
          Math.floor(clock.now() / 1000),
        ])
      )[0].insertId,
    updateAccount: async (id, r) =>
      void (await c.query('UPDATE accounts SET name = ?, token = ?, properties = ?, planId = ? WHERE id = ?', [
        r.name,
        r.token,
        r.properties ?? '{}',
        r.planId,
        id,
      ])),
    deleteAccount: async (id) => void (await c.query('DELETE FROM accounts WHERE id = ?', [id])),
    insertPlan: async (r) =>
      (await c.query<ResultSetHeader>('INSERT INTO plans (name, properties) VALUES (?, ?)', [r.name, r.properties ?? '{}']))[0].insertId,
    updatePlan: async (id, r) =>
      void (await c.query('UPDATE plans SET name = ?, properties = ? WHERE id = ?', [r.name, r.properties ?? '{}', id])),
    deletePlan: async (id) => void (await c.query('DELETE FROM plans WHERE id = ?', [id])),
  });
  return {
    description: `mysql ${db.user}@${db.host}:${db.port}/${db.name}`,
    async transaction(change) {
      const connection = await pool.getConnection();
      try {
        await connection.beginTransaction();
        const result = await change(tablesOf(connection));
        await connection.commit();
        return result;
      } catch (err) {
        await connection.rollback().catch(() => undefined);
        throw err;
      } finally {
        connection.release();
      }
    },
    close: () => pool.end(),
  };
}

/** The accounts file: read, changed in memory, written to a temporary file and renamed over it. */
export function fileStorage(path: string): AccountStorage {
  let queue: Promise<unknown> = Promise.resolve();
  const parse = (text: string | null) => (text ? (JSON.parse(text) as unknown) : {});
  return {
    description: `file ${path}`,
    transaction(change) {
      const run = async () => {
        const data = JSON.parse(await readFile(path, 'utf8')) as {
          accounts?: Record<string, unknown>[];
          plans?: Record<string, unknown>[];
        };
        const text = (v: unknown) => (v == null ? null : typeof v === 'string' ? v : JSON.stringify(v));
        let accounts: AccountRow[] = (data.accounts ?? []).map((a, i) => ({
          id: a.id == null ? i + 1 : Number(a.id),
          name: String(a.name),
          token: String(a.token ?? ''),
          properties: text(a.properties),
          planId: a.planId == null ? null : Number(a.planId),
        }));
        let plans: PlanRow[] = (data.plans ?? []).map((p) => ({
          id: Number(p.id),
          name: String(p.name ?? p.id),
          properties: text(p.properties),
        }));
        const nextId = (rows: { id?: number | null }[]) => rows.reduce((max, r) => Math.max(max, Number(r.id) || 0), 0) + 1;
        const tables: Tables = {
          accounts: async () => accounts.map((a) => ({ ...a })),
          plans: async () => plans.map((p) => ({ ...p })),
          async insertAccount(row) {
            const id = nextId(accounts);
            accounts.push({ ...row, id });
            return id;
          },
          updateAccount: async (id, row) => void (accounts = accounts.map((a) => (a.id === id ? { ...row, id } : a))),
          deleteAccount: async (id) => void (accounts = accounts.filter((a) => a.id !== id)),
          async insertPlan(row) {
            const id = nextId(plans);
            plans.push({ ...row, id });
            return id;
          },
          updatePlan: async (id, row) => void (plans = plans.map((p) => (p.id === id ? { ...row, id } : p))),
          deletePlan: async (id) => void (plans = plans.filter((p) => p.id !== id)),
        };
        const result = await change(tables);
        const out = {
          ...data,
          plans: plans.map((p) => ({ id: p.id, name: p.name, properties: parse(p.properties) })),
          accounts: accounts.map((a) => ({ id: a.id, name: a.name, token: a.token, planId: a.planId, properties: parse(a.properties) })),
        };
        const temporary = `${path}.${process.pid}.tmp`;
        await writeFile(temporary, `${JSON.stringify(out, null, 2)}\n`, { mode: 0o600 });
        await rename(temporary, path);
        return result;
      };
      // One change at a time: each reads what the one before wrote.
      const result = queue.then(run, run);
      queue = result.catch(() => undefined);
      return result;
    },
    close: async () => undefined,
  };
}

// --- input -----------------------------------------------------------------

const name = z.string().trim().min(1).max(255);
const id = z.coerce.number().int().positive();
const object = z.record(z.string(), z.unknown());
/** Account properties as the API takes them: what the server reads must be right; other keys are the site's. */
const accountProperties = z.looseObject({ suspended: z.boolean().optional(), webhookURL: webhookUrlSchema.optional() });

const accountCreate = z.strictObject({
  name,
  planId: id.nullable().default(null),
  properties: object.default({}),
  suspended: z.boolean().optional(),
});
const accountPatch = z.strictObject({
  name: name.optional(),
  planId: id.nullable().optional(),
  /** Merged into the stored properties; a null value removes the key. */
  properties: object.optional(),
  suspended: z.boolean().optional(),
  rotateToken: z.literal(true).optional(),
});
const planCreate = z.strictObject({ name, properties: object.default({}) });
const planPatch = z.strictObject({ name: name.optional(), properties: object.optional() });

const describe = (error: z.ZodError) =>
  error.issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.join('.') : 'body'}: ${i.message}`)
    .join('; ');

function parse<S extends z.ZodType>(schema: S, input: unknown, what: string): z.infer<S> {
  const parsed = schema.safeParse(input);
  if (!parsed.success) throw new ManageError(400, `Invalid ${what}: ${describe(parsed.error)}`);
  return parsed.data;
}

function checkPlanProperties(properties: Record<string, unknown>) {
  const parsed = planSchema.safeParse(properties);
  if (!parsed.success) throw new ManageError(400, `Invalid plan: ${describe(parsed.error)}`);
}

function checkAccountProperties(properties: Record<string, unknown>) {
  const parsed = accountProperties.safeParse(properties);
  if (!parsed.success) throw new ManageError(400, `Invalid account properties: ${describe(parsed.error)}`);
}

const propertiesOf = (text: string | null): Record<string, unknown> => {
  try {
    const value = JSON.parse(text || '{}') as unknown;
    return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
};

const merge = (base: Record<string, unknown>, patch: Record<string, unknown>) => {
  const merged = { ...base };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete merged[key];
    else merged[key] = value;
  }
  return merged;
};

// --- views -----------------------------------------------------------------

/** An account as the API shows it: never its token. */
export interface AccountView {
  id: number;
  name: string;
  planId: number | null;
  suspended: boolean;
  properties: Record<string, unknown>;
}

export interface PlanView {
  id: number;
  name: string;
  properties: Record<string, unknown>;
  /** How many accounts use it. */
  accounts: number;
}

const suspendedIn = (p: Record<string, unknown>) => p.suspended === true || p.suspended === 1 || p.suspended === 'true';
const accountView = (row: AccountRow): AccountView => {
  const properties = propertiesOf(row.properties);
  return {
    id: Number(row.id),
    name: row.name,
    planId: row.planId == null ? null : Number(row.planId),
    suspended: suspendedIn(properties),
    properties,
  };
};
const planView = (row: PlanRow, accounts: AccountRow[]): PlanView => ({
  id: Number(row.id),
  name: row.name,
  properties: propertiesOf(row.properties),
  accounts: accounts.filter((a) => a.planId != null && Number(a.planId) === Number(row.id)).length,
});

// --- operations ------------------------------------------------------------

export interface ManageDeps {
  storage: AccountStorage;
  /**
   * Applies a change to the running server(s). Today: reload this instance's
   * account store; a cluster-wide reload plugs in here.
   */
  apply: () => Promise<unknown>;
  tokenOf?: () => string;
}

export function createAccountManager({ storage, apply, tokenOf = newToken }: ManageDeps) {
  const find = <R extends { id?: number | null }>(rows: R[], wanted: number, what: string): R => {
    const row = rows.find((r) => Number(r.id) === wanted);
    if (!row) throw new ManageError(404, `No ${what} ${wanted}`);
    return row;
  };
  const checkPlanId = (plans: PlanRow[], planId: number | null) => {
    if (planId != null && !plans.some((p) => Number(p.id) === planId))
      throw new ManageError(400, `Invalid account: plan ${planId} does not exist`);
  };
  const checkNameFree = (accounts: AccountRow[], wanted: string, except?: number) => {
    if (accounts.some((a) => a.name === wanted && Number(a.id) !== except))
      throw new ManageError(409, `An account named "${wanted}" exists`);
  };
  /** Writes, then applies; a failed apply is reported, the write stays (the next reload picks it up). */
  const change = async <T>(run: (tables: Tables) => Promise<T>): Promise<T> => {
    const result = await storage.transaction(run);
    await apply();
    return result;
  };

  return {
    async listAccounts(): Promise<AccountView[]> {
      return storage.transaction(async (t) => (await t.accounts()).map(accountView));
    },
    async getAccount(accountId: number): Promise<AccountView> {
      return storage.transaction(async (t) => accountView(find(await t.accounts(), accountId, 'account')));
    },
    async createAccount(input: unknown): Promise<AccountView & { token: string }> {
      const body = parse(accountCreate, input, 'account');
      const properties = body.suspended === undefined ? body.properties : { ...body.properties, suspended: body.suspended };
      checkAccountProperties(properties);
      const token = tokenOf();
      return change(async (t) => {
        checkPlanId(await t.plans(), body.planId);
        checkNameFree(await t.accounts(), body.name);
        const row = { name: body.name, token, properties: JSON.stringify(properties), planId: body.planId };
        const newId = await t.insertAccount(row);
        return { ...accountView({ ...row, id: newId }), token };
      });
    },
    async updateAccount(accountId: number, input: unknown): Promise<AccountView & { token?: string }> {
      const body = parse(accountPatch, input, 'account change');
      return change(async (t) => {
        const accounts = await t.accounts();
        const row = find(accounts, accountId, 'account');
        // Only what this change writes is checked: a stored value the loader tolerates
        // (suspended: 1, a broken webhookURL) must not block suspending the account.
        const written = Object.fromEntries(Object.entries(body.properties ?? {}).filter(([, v]) => v !== null));
        checkAccountProperties(written);
        let properties = body.properties ? merge(propertiesOf(row.properties), body.properties) : propertiesOf(row.properties);
        if (body.suspended !== undefined) properties = { ...properties, suspended: body.suspended };
        const planId = body.planId === undefined ? row.planId : body.planId;
        checkPlanId(await t.plans(), planId);
        if (body.name) checkNameFree(accounts, body.name, accountId);
        const token = body.rotateToken ? tokenOf() : undefined;
        const next = { name: body.name ?? row.name, token: token ?? row.token, properties: JSON.stringify(properties), planId };
        await t.updateAccount(accountId, next);
        return { ...accountView({ ...next, id: accountId }), ...(token && { token }) };
      });
    },
    async deleteAccount(accountId: number): Promise<void> {
      await change(async (t) => {
        find(await t.accounts(), accountId, 'account');
        await t.deleteAccount(accountId);
      });
    },
    async listPlans(): Promise<PlanView[]> {
      return storage.transaction(async (t) => {
        const accounts = await t.accounts();
        return (await t.plans()).map((p) => planView(p, accounts));
      });
    },
    async getPlan(planId: number): Promise<PlanView> {
      return storage.transaction(async (t) => planView(find(await t.plans(), planId, 'plan'), await t.accounts()));
    },
    async createPlan(input: unknown): Promise<PlanView> {
      const body = parse(planCreate, input, 'plan');
      checkPlanProperties(body.properties);
      return change(async (t) => {
        const row = { name: body.name, properties: JSON.stringify(body.properties) };
        return planView({ ...row, id: await t.insertPlan(row) }, []);
      });
    },
    async updatePlan(planId: number, input: unknown): Promise<PlanView> {
      const body = parse(planPatch, input, 'plan change');
      return change(async (t) => {
        const row = find(await t.plans(), planId, 'plan');
        const properties = body.properties ? merge(propertiesOf(row.properties), body.properties) : propertiesOf(row.properties);
        checkPlanProperties(properties);
        const next = { name: body.name ?? row.name, properties: JSON.stringify(properties) };
        await t.updatePlan(planId, next);
        return planView({ ...next, id: planId }, await t.accounts());
      });
    },
    async deletePlan(planId: number): Promise<void> {
      await change(async (t) => {
        find(await t.plans(), planId, 'plan');
        const users = (await t.accounts()).filter((a) => a.planId != null && Number(a.planId) === planId);
        if (users.length) throw new ManageError(409, `Plan ${planId} is used by ${users.length} account(s): move them first`);
        await t.deletePlan(planId);
      });
    },
    close: () => storage.close(),
  };
}
export type AccountManager = ReturnType<typeof createAccountManager>;

export const parseId = (value: unknown) => {
  const parsed = id.safeParse(value);
  if (!parsed.success) throw new ManageError(404, `No such id: ${String(value).slice(0, 40)}`);
  return parsed.data;
};
