// `npm run db:setup [-- --sample] [-- --reset]`: creates the accounts and
// plans tables in the database the configuration names (DB_HOST, DB_PORT,
// DB_USER, DB_PASSWORD, DB_NAME), from sql/schema.sql, and with --sample
// loads the original's sample rows from sql/sample.sql.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { config as loadDotenv } from 'dotenv';
import { createConnection, type Connection, type RowDataPacket } from 'mysql2/promise';
import { ConfigError, loadConfig, type Config } from '../config';

type Database = NonNullable<Config['database']>;

export interface SetupOptions {
  /** Load the sample rows. */
  sample: boolean;
  /** Drop both tables before creating them. */
  reset: boolean;
  /** Where schema.sql and sample.sql are; the repo's sql/ by default. */
  sqlDir?: string;
}

export interface SetupResult {
  createdDatabase: boolean;
  reset: boolean;
  sample: 'inserted' | 'already present' | 'not requested';
  accounts: number;
  plans: number;
}

/** The repo's sql/ folder, from src/accounts as from dist/accounts. */
export const SQL_DIR = join(__dirname, '..', '..', 'sql');

const USAGE = 'usage: npm run db:setup [-- --sample] [-- --reset]';
const ER_BAD_DB_ERROR = 1049;
const ER_DUP_ENTRY = 1062;

const errno = (err: unknown) => (err as { errno?: unknown } | null)?.errno;

/** Names the database without its password. */
export const describeDatabase = (db: Database) => `${db.user}@${db.host}:${db.port}/${db.name}`;

async function connectCreatingDatabase(db: Database): Promise<{ connection: Connection; created: boolean }> {
  const settings = {
    host: db.host,
    port: db.port,
    user: db.user,
    password: db.password,
    connectTimeout: 5000,
    multipleStatements: true,
  };
  try {
    return { connection: await createConnection({ ...settings, database: db.name }), created: false };
  } catch (err) {
    if (errno(err) !== ER_BAD_DB_ERROR) throw err;
  }
  const connection = await createConnection(settings);
  await connection.query(`CREATE DATABASE IF NOT EXISTS ${connection.escapeId(db.name)}`);
  await connection.changeUser({ database: db.name });
  return { connection, created: true };
}

/** Applies the schema (and the sample rows) to `db`. Existing rows stay unless `reset`. */
export async function setupDatabase(db: Database, options: SetupOptions): Promise<SetupResult> {
  const dir = options.sqlDir ?? SQL_DIR;
  const [schema, sample] = await Promise.all([
    readFile(join(dir, 'schema.sql'), 'utf8'),
    options.sample ? readFile(join(dir, 'sample.sql'), 'utf8') : undefined,
  ]);
  const { connection, created } = await connectCreatingDatabase(db);
  try {
    if (options.reset) await connection.query('DROP TABLE IF EXISTS accounts, plans');
    await connection.query(schema);
    let sampleOutcome: SetupResult['sample'] = 'not requested';
    if (sample) {
      // All three rows or none: a second run finds the sample token taken
      // and leaves the tables as they are.
      await connection.beginTransaction();
      try {
        await connection.query(sample);
        await connection.commit();
        sampleOutcome = 'inserted';
      } catch (err) {
        await connection.rollback();
        if (errno(err) !== ER_DUP_ENTRY) throw err;
        sampleOutcome = 'already present';
      }
    }
    const [[counts]] = await connection.query<RowDataPacket[]>(
      'SELECT (SELECT COUNT(*) FROM accounts) AS accounts, (SELECT COUNT(*) FROM plans) AS plans',
    );
    return {
      createdDatabase: created,
      reset: options.reset,
      sample: sampleOutcome,
      accounts: Number(counts?.accounts ?? 0),
      plans: Number(counts?.plans ?? 0),
    };
  } finally {
    await connection.end();
  }
}

export function describeSetup(db: Database, result: SetupResult): string {
  const done = [
    result.createdDatabase && 'database created',
    result.reset && 'old tables dropped',
    result.sample !== 'not requested' && `sample rows ${result.sample}`,
  ].filter(Boolean);
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  return (
    `Database ${describeDatabase(db)}: tables accounts and plans ready` +
    (done.length ? ` (${done.join(', ')})` : '') +
    `; ${plural(result.accounts, 'account')}, ${plural(result.plans, 'plan')}.`
  );
}

function describeFailure(db: Database, err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  if (code === 'ECONNREFUSED' || code === 'ETIMEDOUT' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH')
    return `cannot reach ${describeDatabase(db)} (${message || String(code)})`;
  return `${describeDatabase(db)}: ${message || String(code)}`;
}

/** Runs the command line; resolves with the exit code. */
export async function main(args: string[], env: Record<string, string | undefined> = process.env): Promise<number> {
  const unknown = args.filter((a) => a !== '--sample' && a !== '--reset');
  if (unknown.length) {
    console.error(`Database setup failed: unknown argument ${unknown.join(' ')} (${USAGE})`);
    return 1;
  }
  let db: Database | undefined;
  try {
    db = loadConfig(env).database;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`Database setup failed: configuration error: ${err.message}`);
    return 1;
  }
  if (!db) {
    console.error('Database setup failed: DB_HOST is not set (set DB_HOST, DB_NAME, DB_USER and DB_PASSWORD in .env or the environment)');
    return 1;
  }
  try {
    const result = await setupDatabase(db, { sample: args.includes('--sample'), reset: args.includes('--reset') });
    console.log(describeSetup(db, result));
    return 0;
  } catch (err) {
    console.error(`Database setup failed: ${describeFailure(db, err)}`);
    return 1;
  }
}

if (require.main === module) {
  loadDotenv({ quiet: true });
  void main(process.argv.slice(2)).then((code) => (process.exitCode = code));
}
