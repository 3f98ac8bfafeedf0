// Which web pages may open a socket. A browser names the page in `Origin`
// on the polling handshake and on the WebSocket upgrade alike; CORS headers
// alone do not stop a WebSocket. CORS_ORIGIN holds for every account; an
// account's `allowedOrigins` property narrows it to that site's own pages.
// Clients that send no `Origin` (native apps, servers) are not browsers that
// could be led to connect, and pass.
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import type { Socket } from 'socket.io';
import type { ChannelRegistry } from './channels/registry';
import type { Telemetry } from './metrics';
import { HandshakeError } from './protocol';
import { createFailureLog } from './signaling/failures';
import type { SignalingSocket } from './signaling/session';

/** An origin as browsers send it: `scheme://host[:port]`, lower case, no trailing slash. */
export const normalizeOrigin = (origin: string) => origin.trim().toLowerCase().replace(/\/+$/, '');

/** A comma-separated list of origins; undefined for `*` (any origin). */
export function parseOrigins(list: string): ReadonlySet<string> | undefined {
  const origins = list.split(',').map(normalizeOrigin).filter(Boolean);
  return origins.includes('*') ? undefined : new Set(origins);
}

export interface OriginDeps {
  /** CORS_ORIGIN, parsed: undefined when any origin may connect. */
  allowed: ReadonlySet<string> | undefined;
  registry: ChannelRegistry;
  log: Logger;
  telemetry: Pick<Telemetry, 'refused' | 'failed'>;
  clientAddress: (req: IncomingMessage) => string;
  /** Gives a refused socket's connection back to its account's count. */
  releaseConnection: (socket: SignalingSocket) => void;
}

export function createOriginCheck(deps: OriginDeps) {
  const { allowed, log, telemetry } = deps;
  const recordFailure = createFailureLog({ log, telemetry });
  const admits = (origins: ReadonlySet<string> | undefined, origin: string | undefined) =>
    !origins || origin === undefined || origins.has(normalizeOrigin(origin));

  /** Socket.IO's `allowRequest`: runs on the first request of every session, before any account is known. */
  function allowRequest(req: IncomingMessage, callback: (err: string | null | undefined, success: boolean) => void) {
    const origin = req.headers.origin;
    if (admits(allowed, origin)) return callback(null, true);
    telemetry.refused('origin');
    log.warn({ origin: origin?.slice(0, 200), ip: deps.clientAddress(req) }, 'connection refused: origin not allowed');
    callback(HandshakeError.origin, false);
  }

  /** Connection middleware after the handshake: the account's own `allowedOrigins`, if it has any. */
  function middleware(socket: Socket, next: (err?: Error) => void) {
    const s = socket as SignalingSocket;
    const account = s.data.account;
    const origin = socket.handshake.headers.origin;
    if (admits(account.allowedOrigins, origin)) return next();
    deps.releaseConnection(s);
    telemetry.refused('origin');
    log.warn(
      { socket: socket.id, account: account.name, origin: origin?.slice(0, 200) },
      'connection refused: origin not allowed for the account',
    );
    deps.registry
      .countRefusal(account.name, 'connect', ['origin'])
      .catch((err: unknown) => void recordFailure('counting a refusal', { socket: socket.id, account: account.name }, err))
      .finally(() => next(new Error(HandshakeError.origin)));
  }

  return { allowRequest, middleware };
}
