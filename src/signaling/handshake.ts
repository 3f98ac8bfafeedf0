// The connection middleware: token -> account, then the account's plan decides
// whether one more socket may connect. Refusals are the exact strings the
// client shows.
import type { Logger } from 'pino';
import type { Socket } from 'socket.io';
import type { Account } from '../accounts/account';
import type { AccountStore } from '../accounts/store';
import type { ChannelRegistry } from '../channels/registry';
import type { RefusalReason, Telemetry } from '../metrics';
import { HandshakeError, type EventSchemas } from '../protocol';
import { createFailedAuthLimiter } from './rate-limits';
import type { SignalingSocket } from './session';

export interface HandshakeDeps {
  accounts: AccountStore;
  registry: ChannelRegistry;
  schemas: EventSchemas;
  log: Logger;
  telemetry: Telemetry;
  production: boolean;
  failedAuthPerMinute: number;
  eventsPerSecond: number;
  /** The client's address, through trusted proxies (X-Forwarded-For). */
  clientAddress: (socket: Socket) => string;
  /** Told of each refused connection (server events). */
  onRefused?: ((account: string | undefined, reason: RefusalReason) => void) | undefined;
}

type Refusal = { message: string; account?: Account; reason: RefusalReason };

export function createHandshake(deps: HandshakeDeps) {
  const { accounts, registry, schemas, log, telemetry, production } = deps;
  const failedAuth = createFailedAuthLimiter({ perMinute: deps.failedAuthPerMinute });

  /** Gives the account's connection back, once; on disconnect, or when the client left mid-handshake. */
  function releaseConnection(socket: SignalingSocket) {
    const { data } = socket;
    if (data.released) return;
    data.released = true;
    registry.disconnect(data.account.name).catch((err: unknown) => log.error({ err, account: data.account.name }, 'releasing a connection failed'));
  }

  async function authenticate(socket: SignalingSocket): Promise<Refusal | null> {
    const address = deps.clientAddress(socket);
    if (failedAuth.blocked(address, performance.now())) return { message: HandshakeError.tooManyAttempts, reason: 'rate' };
    const auth = schemas.auth.safeParse(socket.handshake.auth);
    const account = auth.success ? accounts.findByToken(auth.data.token) : undefined;
    // Until the accounts have loaded once (database down at start), an
    // account token is not wrong: the client should retry later.
    if (!account && auth.success && !accounts.hasLoaded()) return { message: HandshakeError.unavailable, reason: 'unavailable' };
    if (!account) {
      failedAuth.failed(address, performance.now());
      return { message: HandshakeError.authentication, reason: 'auth' };
    }
    if (account.suspended) {
      await registry.countRefusal(account.name, 'connect', ['suspended']);
      return { message: HandshakeError.suspended, account, reason: 'suspended' };
    }
    const refusal = await registry.connect(account.name, account.plan);
    if (refusal) {
      await registry.countRefusal(account.name, 'connect', [refusal]);
      return { message: HandshakeError[refusal], account, reason: refusal };
    }
    socket.data = {
      account,
      pending: 0,
      tokens: deps.eventsPerSecond,
      refilledAt: performance.now(),
      rateNoticeAt: Number.NEGATIVE_INFINITY, // never told yet
      released: false,
      // Present from the start, so every socket's data keeps one shape.
      registration: undefined,
      queue: undefined,
    };
    // The client may have gone while the registry was asked; then Socket.IO
    // drops the socket and no `disconnect` will ever come for it.
    if (socket.conn.readyState !== 'open') releaseConnection(socket);
    return null;
  }

  const middleware = (socket: Socket, next: (err?: Error) => void) => {
    const started = performance.now();
    const took = () => (performance.now() - started) / 1000;
    authenticate(socket as SignalingSocket).then(
      (refusal) => {
        if (!refusal) {
          telemetry.handshake(took(), 'accepted');
          return next();
        }
        telemetry.handshake(took(), 'refused');
        telemetry.refused(refusal.reason);
        deps.onRefused?.(refusal.account?.name, refusal.reason);
        log.warn(
          {
            socket: socket.id,
            ip: deps.clientAddress(socket),
            account: refusal.account?.name,
            reason: refusal.reason,
            ...(production ? {} : { auth: socket.handshake.auth }),
          },
          'connection refused',
        );
        next(new Error(refusal.message));
      },
      (err: unknown) => {
        telemetry.refused('unavailable');
        log.error({ err, socket: socket.id }, 'handshake failed');
        next(new Error(HandshakeError.unavailable));
      },
    );
  };
  return { middleware, releaseConnection };
}
