// createServer(config) wires the parts into one HTTP(S) server: the REST API
// and Socket.IO on the same port. Nothing here runs at import time, so a test
// can start several servers in one process.
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import cors from 'cors';
import express, { type ErrorRequestHandler } from 'express';
import helmet from 'helmet';
import proxyaddr from 'proxy-addr';
import type { DestinationStream, Logger } from 'pino';
import { Server } from 'socket.io';
import { fileAccountSource } from './accounts/file';
import { createAccountManager, fileStorage, mysqlStorage } from './accounts/manage';
import { mysqlAccountSource } from './accounts/mysql';
import { STATIC_ACCOUNT } from './accounts/account';
import { createAccountStore, type AccountSource, type AccountStore } from './accounts/store';
import { createApi, requireApiKey } from './api';
import { createLoginClient } from './auth/login';
import { createSignIn } from './auth/sign-in';
import { createTokenVerifier } from './auth/tokens';
import { createAccountRoutes, noAccountRoutes } from './accounts/routes';
import { createMemoryRegistry } from './channels/memory';
import type { ChannelRegistry } from './channels/registry';
import { watchAccountLimits } from './account-limits';
import { createAdmin } from './admin';
import { createActivity } from './admin/activity';
import { clusterTiming, createCluster } from './cluster';
import type { Config } from './config';
import { createDemoRouter } from './demo';
import { createPeerConfig } from './ice';
import { createLogger } from './logger';
import { createMetrics } from './metrics';
import { createOriginCheck, parseOrigins } from './origins';
import { eventSchemas, HandshakeError } from './protocol';
import { createSignaling } from './signaling/events';
import { coalesceBatchedWrites } from './signaling/coalesce';
import { createHandshake } from './signaling/handshake';
import { createFailedAuthLimiter } from './signaling/rate-limits';
import { watchOutgoing } from './signaling/outgoing';
import type { SignalingServer } from './signaling/session';
import { createServerEvents, createSignalingReport, type ServerEvents } from './server-events';
import { readCertificate } from './tls';
import { version } from './version';
import { createWebhooks, type Webhooks } from './webhooks';

export interface ServerDeps {
  log?: Logger;
  /** Where logs go when no `log` is given (tests capture them). */
  logDestination?: DestinationStream;
  registry?: ChannelRegistry;
  accounts?: AccountStore;
  accountSource?: AccountSource;
  now?: () => number;
}

export interface SignalingServerHandle {
  /** Listens on config.port (0: any free port) and resolves with the port. */
  listen(): Promise<number>;
  /** Tells every peer its channel closed, disconnects them, stops listening. */
  close(): Promise<void>;
  readonly port: number;
  readonly secure: boolean;
  readonly log: Logger;
  readonly io: SignalingServer;
  readonly registry: ChannelRegistry;
  readonly accounts: AccountStore;
  /** Every join, leave and refusal, for webhooks and the admin console. */
  readonly events: ServerEvents;
  readonly webhooks: Webhooks;
}

function defaultAccountSource(config: Config): AccountSource | undefined {
  if (config.database) return mysqlAccountSource(config.database);
  if (config.accountsFile) return fileAccountSource(config.accountsFile);
  return undefined;
}

export function createServer(config: Config, deps: ServerDeps = {}): SignalingServerHandle {
  const now = deps.now ?? Date.now;
  const log = deps.log ?? createLogger({ production: config.production, level: config.logLevel }, deps.logDestination);
  const accounts =
    deps.accounts ??
    createAccountStore({
      staticToken: config.staticToken,
      staticAccount: config.staticAccount,
      staticLogin: config.staticLogin,
      source: deps.accountSource ?? defaultAccountSource(config),
      log,
      refreshMs: config.accountsRefreshMs,
    });
  const cluster = config.redisUrl
    ? createCluster({ url: config.redisUrl, prefix: config.redisPrefix, timeoutMs: config.clusterTimeoutMs, log, now })
    : undefined;
  const registry = deps.registry ?? cluster?.registry ?? createMemoryRegistry({ now });
  const metrics = createMetrics(registry, { perAccount: config.metricsPerAccount });
  const events = createServerEvents({ log, now });
  const report = createSignalingReport(events);
  // The console counts handshakes and refusals through the telemetry signaling already reports.
  const activity = config.admin ? createActivity(events) : undefined;
  const telemetry = activity ? activity.tee(metrics.telemetry) : metrics.telemetry;
  const webhooks = createWebhooks({
    config: config.webhook,
    events,
    accounts,
    log,
    version,
    now,
    redis: cluster && {
      url: config.redisUrl as string,
      prefix: config.redisPrefix,
      instanceId: cluster.instanceId,
      leaseMs: clusterTiming(config.clusterTimeoutMs).aliveMs,
    },
  });
  const accountLimits = watchAccountLimits({
    registry,
    accounts,
    events,
    log,
    intervalMs: config.webhook.limitCheckMs,
    // Only where a webhook could carry the event, and on one instance of a cluster.
    reports: () => Boolean(config.webhook.url || accounts.webhookAccounts()) && webhooks.isDelivering(),
  });
  // One failed-attempt count per address: handshakes, /status tokens and API keys alike.
  const failedAuth = createFailedAuthLimiter({ perMinute: config.rateFailedAuthPerMinute });
  const signIn = createSignIn({
    accounts,
    login: createLoginClient({ timeoutMs: config.loginTimeoutMs, concurrency: config.loginConcurrency }),
    verifyToken: createTokenVerifier({
      findAccount: (name) => accounts.findByName(name),
      maxTtlSeconds: config.tokenMaxTtlSeconds,
      maxNameLength: config.maxNameLength,
      now,
    }),
    staticName: config.staticAccount ?? STATIC_ACCOUNT,
  });

  const corsOrigin = config.corsOrigin === '*' ? '*' : config.corsOrigin.split(',').map((o) => o.trim());
  const app = express();
  app.disable('x-powered-by');
  // Behind a trusted proxy the client's address comes from X-Forwarded-For.
  const trustProxy = proxyaddr.compile(config.trustProxy);
  app.set('trust proxy', trustProxy);
  let shuttingDown = false;
  const readiness = () => ({
    accounts: accounts.isReady(),
    ...(cluster && { redis: cluster.isConnected() }),
    running: !shuttingDown,
  });
  const secure = Boolean(config.certificate);
  app.use(
    helmet({
      // The demo page is served over plain HTTP in development: no forced upgrade, no HSTS there.
      contentSecurityPolicy: { directives: { upgradeInsecureRequests: null } },
      strictTransportSecurity: secure,
    }),
  );
  app.use(cors({ origin: corsOrigin }));
  app.use(createApi({ config, registry, accounts, metrics, readiness, version, log, failedAuth }));
  const storage = config.database ? mysqlStorage(config.database) : config.accountsFile ? fileStorage(config.accountsFile) : undefined;
  const accountManager =
    storage &&
    createAccountManager({
      storage,
      // Applied on this instance now. Cluster-wide reloads plug in here, so that
      // every instance sees the change at once.
      apply: async () => {
        const result = await accounts.reload();
        if (result.outcome !== 'reloaded') log.warn({ outcome: result.outcome, error: result.error }, 'accounts changed but not reloaded');
      },
    });
  const keyed = requireApiKey(config, log, failedAuth);
  app.use(accountManager ? createAccountRoutes({ manager: accountManager, keyed, log }) : noAccountRoutes(keyed));
  if (config.demo) app.use('/demo', createDemoRouter());
  let admin: ReturnType<typeof createAdmin> | undefined;
  const adminRouter = express.Router();
  if (config.admin) app.use('/admin', adminRouter);
  const onError: ErrorRequestHandler = (err, req, res, _next) => {
    log.error({ err, path: req.path }, 'API request failed');
    res.status(500).json({ error: 'Internal error' });
  };
  app.use(onError);

  const server = config.certificate ? https.createServer(readCertificate(config.certificate), app) : http.createServer(app);
  const io: SignalingServer = new Server(server, {
    maxHttpBufferSize: config.maxMessageBytes,
    pingInterval: config.pingIntervalMs,
    pingTimeout: config.pingTimeoutMs,
    cors: { origin: corsOrigin },
    // CORS headers do not stop a WebSocket: the handshake itself checks Origin.
    allowRequest: (req, callback) => origins.allowRequest(req, callback),
  });
  if (cluster) io.adapter(cluster.adapter);
  coalesceBatchedWrites(io);
  if (activity)
    admin = createAdmin({
      io: io as unknown as Server,
      registry,
      accounts,
      manager: accountManager,
      activity,
      config: { apiKey: config.apiKey, production: config.production, sampleMs: config.adminSampleMs, failedAuthPerMinute: config.rateFailedAuthPerMinute },
      webhooks,
      instances: async () =>
        cluster
          ? (await cluster.instances()).map((i) => ({ ...i, self: i.id === cluster.instanceId }))
          : [{ id: 'this instance', self: true, heartbeatAgeMs: null }],
      log,
      now,
    });
  if (admin) adminRouter.use(admin.router);
  watchOutgoing(io, { maxBytes: config.maxOutgoingBytes, log, telemetry });
  const schemas = eventSchemas(config);
  io.use((_socket, next) => next(shuttingDown ? new Error(HandshakeError.unavailable) : undefined));
  const handshake = createHandshake({
    registry,
    schemas,
    log,
    telemetry,
    production: config.production,
    failedAuth,
    signIn,
    hideSignInDetails: config.production && config.extraSecurity,
    eventsPerSecond: config.rateEventsPerSecond,
    clientAddress: (socket) => proxyaddr(socket.request, trustProxy),
    onRefused: (account, reason) => report.refused(account, 'connect', [reason]),
  });
  io.use(handshake.middleware);
  const origins = createOriginCheck({
    allowed: parseOrigins(config.corsOrigin),
    registry,
    log,
    telemetry,
    clientAddress: (req) => proxyaddr(req, trustProxy),
    releaseConnection: handshake.releaseConnection,
  });
  // After the handshake: an account's own allowedOrigins need the account.
  io.use(origins.middleware);
  const signaling = createSignaling({
    io,
    registry,
    schemas,
    peerConfig: createPeerConfig(config, now),
    log,
    telemetry,
    eventsPerSecond: config.rateEventsPerSecond,
    maxNameLength: config.maxNameLength,
    enforceSdp: config.enforceSdp,
    accountMaxChannels: config.accountMaxChannels,
    accountMaxPeers: config.accountMaxPeers,
    releaseConnection: handshake.releaseConnection,
    report,
  });
  // Peers of an instance that died: their channels hear them leave, as on a disconnect.
  cluster?.onPeersGone((gone) => {
    for (const { channel, peerID, socketIds } of gone) {
      signaling.announceLeave(peerID, channel, socketIds);
      // The account is known from a peer of the channel still on this instance.
      const here = socketIds.map((id) => io.sockets.sockets.get(id)).find(Boolean);
      report.lost(here?.data.account.name ?? null, channel, peerID, socketIds.length);
    }
  });
  io.on('connection', (socket) => {
    signaling.attach(socket);
    activity?.connected(socket.data.account.name);
    socket.on('disconnect', report.onDisconnect);
    if (log.isLevelEnabled('debug'))
      log.debug({ socket: socket.id, account: socket.data.account.name, transport: socket.conn.transport.name }, 'connected');
  });

  let closing: Promise<void> | undefined;
  async function close() {
    // From here /ready answers 503 and new sockets are refused.
    shuttingDown = true;
    report.shutdown();
    const sockets = [...io.sockets.sockets.values()];
    // Each peer's channel hears it leave before the sockets go.
    await Promise.allSettled(sockets.map((s) => signaling.leaveChannel(s)));
    // This instance's sockets only: through the adapter it would reach every instance's.
    io.local.disconnectSockets(true);
    // Behind a load balancer: time for its health checks to see the 503.
    if (config.shutdownGraceMs) await new Promise((resolve) => setTimeout(resolve, config.shutdownGraceMs));
    server.close();
    await new Promise<void>((resolve) => io.close(() => resolve()));
    server.closeAllConnections();
    accountLimits.close();
    admin?.close();
    activity?.close();
    await webhooks.close();
    await accountManager?.close();
    await accounts.close();
    await registry.close();
    await cluster?.close();
    metrics.close();
    log.info({ sockets: sockets.length }, 'server closed');
  }

  return {
    listen: () =>
      new Promise<number>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.port, config.host, () => {
          server.off('error', reject);
          resolve((server.address() as AddressInfo).port);
        });
      }),
    close: () => (closing ??= close()),
    get port() {
      const address = server.address();
      return address && typeof address === 'object' ? address.port : 0;
    },
    secure,
    log,
    io,
    registry,
    accounts,
    events,
    webhooks,
  };
}
