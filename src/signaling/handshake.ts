// The connection middleware: credentials -> account (and a signed-in user, see
// auth/sign-in.ts), then the account's plan decides whether one more socket
// may connect. Refusals are the exact strings the client shows.
import type { Logger } from 'pino';
import type { Socket } from 'socket.io';
import type { Account } from '../accounts/account';
import type { ChannelRegistry } from '../channels/registry';
import type { Clock } from '../clock';
import type { RefusalReason, Telemetry } from '../metrics';
import { HandshakeError, SignInError, type EventSchemas } from '../protocol';
import type { SignIn, SignInWay } from '../auth/sign-in';
import { createFailureLog } from './failures';
import type { FailedAuthLimiter } from './rate-limits';
import type { SignalingSocket } from './session';

export interface HandshakeDeps {
  registry: ChannelRegistry;
  schemas: EventSchemas;
  log: Logger;
  telemetry: Telemetry;
  production: boolean;
  /** Failed attempts per address; shared with the REST API's account-token checks. */
  failedAuth: FailedAuthLimiter;
  /** Resolves the handshake's credentials to an account and a signed-in user. */
  signIn: SignIn;
  /** EXTRA_SECURITY in production: a refused sign-in only says `Authentication failed`. */
  hideSignInDetails: boolean;
  eventsPerSecond: number;
  /** Monotonic time: failed-attempt windows, the event bucket, handshake durations. */
  clock: Pick<Clock, 'monotonic'>;
  /** The client's address, through trusted proxies (X-Forwarded-For). */
  clientAddress: (socket: Socket) => string;
  /** Told of each refused connection (server events). */
  onRefused?: ((account: string | undefined, reason: RefusalReason) => void) | undefined;
}

type Refusal = {
  message: string;
  account?: Account | undefined;
  reason: RefusalReason;
  /** A refusal of user/PIN or a signed token: hidden behind one message under EXTRA_SECURITY. */
  signedIn?: boolean;
  way?: SignInWay;
  detail?: string;
  user?: string | undefined;
};

export function createHandshake(deps: HandshakeDeps) {
  const { registry, schemas, log, telemetry, production } = deps;
  const { failedAuth, signIn, clock } = deps;
  const recordFailure = createFailureLog({ log, telemetry });

  /** Gives the account's connection back, once; on disconnect, or when the client left mid-handshake. */
  function releaseConnection(socket: SignalingSocket) {
    const { data } = socket;
    if (data.released) return;
    data.released = true;
    registry
      .disconnect(data.account.name)
      .catch((err: unknown) => void recordFailure('releasing a connection', { account: data.account.name }, err));
  }

  async function authenticate(socket: SignalingSocket): Promise<Refusal | null> {
    const address = deps.clientAddress(socket);
    if (await failedAuth.blocked(address, clock.monotonic())) return { message: HandshakeError.tooManyAttempts, reason: 'rate' };
    const auth = schemas.auth.safeParse(socket.handshake.auth);
    const result = await signIn(auth.success ? auth.data : {});
    if (!result.ok) {
      if (result.failed) await failedAuth.failed(address, clock.monotonic());
      // The user a sign-in claimed is no secret, and tells a site owner whose PIN failed.
      return { ...result, signedIn: result.way !== 'token', user: result.way === 'login' ? auth.data?.user : undefined };
    }
    const { account, identity } = result;
    const signedIn = identity !== undefined;
    if (account.suspended) {
      await registry.countRefusal(account.name, 'connect', ['suspended']);
      return { message: HandshakeError.suspended, account, reason: 'suspended', signedIn };
    }
    const refusal = await registry.connect(account.name, account.plan);
    if (refusal) {
      await registry.countRefusal(account.name, 'connect', [refusal]);
      return { message: HandshakeError[refusal], account, reason: refusal, signedIn };
    }
    socket.data = {
      account,
      identity,
      pending: 0,
      tokens: deps.eventsPerSecond,
      refilledAt: clock.monotonic(),
      rateNoticeAt: Number.NEGATIVE_INFINITY, // never told yet
      loggedAt: Number.NEGATIVE_INFINITY,
      unlogged: 0,
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
    const started = clock.monotonic();
    const took = () => (clock.monotonic() - started) / 1000;
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
            way: refusal.way,
            user: refusal.user,
            detail: refusal.detail,
            message: refusal.message,
            // The credentials are secrets: only development logs show them.
            ...(production ? {} : { auth: socket.handshake.auth }),
          },
          'connection refused',
        );
        next(new Error(refusal.signedIn && deps.hideSignInDetails ? SignInError.failed : refusal.message));
      },
      (err: unknown) => {
        telemetry.refused('unavailable');
        recordFailure('handshake', { socket: socket.id }, err);
        next(new Error(HandshakeError.unavailable));
      },
    );
  };
  return { middleware, releaseConnection };
}
