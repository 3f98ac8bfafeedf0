// createServer(config) wires the parts into one HTTP(S) server: the REST API
// and Socket.IO on the same port. Nothing here runs at import time, so a test
// can start several servers in one process.
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket as NetSocket } from 'node:net';
import { hostname } from 'node:os';
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
import { clusterTiming, createCluster } from './channels/redis/cluster';
import type { RedisTarget } from './channels/redis/connection';
import { systemClock, type Clock } from './clock';
import type { Config } from './config';
import { createControl } from './control';
import { createDemoRouter } from './demo';
import { createPeerConfig } from './ice';
import { createLogger } from './logger';
import { createMetrics } from './metrics';
import { createOriginCheck, parseOrigins } from './origins';
import { eventSchemas, HandshakeError } from './protocol';
import { createSignaling } from './signaling/events';
import { createLocalSend } from './signaling/delivery';
import { coalesceBatchedWrites } from './signaling/coalesce';
import { keepFirstRequestEssentials } from './signaling/first-request';
import { createHandshake } from './signaling/handshake';
import { createFailedAuthLimiter } from './signaling/rate-limits';
import { watchOutgoing } from './signaling/outgoing';
import type { SignalingServer } from './signaling/session';
import { createVerbatimRelay } from './signaling/verbatim';
import { createRooms } from './rooms/events';
import { createMemoryRoomStore } from './rooms/memory';
import type { RoomStore } from './rooms/store';
import { createServerEvents, createSignalingReport, type ServerEvents } from './server-events';
import { serveCertificate } from './served-certificate';
import { createShutdown, type CloseOptions } from './shutdown';
import { certificateSet, readCertificate, type CertificateInfo } from './tls';
import { version } from './version';
import { createWebhooks, type Webhooks } from './webhooks';

export interface ServerDeps {
  log?: Logger;
  /** Where logs go when no `log` is given (tests capture them). */
  logDestination?: DestinationStream;
  registry?: ChannelRegistry;
  rooms?: RoomStore;
  accounts?: AccountStore;
  accountSource?: AccountSource;
  /** Wall and monotonic time (tests move a manual clock instead of sleeping). */
  clock?: Clock;
}

export type { CloseOptions } from './shutdown';

export interface SignalingServerHandle {
  /** Listens on config.port (0: any free port) and resolves with the port. */
  listen(): Promise<number>;
  /**
   * Tells every peer its channel closed, disconnects them, stops listening,
   * and releases everything. Called again while draining, it ends the drain.
   */
  close(options?: CloseOptions): Promise<void>;
  /** Reloads the accounts on every instance of the cluster. */
  reloadAccounts(): ReturnType<AccountStore['reload']>;
  /** Reads the certificate files again and serves them to new connections; false (logged) when they are not usable. */
  reloadCertificate(): boolean;
  /** The certificate served now. */
  readonly certificate: CertificateInfo | undefined;
  readonly port: number;
  readonly secure: boolean;
  readonly log: Logger;
  readonly io: SignalingServer;
  readonly registry: ChannelRegistry;
  readonly rooms: RoomStore;
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

/** Connections the kernel may hold for accept(); Linux caps it at net.core.somaxconn (4096 by default). */
const LISTEN_BACKLOG = 4096;

export function createServer(config: Config, deps: ServerDeps = {}): SignalingServerHandle {
  const clock = deps.clock ?? systemClock;
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
  const redisTarget =
    config.redisUrl || config.redisClusterNodes ? { url: config.redisUrl, clusterNodes: config.redisClusterNodes } : undefined;
  const cluster = redisTarget
    ? createCluster({
        redis: redisTarget,
        prefix: config.redisPrefix,
        timeoutMs: config.clusterTimeoutMs,
        publicUrl: config.publicUrl,
        log,
        clock,
      })
    : undefined;
  const registry = deps.registry ?? cluster?.registry ?? createMemoryRegistry({ clock, publicUrl: config.publicUrl });
  // Read now, so that an unusable certificate stops the start with one line (a CertificateError).
  const initialCertificate = config.certificate ? readCertificate(certificateSet(config.certificate)) : undefined;
  const roomStore = deps.rooms ?? cluster?.rooms ?? createMemoryRoomStore();
  const metrics = createMetrics(registry, {
    rooms: () => roomStore.list(),
    perAccount: config.metricsPerAccount,
    certificate: () => served?.info,
    otherInstances: cluster ? () => control.otherMetrics() : undefined,
  });
  // One failed-attempt count per address: handshakes, /status tokens and API keys alike,
  // and, in a cluster, on every instance alike.
  const sharedFailedAuth = cluster?.failedAuthLimiter(config.rateFailedAuthPerMinute, (address, ms) =>
    control.announceBlocked(address, ms),
  );
  const failedAuth = sharedFailedAuth ?? createFailedAuthLimiter({ perMinute: config.rateFailedAuthPerMinute });
  const events = createServerEvents({ log, clock });
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
    clock,
    redis: cluster && {
      target: redisTarget as RedisTarget,
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
  const signIn = createSignIn({
    accounts,
    login: createLoginClient({ timeoutMs: config.loginTimeoutMs, concurrency: config.loginConcurrency }),
    verifyToken: createTokenVerifier({
      findAccount: (name) => accounts.findByName(name),
      maxTtlSeconds: config.tokenMaxTtlSeconds,
      maxNameLength: config.maxNameLength,
      clock,
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
  // The REST API reloads the accounts of the whole cluster.
  const clusterAccounts: AccountStore = { ...accounts, reload: () => control.reloadAccounts() };
  app.use(
    createApi({
      config: { ...config, secure },
      registry,
      rooms: roomStore,
      accounts: clusterAccounts,
      metrics,
      readiness,
      version,
      log,
      failedAuth,
      clock,
    }),
  );
  const storage = config.database
    ? mysqlStorage(config.database, clock)
    : config.accountsFile
      ? fileStorage(config.accountsFile)
      : undefined;
  const accountManager =
    storage &&
    createAccountManager({
      storage,
      // Applied on every instance of the cluster at once.
      apply: async () => {
        const result = await clusterAccounts.reload();
        if (result.outcome !== 'reloaded') log.warn({ outcome: result.outcome, error: result.error }, 'accounts changed but not reloaded');
      },
    });
  const keyed = requireApiKey(config, log, failedAuth, clock);
  app.use(accountManager ? createAccountRoutes({ manager: accountManager, keyed, log }) : noAccountRoutes(keyed));
  if (config.demo) app.use('/demo', createDemoRouter());
  let admin: ReturnType<typeof createAdmin> | undefined;
  const adminRouter = express.Router();
  if (config.admin) app.use('/admin', adminRouter);
  // Scripts and monitors read JSON, also for a path that does not exist.
  app.use((_req, res) => void res.status(404).json({ error: 'Not found' }));
  const onError: ErrorRequestHandler = (err, req, res, _next) => {
    log.error({ err, path: req.path }, 'API request failed');
    res.status(500).json({ error: 'Internal error' });
  };
  app.use(onError);

  const server = initialCertificate ? https.createServer(initialCertificate.options, app) : http.createServer(app);
  const served =
    initialCertificate && server instanceof https.Server
      ? serveCertificate(server, initialCertificate, {
          log,
          ticketSecret: config.tlsTicketSecret,
          ticketRotateMs: config.tlsTicketRotateMs,
          now: () => clock.now(),
        })
      : undefined;
  // Every connection, so that a shutdown can end those that will not close (a client that stops reading).
  const open = new Set<NetSocket>();
  // One listener shared by every socket (Node calls it with the socket as `this`), and `on`
  // rather than `once` ('close' comes once): no closure per idle connection.
  function untrack(this: NetSocket) {
    open.delete(this);
  }
  const track = (socket: NetSocket) => {
    open.add(socket);
    socket.on('close', untrack);
  };
  server.on('connection', track);
  if (served) server.on('secureConnection', track);
  const verbatim = createVerbatimRelay();
  const io: SignalingServer = new Server(server, {
    parser: verbatim.parser,
    maxHttpBufferSize: config.maxMessageBytes,
    pingInterval: config.pingIntervalMs,
    pingTimeout: config.pingTimeoutMs,
    cors: { origin: corsOrigin },
    // CORS headers do not stop a WebSocket: the handshake itself checks Origin.
    allowRequest: (req, callback) => origins.allowRequest(req, callback),
  });
  if (cluster) io.adapter(cluster.adapter);
  // Messages sent straight to this instance (direct.ts): to its local socket, as the adapter would.
  const toLocalSocket = createLocalSend(io) as (socketId: string, event: string, ...args: unknown[]) => void;
  void cluster?.direct
    ?.listen((socketId, event, args) => toLocalSocket(socketId, event, ...args))
    .catch((err: unknown) => log.warn({ err }, 'direct messages not subscribed: other instances use the adapter'));
  const control = createControl({
    io: cluster ? (io as unknown as Parameters<typeof createControl>[0]['io']) : undefined,
    accounts,
    localMetrics: metrics.local,
    blockAddress: (address, ms) => sharedFailedAuth?.block(address, ms),
    log,
  });
  coalesceBatchedWrites(io);
  keepFirstRequestEssentials(io);
  if (activity)
    admin = createAdmin({
      io: io as unknown as Server,
      registry,
      accounts,
      manager: accountManager,
      activity,
      config: {
        apiKey: config.apiKey,
        production: config.production,
        sampleMs: config.adminSampleMs,
        failedAuthPerMinute: config.rateFailedAuthPerMinute,
      },
      webhooks,
      instances: async () =>
        cluster
          ? (await cluster.instances()).map((i) => ({ ...i, self: i.id === cluster.instanceId }))
          : [{ id: 'this instance', self: true, heartbeatAgeMs: null }],
      log,
      clock,
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
    clock,
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
  const peerConfig = createPeerConfig(config, clock);
  const signaling = createSignaling({
    io,
    direct: cluster?.direct && { instanceId: cluster.instanceId, route: cluster.direct },
    registry,
    schemas,
    peerConfig,
    log,
    telemetry,
    clock,
    eventsPerSecond: config.rateEventsPerSecond,
    maxNameLength: config.maxNameLength,
    enforceSdp: config.enforceSdp,
    accountMaxChannels: config.accountMaxChannels,
    accountMaxPeers: config.accountMaxPeers,
    releaseConnection: handshake.releaseConnection,
    report,
    verbatim,
  });
  const rooms = createRooms({
    io,
    store: roomStore,
    registry,
    schemas,
    peerConfig,
    log,
    telemetry,
    limits: config.rooms,
    maxNameLength: config.maxNameLength,
    eventsPerSecond: config.rateEventsPerSecond,
    accountMaxChannels: config.accountMaxChannels,
    accountMaxPeers: config.accountMaxPeers,
    announceLeave: signaling.announceLeave,
    deliver: signaling.deliver,
    chatRelayed: metrics.chatRelayed,
    events,
    clustered: Boolean(cluster),
    roomSubscribed: cluster && ((room) => cluster.roomSubscribed(room)),
    clock,
  });
  cluster?.onRoomsGone((gone) => rooms.departed(gone));
  cluster?.onRoomsRestored((restored) => rooms.restored(restored));
  // Peers of an instance that died: their channels hear them leave, as on a disconnect.
  registry.onPeersGone((gone) => {
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
    rooms.attach(socket);
    if (log.isLevelEnabled('debug'))
      log.debug({ socket: socket.id, account: socket.data.account.name, transport: socket.conn.transport.name }, 'connected');
  });

  const shutdown = createShutdown({
    io,
    server,
    connections: open,
    begin() {
      // From here /ready answers 503 and new sockets are refused.
      shuttingDown = true;
      report.shutdown();
      served?.stop();
    },
    departures: [(socket) => signaling.leaveChannel(socket), (socket) => rooms.leaveAll(socket)],
    parts: [
      [
        'console',
        async () => {
          accountLimits.close();
          admin?.close();
          activity?.close();
        },
      ],
      ['webhooks', () => webhooks.close()],
      ['account manager', async () => accountManager?.close()],
      ['accounts', () => accounts.close()],
      ['registry', () => registry.close()],
      ['rooms', () => roomStore.close()],
      ['cluster', async () => cluster?.close()],
      ['metrics', async () => metrics.close()],
    ],
    graceMs: config.shutdownGraceMs,
    timeoutMs: config.shutdownTimeoutMs,
    log,
  });

  return {
    listen: () =>
      new Promise<number>((resolve, reject) => {
        server.once('error', reject);
        // When every client of a site reconnects at once (a network blip, a
        // restart), Node's default backlog of 511 overflows and the kernel
        // resets the rest: ask for as many as the kernel allows (somaxconn).
        server.listen({ port: config.port, host: config.host, backlog: LISTEN_BACKLOG }, () => {
          server.off('error', reject);
          const { port } = server.address() as AddressInfo;
          // pm2 cluster workers share the port: the process id tells them apart.
          if (cluster) metrics.labelInstance(`${hostname()}:${port}/${process.pid}`);
          resolve(port);
        });
      }),
    close: (options) => shutdown.close(options),
    reloadAccounts: () => control.reloadAccounts(),
    reloadCertificate: () => served?.reload() ?? false,
    get certificate() {
      return served?.info;
    },
    get port() {
      const address = server.address();
      return address && typeof address === 'object' ? address.port : 0;
    },
    secure,
    log,
    io,
    registry,
    rooms: roomStore,
    accounts,
    events,
    webhooks,
  };
}
