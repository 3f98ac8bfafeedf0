// Accounts and plans from the original's MySQL/MariaDB tables, through a
// small mysql2 pool.
import type { Pool, RowDataPacket } from 'mysql2/promise';
import type { Config } from '../config';
import type { AccountRow, AccountRows, PlanRow } from './account';
import type { AccountSource } from './store';

/** A small pool on the accounts database; idle connections close, so a database restart leaves no dead ones. */
export function accountsPool(db: NonNullable<Config['database']>): Pool {
  // Loaded only here, so a server without DATABASE never loads mysql2 (2.5 MiB of heap, kept for
  // the life of the process, which every full garbage collection walks); require() because this
  // factory is synchronous.
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- lazy load, see above
  const { createPool } = require('mysql2/promise') as typeof import('mysql2/promise');
  return createPool({
    host: db.host,
    port: db.port,
    user: db.user,
    password: db.password,
    database: db.name,
    connectionLimit: 2,
    connectTimeout: 5000,
    maxIdle: 0,
    idleTimeout: 10_000,
    enableKeepAlive: true,
  });
}

export function mysqlAccountSource(db: NonNullable<Config['database']>): AccountSource {
  const pool = accountsPool(db);
  return {
    description: `mysql ${db.user}@${db.host}:${db.port}/${db.name}`,
    async fetch(): Promise<AccountRows> {
      const [accounts] = await pool.query<(RowDataPacket & AccountRow)[]>(
        // Oldest first: when names repeat, the account that had a name keeps it.
        'SELECT id, name, token, properties, planId FROM accounts ORDER BY id',
      );
      const [plans] = await pool.query<(RowDataPacket & PlanRow)[]>('SELECT id, name, properties FROM plans');
      return { accounts, plans };
    },
    close: () => pool.end(),
  };
}
