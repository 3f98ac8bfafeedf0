// How signaling answers a client it refuses, and how it logs what it drops:
// one error payload shape, refusals counted and reported in one place, and
// log lines that a flooding client cannot multiply.
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { RefusalReason, Telemetry } from '../metrics';
import { truncateName } from '../protocol';
import type { SignalingReport } from '../server-events';
import type { Clock } from '../clock';
import type { ErrorEvent } from './rate-limits';
import { createSampledLog } from './sampled-log';
import type { SignalingSocket } from './session';

/** What signaling needs of a socket besides the server: a handler can be given a fake one. */
export type PeerSocket = Pick<SignalingSocket, 'id' | 'data' | 'emit' | 'connected'>;

export interface Replies {
  /** Answers `event` with `message`, echoing `to`; each reason is counted once. */
  refuse(socket: PeerSocket, event: ErrorEvent, to: unknown, message: string, ...reasons: RefusalReason[]): void;
  /** Logs an event dropped without an answer, sampled per socket and per server. */
  dropped(socket: PeerSocket, fields: () => Record<string, unknown>, msg: string): void;
  /** A debug line, built only when debug is on (its fields cost even when off). */
  debug(fields: () => Record<string, unknown>, msg: string): void;
}

export interface RepliesDeps {
  log: Logger;
  telemetry: Pick<Telemetry, 'refused'>;
  report?: Pick<SignalingReport, 'refused'> | undefined;
  /** Names echoed back in error payloads are cut to this many characters. */
  maxNameLength: number;
  clock: Clock;
}

/** The fields every log line about a socket starts with. */
export const bindings = (socket: Pick<SignalingSocket, 'id' | 'data'>) => ({
  socket: socket.id,
  account: socket.data.account.name,
  peer: socket.data.registration?.peerID,
});

/** Who an answer to an event is addressed to: the peerID the event names, else the socket's own. */
export const addresseeOf = (socket: Pick<SignalingSocket, 'data'>, args: unknown[]) =>
  typeof args[0] === 'string' ? args[0] : socket.data.registration?.peerID;

/** A schema's complaint as a client reads it: the first three issues, each with its argument. */
export const describe = (error: z.ZodError) =>
  error.issues
    .slice(0, 3)
    .map((i) => `${i.path.length ? `argument ${i.path.join('.')}` : 'arguments'}: ${i.message}`)
    .join('; ');

export function createReplies({ log, telemetry, report, maxNameLength, clock }: RepliesDeps): Replies {
  const sampled = createSampledLog(log, clock);
  return {
    refuse(socket, event, to, message, ...reasons) {
      for (const reason of reasons) telemetry.refused(reason);
      report?.refused(socket.data.account.name, event, reasons, to);
      // `to` echoes what the client sent: never longer than a valid name.
      socket.emit(event, { from: '_server_', to: typeof to === 'string' ? truncateName(to, maxNameLength) : '', message });
      sampled(socket, 'info', () => ({ ...bindings(socket), event, message }), 'event refused');
    },
    dropped: (socket, fields, msg) => sampled(socket, 'info', fields, msg),
    debug(fields, msg) {
      if (log.isLevelEnabled('debug')) log.debug(fields(), msg);
    },
  };
}
