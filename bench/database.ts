// The database of `npm run bench -- --accounts`: the project's own schema
// (sql/schema.sql) in a database of the bench's own, with one account on a
// plan no scenario comes near.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './args';

export const DB = {
  host: process.env.BENCH_DB_HOST ?? '127.0.0.1',
  port: Number(process.env.BENCH_DB_PORT ?? 3306),
  user: process.env.BENCH_DB_USER ?? 'root',
  password: process.env.BENCH_DB_PASSWORD ?? '',
  name: 'vw_bench',
};

/** A plan no scenario comes near, so that its limits are checked as in production without refusing anything. */
export const BENCH_PLAN = {
  connections: 100000,
  totalBitrate: 100000000,
  bitrate: 10000,
  framerate: 60,
  audioBitrate: 512,
  width: 3840,
  height: 2160,
};

/** The DB_* variables that point a server at the bench's database. */
export const databaseEnv = (): NodeJS.ProcessEnv => ({
  DB_HOST: DB.host,
  DB_PORT: String(DB.port),
  DB_USER: DB.user,
  DB_PASSWORD: DB.password,
  DB_NAME: DB.name,
});

export async function setupDatabase(accountToken: string) {
  const mysql = await import('mysql2/promise');
  const conn = await mysql.createConnection({
    host: DB.host,
    port: DB.port,
    user: DB.user,
    password: DB.password,
    multipleStatements: true,
  });
  try {
    await conn.query(`CREATE DATABASE IF NOT EXISTS ${DB.name}`);
    await conn.query(`USE ${DB.name}`);
    await conn.query(readFileSync(join(ROOT, 'sql', 'schema.sql'), 'utf8'));
    const plan = JSON.stringify(BENCH_PLAN);
    const [rows] = await conn.query<import('mysql2/promise').RowDataPacket[]>('SELECT id FROM plans WHERE name = ?', ['Bench Plan']);
    let planId = rows[0]?.id as number | undefined;
    if (planId === undefined) {
      const [inserted] = await conn.query<import('mysql2/promise').ResultSetHeader>('INSERT INTO plans (name, properties) VALUES (?, ?)', [
        'Bench Plan',
        plan,
      ]);
      planId = inserted.insertId;
    } else await conn.query('UPDATE plans SET properties = ? WHERE id = ?', [plan, planId]);
    await conn.query(
      `INSERT INTO accounts (name, token, properties, planId, meta, created) VALUES (?, ?, '{}', ?, '', UNIX_TIMESTAMP())
       ON DUPLICATE KEY UPDATE name = VALUES(name), properties = '{}', planId = VALUES(planId)`,
      ['Bench Account', accountToken, planId],
    );
  } finally {
    await conn.end();
  }
}
