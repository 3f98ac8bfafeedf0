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
import { mysqlAccountSource } from './accounts/mysql';
import { STATIC_ACCOUNT } from './accounts/account';
import { createAccountStore, type AccountSource, type AccountStore } from './accounts/store';
import { createApi } from './api';
import { createLoginClient } from './auth/login';
import { createSignIn } from './auth/sign-in';
import { createTokenVerifier } from './auth/tokens';
import { createMemoryRegistry } from './channels/memory';
import type { ChannelRegistry } from './channels/registry';
import { createCluster } from './cluster';
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
import { createRooms } from './rooms/events';
import { createMemoryRoomStore } from './rooms/memory';
import type { RoomStore } from './rooms/store';
import { readCertificate } from './tls';
import { version } from './version';

export interface ServerDeps {
  log?: Logger;
  /** Where logs go when no `log` is given (tests capture them). */
  logDestination?: DestinationStream;
  registry?: ChannelRegistry;
  rooms?: RoomStore;
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
  readonly rooms: RoomStore;
  readonly accounts: AccountStore;
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
  const roomStore = deps.rooms ?? cluster?.rooms ?? createMemoryRoomStore();
  const metrics = createMetrics(registry, { perAccount: config.metricsPerAccount, rooms: () => roomStore.list() });
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
  app.use(createApi({ config, registry, rooms: roomStore, accounts, metrics, readiness, version, log, failedAuth }));
  if (config.demo) app.use('/demo', createDemoRouter());
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
  watchOutgoing(io, { maxBytes: config.maxOutgoingBytes, log, telemetry: metrics.telemetry });
  const schemas = eventSchemas(config);
  io.use((_socket, next) => next(shuttingDown ? new Error(HandshakeError.unavailable) : undefined));
  const handshake = createHandshake({
    registry,
    schemas,
    log,
    telemetry: metrics.telemetry,
    production: config.production,
    failedAuth,
    signIn,
    hideSignInDetails: config.production && config.extraSecurity,
    eventsPerSecond: config.rateEventsPerSecond,
    clientAddress: (socket) => proxyaddr(socket.request, trustProxy),
  });
  io.use(handshake.middleware);
  const origins = createOriginCheck({
    allowed: parseOrigins(config.corsOrigin),
    registry,
    log,
    telemetry: metrics.telemetry,
    clientAddress: (req) => proxyaddr(req, trustProxy),
    releaseConnection: handshake.releaseConnection,
  });
  // After the handshake: an account's own allowedOrigins need the account.
  io.use(origins.middleware);
  const peerConfig = createPeerConfig(config, now);
  const signaling = createSignaling({
    io,
    registry,
    schemas,
    peerConfig,
    log,
    telemetry: metrics.telemetry,
    eventsPerSecond: config.rateEventsPerSecond,
    maxNameLength: config.maxNameLength,
    enforceSdp: config.enforceSdp,
    accountMaxChannels: config.accountMaxChannels,
    accountMaxPeers: config.accountMaxPeers,
    releaseConnection: handshake.releaseConnection,
  });
  const rooms = createRooms({
    io,
    store: roomStore,
    registry,
    schemas,
    peerConfig,
    log,
    telemetry: metrics.telemetry,
    limits: config.rooms,
    maxNameLength: config.maxNameLength,
    eventsPerSecond: config.rateEventsPerSecond,
    accountMaxChannels: config.accountMaxChannels,
    accountMaxPeers: config.accountMaxPeers,
    announceLeave: signaling.announceLeave,
    deliver: signaling.deliver,
    chatRelayed: metrics.chatRelayed,
    clustered: Boolean(cluster),
    now,
  });
  cluster?.onRoomsGone((gone) => rooms.departed(gone));
  // Peers of an instance that died: their channels hear them leave, as on a disconnect.
  cluster?.onPeersGone((gone) => {
    for (const { channel, peerID, socketIds } of gone) signaling.announceLeave(peerID, channel, socketIds);
  });
  io.on('connection', (socket) => {
    signaling.attach(socket);
    rooms.attach(socket);
    if (log.isLevelEnabled('debug'))
      log.debug({ socket: socket.id, account: socket.data.account.name, transport: socket.conn.transport.name }, 'connected');
  });

  let closing: Promise<void> | undefined;
  async function close() {
    // From here /ready answers 503 and new sockets are refused.
    shuttingDown = true;
    const sockets = [...io.sockets.sockets.values()];
    // Each peer's channel hears it leave before the sockets go.
    await Promise.allSettled(sockets.map((s) => signaling.leaveChannel(s)));
    await Promise.allSettled(sockets.map((s) => rooms.leaveAll(s)));
    // This instance's sockets only: through the adapter it would reach every instance's.
    io.local.disconnectSockets(true);
    // Behind a load balancer: time for its health checks to see the 503.
    if (config.shutdownGraceMs) await new Promise((resolve) => setTimeout(resolve, config.shutdownGraceMs));
    server.close();
    await new Promise<void>((resolve) => io.close(() => resolve()));
    server.closeAllConnections();
    await accounts.close();
    await registry.close();
    await roomStore.close();
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
    rooms: roomStore,
    accounts,
  };
}
