// Environment -> typed Config. One schema; a wrong value stops the server with
// one line naming the variable. Names follow the original's `.env`.
import { existsSync } from 'node:fs';
import proxyaddr from 'proxy-addr';
import { z } from 'zod';
import { CertificateError, certificateSet } from './tls';

/** The static token used in development mode when nothing else is configured. */
export const DEV_STATIC_TOKEN = 'dev-token';

const blankToUndefined = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v);
const optionalText = z.preprocess(blankToUndefined, z.string().optional());
const integer = (fallback: number, min: number, max: number) =>
  z.preprocess(blankToUndefined, z.coerce.number().int().min(min).max(max).default(fallback));
const envSchema = z.object({
  NODE_ENV: z.preprocess(
    blankToUndefined,
    z.enum(['development', 'production'], { message: 'must be development or production' }).default('development'),
  ),
  PORT: integer(3000, 0, 65535),
  HOST: optionalText,
  CERTIFICATE: optionalText,
  TLS_TICKET_SECRET: optionalText,
  TLS_TICKET_ROTATE_HOURS: integer(12, 1, 168),
  STATIC_TOKEN: optionalText,
  STATIC_ACCOUNT: optionalText,
  STATIC_LOGIN: z.preprocess(blankToUndefined, z.url({ protocol: /^https?$/, message: 'must be an http(s) URL' }).optional()),
  EXTRA_SECURITY: z.preprocess(blankToUndefined, z.enum(['true', 'false'], { message: 'must be true or false' }).default('false')),
  LOGIN_TIMEOUT_MS: integer(5000, 100, 60_000),
  LOGIN_CONCURRENCY: integer(8, 1, 1000),
  TOKEN_MAX_TTL_SECONDS: integer(86400, 60, 365 * 86400),
  API_KEY: optionalText,
  COTURN_SERVER: z.preprocess(
    blankToUndefined,
    z
      .string()
      .regex(/^[^\s:/?]+(:\d{1,5})?$/, { message: 'must be host:port' })
      .optional(),
  ),
  COTURN_USER: optionalText,
  COTURN_PASSWORD: optionalText,
  COTURN_SECRET: optionalText,
  COTURN_TTL: integer(86400, 60, 30 * 86400),
  DB_HOST: optionalText,
  DB_PORT: integer(3306, 1, 65535),
  DB_USER: optionalText,
  DB_PASSWORD: optionalText,
  DB_NAME: optionalText,
  ACCOUNTS_FILE: optionalText,
  ACCOUNTS_REFRESH_SECONDS: integer(0, 0, 86400),
  LOG_LEVEL: z.preprocess(
    blankToUndefined,
    z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { message: 'must be a pino level' }).optional(),
  ),
  CORS_ORIGIN: z.preprocess(blankToUndefined, z.string().default('*')),
  TRUST_PROXY: z.preprocess(blankToUndefined, z.string().default('loopback')),
  MAX_MESSAGE_BYTES: integer(64 * 1024, 4096, 16 * 1024 * 1024),
  MAX_NAME_LENGTH: integer(128, 8, 4096),
  MAX_OUTGOING_BYTES: integer(1024 * 1024, 128 * 1024, 1024 * 1024 * 1024),
  ENFORCE_SDP: z.preprocess(blankToUndefined, z.enum(['true', 'false'], { message: 'must be true or false' }).default('false')),
  SHUTDOWN_TIMEOUT_MS: integer(5000, 0, 120_000),
  SHUTDOWN_GRACE_MS: integer(0, 0, 60_000),
  DRAIN_TIMEOUT_MS: z.preprocess(blankToUndefined, z.coerce.number().int().min(0).max(86_400_000).optional()),
  PING_INTERVAL_MS: integer(25_000, 100, 600_000),
  PING_TIMEOUT_MS: integer(20_000, 100, 600_000),
  REDIS_URL: z.preprocess(
    blankToUndefined,
    z
      .string()
      .regex(/^rediss?:\/\//, { message: 'must be a redis:// or rediss:// URL' })
      .optional(),
  ),
  REDIS_CLUSTER_NODES: z.preprocess(
    blankToUndefined,
    z
      .string()
      .transform((list) =>
        list
          .split(',')
          .map((node) => node.trim())
          .filter(Boolean),
      )
      .pipe(
        z
          .array(
            z
              .string()
              .regex(/^(rediss?:\/\/\S+|[^\s/:]+:\d{1,5})$/, { message: 'each node must be host:port or a redis:// or rediss:// URL' }),
          )
          .min(1),
      )
      .optional(),
  ),
  // Braces would become a Redis Cluster hash tag and pull every key into one slot.
  REDIS_PREFIX: z.preprocess(
    blankToUndefined,
    z
      .string()
      .max(64)
      .regex(/^[^{}]*$/, { message: 'must not contain { or }' })
      .default('vw:'),
  ),
  CLUSTER_TIMEOUT_MS: integer(15_000, 1000, 600_000),
  PUBLIC_URL: z.preprocess(
    blankToUndefined,
    z.url({ protocol: /^(wss?|https?)$/, message: 'must be a ws://, wss://, http:// or https:// URL' }).optional(),
  ),
  RATE_EVENTS_PER_SECOND: integer(100, 1, 100_000),
  RATE_FAILED_AUTH_PER_MINUTE: integer(30, 1, 100_000),
  ACCOUNT_MAX_CHANNELS: integer(10_000, 1, 10_000_000),
  ACCOUNT_MAX_PEERS: integer(50_000, 1, 10_000_000),
  ROOM_MAX_PER_ACCOUNT: integer(100, 1, 1_000_000),
  ROOM_MAX_PARTICIPANTS: integer(50, 2, 10_000),
  ROOM_MAX_MESSAGE_BYTES: integer(4096, 64, 65_536),
  ROOM_CHAT_PER_SECOND: integer(3, 1, 1000),
  ROOM_HISTORY: integer(100, 10, 1000),
  METRICS_PER_ACCOUNT: z.preprocess(blankToUndefined, z.enum(['true', 'false'], { message: 'must be true or false' }).default('false')),
  DEMO: z.preprocess(blankToUndefined, z.enum(['true', 'false'], { message: 'must be true or false' }).optional()),
  WEBHOOK_URL: z.preprocess(blankToUndefined, z.url({ protocol: /^https?$/, message: 'must be an http:// or https:// URL' }).optional()),
  WEBHOOK_SECRET: optionalText,
  WEBHOOK_RETRY_HOURS: integer(24, 0, 720),
  WEBHOOK_BACKOFF_MS: integer(1000, 1, 3_600_000),
  WEBHOOK_BACKOFF_MAX_MS: integer(600_000, 1, 86_400_000),
  WEBHOOK_TIMEOUT_MS: integer(10_000, 100, 120_000),
  WEBHOOK_QUEUE_SIZE: integer(10_000, 1, 10_000_000),
  WEBHOOK_CONCURRENCY: integer(8, 1, 1000),
  WEBHOOK_LIMIT_CHECK_MS: integer(2000, 10, 600_000),
  ADMIN_SAMPLE_MS: integer(5000, 100, 60_000),
  ADMIN: z.preprocess(blankToUndefined, z.enum(['true', 'false'], { message: 'must be true or false' }).default('true')),
});

export type Env = z.input<typeof envSchema>;

export interface Config {
  production: boolean;
  port: number;
  host: string | undefined;
  certificate: string | undefined;
  /** TLS session tickets: keys derived from this secret are the same on every instance, so a reconnect resumes on any of them. */
  tlsTicketSecret: string | undefined;
  tlsTicketRotateMs: number;
  staticToken: string | undefined;
  /** The static token's account name (default `_static`), for user/PIN sign-in without MySQL. */
  staticAccount: string | undefined;
  /** The static account's login URL for user/PIN sign-in. */
  staticLogin: string | undefined;
  /** In production, every refused sign-in says only `Authentication failed`. */
  extraSecurity: boolean;
  /** How long a site's login URL may take to answer. */
  loginTimeoutMs: number;
  /** Login requests in flight per account; more wait their turn, within the timeout. */
  loginConcurrency: number;
  /** Longest lifetime a signed access token may claim (exp - now). */
  tokenMaxTtlSeconds: number;
  apiKey: string | undefined;
  coturnServer: string | undefined;
  coturnUser: string | undefined;
  coturnPassword: string | undefined;
  coturnSecret: string | undefined;
  coturnTtl: number;
  database: { host: string; port: number; user: string; password: string; name: string } | undefined;
  accountsFile: string | undefined;
  accountsRefreshMs: number;
  logLevel: string;
  corsOrigin: string;
  /** Proxies whose X-Forwarded-For names the client (proxy-addr names or addresses/CIDRs). */
  trustProxy: string[];
  maxMessageBytes: number;
  maxNameLength: number;
  /** Bytes queued for one client that it has not read; over this it is disconnected. */
  maxOutgoingBytes: number;
  /** Write each plan's bitrate and frame limits into the SDP peers relay. */
  enforceSdp: boolean;
  shutdownTimeoutMs: number;
  /** How long /ready answers 503 before the port closes, for load balancers. */
  shutdownGraceMs: number;
  /** On SIGTERM/SIGINT: how long established sockets may go on (calls in progress) before they are closed. */
  drainTimeoutMs: number;
  /** Socket.IO heartbeat: a client that misses a ping for interval + timeout is dropped. */
  pingIntervalMs: number;
  pingTimeoutMs: number;
  /** Serve the demo page at /demo (default: in development mode only). */
  demo: boolean;
  /** Several instances share state through this Redis (unset: one process, in memory). */
  redisUrl: string | undefined;
  /** Seed nodes of a Redis Cluster, instead of the single Redis of REDIS_URL (whose scheme and password then apply to them). */
  redisClusterNodes: string[] | undefined;
  redisPrefix: string;
  /** How long an instance may miss its heartbeat before the others clean up its peers. */
  clusterTimeoutMs: number;
  /** This instance's address as clients reach it, which `GET /route` answers for the channels it holds. */
  publicUrl: string | undefined;
  /** Events one socket may send per second; more are dropped with an error. */
  rateEventsPerSecond: number;
  /** Failed handshakes one IP address may make per minute. */
  rateFailedAuthPerMinute: number;
  accountMaxChannels: number;
  accountMaxPeers: number;
  /** Label metrics by account (only where the number of accounts is bounded). */
  metricsPerAccount: boolean;
  /** Signed webhooks (WEBHOOK_*): the global target and the delivery settings every target shares. */
  webhook: {
    url: string | undefined;
    secret: string | undefined;
    retryMs: number;
    backoffMs: number;
    backoffMaxMs: number;
    timeoutMs: number;
    queueSize: number;
    concurrency: number;
    /** How often account usage is compared with plans for account.limit events. */
    limitCheckMs: number;
  };
  /** Serve the /admin console (ADMIN=false: off). */
  admin: boolean;
  /** How often the console samples usage for its live view and charts. */
  adminSampleMs: number;
  /** Rooms: per account, participants per room, chat message size and rate per socket, messages kept per room. */
  rooms: { maxRooms: number; maxParticipants: number; maxMessageBytes: number; chatPerSecond: number; history: number };
}

export class ConfigError extends Error {}

/** Reads and checks the configuration; throws a ConfigError naming the variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const name = String(issue?.path[0] ?? 'environment');
    throw new ConfigError(`${name} ${describeIssue(issue, env[name])}`);
  }
  const e = parsed.data;
  const production = e.NODE_ENV === 'production';
  if (e.CERTIFICATE) {
    try {
      certificateSet(e.CERTIFICATE);
    } catch (err) {
      if (err instanceof CertificateError) throw new ConfigError(err.message);
      throw err;
    }
  }
  // Checked here, not in the schema, whose messages quote the value: this one is a secret.
  if (e.TLS_TICKET_SECRET && e.TLS_TICKET_SECRET.length < 32) throw new ConfigError('TLS_TICKET_SECRET must be at least 32 characters');
  if (e.DB_HOST && !e.DB_NAME) throw new ConfigError('DB_NAME must be set when DB_HOST is set');
  // A healthy client is sent messages up to MAX_MESSAGE_BYTES: a few must fit before it reads them.
  if (e.MAX_OUTGOING_BYTES < 4 * e.MAX_MESSAGE_BYTES)
    throw new ConfigError(`MAX_OUTGOING_BYTES must be at least 4 x MAX_MESSAGE_BYTES (${4 * e.MAX_MESSAGE_BYTES})`);
  if (e.ACCOUNTS_FILE && !existsSync(e.ACCOUNTS_FILE)) throw new ConfigError(`ACCOUNTS_FILE: ${e.ACCOUNTS_FILE} does not exist`);
  if (e.COTURN_SERVER && !e.COTURN_SECRET && !(e.COTURN_USER && e.COTURN_PASSWORD))
    throw new ConfigError('COTURN_SERVER needs COTURN_SECRET or both COTURN_USER and COTURN_PASSWORD');
  const trustProxy = e.TRUST_PROXY.split(',')
    .map((a) => a.trim())
    .filter((a) => a && a !== 'none');
  try {
    proxyaddr.compile(trustProxy);
  } catch (err) {
    throw new ConfigError(`TRUST_PROXY: ${(err as Error).message}`);
  }
  if (e.WEBHOOK_URL && !e.WEBHOOK_SECRET) throw new ConfigError('WEBHOOK_URL needs WEBHOOK_SECRET (it signs every webhook)');
  const hasAccounts = Boolean(e.DB_HOST || e.ACCOUNTS_FILE);
  let staticToken = e.STATIC_TOKEN;
  if (!staticToken && !hasAccounts) {
    if (production) throw new ConfigError('STATIC_TOKEN, DB_HOST or ACCOUNTS_FILE must be set in production');
    staticToken = DEV_STATIC_TOKEN;
  }
  if ((e.STATIC_ACCOUNT || e.STATIC_LOGIN) && !staticToken)
    throw new ConfigError("STATIC_ACCOUNT and STATIC_LOGIN need STATIC_TOKEN (the static account's token)");
  return {
    production,
    port: e.PORT,
    host: e.HOST,
    certificate: e.CERTIFICATE,
    tlsTicketSecret: e.TLS_TICKET_SECRET,
    tlsTicketRotateMs: e.TLS_TICKET_ROTATE_HOURS * 3_600_000,
    staticToken,
    staticAccount: e.STATIC_ACCOUNT,
    staticLogin: e.STATIC_LOGIN,
    extraSecurity: e.EXTRA_SECURITY === 'true',
    loginTimeoutMs: e.LOGIN_TIMEOUT_MS,
    loginConcurrency: e.LOGIN_CONCURRENCY,
    tokenMaxTtlSeconds: e.TOKEN_MAX_TTL_SECONDS,
    apiKey: e.API_KEY,
    coturnServer: e.COTURN_SERVER,
    coturnUser: e.COTURN_USER,
    coturnPassword: e.COTURN_PASSWORD,
    coturnSecret: e.COTURN_SECRET,
    coturnTtl: e.COTURN_TTL,
    database: e.DB_HOST
      ? { host: e.DB_HOST, port: e.DB_PORT, user: e.DB_USER ?? 'root', password: e.DB_PASSWORD ?? '', name: e.DB_NAME ?? '' }
      : undefined,
    accountsFile: e.ACCOUNTS_FILE,
    accountsRefreshMs: e.ACCOUNTS_REFRESH_SECONDS * 1000,
    logLevel: e.LOG_LEVEL ?? (production ? 'info' : 'debug'),
    corsOrigin: e.CORS_ORIGIN,
    trustProxy,
    maxMessageBytes: e.MAX_MESSAGE_BYTES,
    maxNameLength: e.MAX_NAME_LENGTH,
    maxOutgoingBytes: e.MAX_OUTGOING_BYTES,
    enforceSdp: e.ENFORCE_SDP === 'true',
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    // Draining needs another instance to take new connections meanwhile: that is a cluster, on Redis.
    drainTimeoutMs: e.DRAIN_TIMEOUT_MS ?? (e.REDIS_URL || e.REDIS_CLUSTER_NODES ? 600_000 : 0),
    pingIntervalMs: e.PING_INTERVAL_MS,
    pingTimeoutMs: e.PING_TIMEOUT_MS,
    demo: e.DEMO === undefined ? !production : e.DEMO === 'true',
    redisUrl: e.REDIS_URL,
    redisClusterNodes: e.REDIS_CLUSTER_NODES,
    redisPrefix: e.REDIS_PREFIX,
    clusterTimeoutMs: e.CLUSTER_TIMEOUT_MS,
    publicUrl: e.PUBLIC_URL,
    rateEventsPerSecond: e.RATE_EVENTS_PER_SECOND,
    rateFailedAuthPerMinute: e.RATE_FAILED_AUTH_PER_MINUTE,
    accountMaxChannels: e.ACCOUNT_MAX_CHANNELS,
    accountMaxPeers: e.ACCOUNT_MAX_PEERS,
    metricsPerAccount: e.METRICS_PER_ACCOUNT === 'true',
    webhook: {
      url: e.WEBHOOK_URL,
      secret: e.WEBHOOK_SECRET,
      retryMs: e.WEBHOOK_RETRY_HOURS * 3_600_000,
      backoffMs: e.WEBHOOK_BACKOFF_MS,
      backoffMaxMs: e.WEBHOOK_BACKOFF_MAX_MS,
      timeoutMs: e.WEBHOOK_TIMEOUT_MS,
      queueSize: e.WEBHOOK_QUEUE_SIZE,
      concurrency: e.WEBHOOK_CONCURRENCY,
      limitCheckMs: e.WEBHOOK_LIMIT_CHECK_MS,
    },
    admin: e.ADMIN === 'true',
    adminSampleMs: e.ADMIN_SAMPLE_MS,
    rooms: {
      maxRooms: e.ROOM_MAX_PER_ACCOUNT,
      maxParticipants: e.ROOM_MAX_PARTICIPANTS,
      maxMessageBytes: e.ROOM_MAX_MESSAGE_BYTES,
      chatPerSecond: e.ROOM_CHAT_PER_SECOND,
      history: e.ROOM_HISTORY,
    },
  };
}

function describeIssue(issue: z.core.$ZodIssue | undefined, value: string | undefined): string {
  const shown = value === undefined ? '' : ` (got "${value.length > 40 ? `${value.slice(0, 40)}...` : value}")`;
  if (!issue) return `is invalid${shown}`;
  if (issue.code === 'too_small' || issue.code === 'too_big' || issue.code === 'invalid_type')
    return `must be a number${rangeOf(issue)}${shown}`;
  return `${issue.message}${shown}`;
}

function rangeOf(issue: z.core.$ZodIssue): string {
  if (issue.code === 'too_small') return ` >= ${String(issue.minimum)}`;
  if (issue.code === 'too_big') return ` <= ${String(issue.maximum)}`;
  return '';
}
