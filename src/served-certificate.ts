// The certificate an HTTPS server serves: read at start, then reloaded on a
// renewal (the files change, or SIGUSR2 through reload()), with the session
// ticket keys rotated and carried over each reload so that reconnects resume.
import type { Server } from 'node:https';
import type { Logger } from 'pino';
import { rotateTicketKeys } from './session-tickets';
import { readCertificate, watchCertificate, type Certificate, type CertificateInfo } from './tls';

export interface ServedCertificate {
  /** The certificate served now. */
  readonly info: CertificateInfo;
  /** Reads the files again and serves them to new connections; false (logged) when they are not usable. */
  reload(): boolean;
  /** Stops watching the files and rotating the ticket keys. */
  stop(): void;
}

export interface ServeOptions {
  log: Logger;
  /** TLS_TICKET_SECRET: the same on every instance, a session resumes on any of them. */
  ticketSecret: string | undefined;
  /** TLS_TICKET_ROTATE_HOURS, in milliseconds. */
  ticketRotateMs: number;
  /** Wall-clock time: ticket key periods are counted from the epoch, alike on every instance. */
  now: () => number;
}

/** The certificate as logs and the start-up line show it. */
export function describeCertificate(info: CertificateInfo) {
  return { names: info.names, expires: info.notAfter.toISOString(), serial: info.serial };
}

export function serveCertificate(
  server: Server,
  first: Certificate,
  { log, ticketSecret, ticketRotateMs, now }: ServeOptions,
): ServedCertificate {
  let certificate = first;
  function reload(): boolean {
    try {
      const next = readCertificate(certificate.files);
      // A new context has new session ticket keys: carried over, so reconnects still resume.
      const ticketKeys = server.getTicketKeys();
      server.setSecureContext(next.options);
      server.setTicketKeys(ticketKeys);
      certificate = next;
      log.info(describeCertificate(next.info), 'certificate reloaded: new connections get it, established ones keep theirs');
      return true;
    } catch (err) {
      // A renewal half written, or a bad file: the certificate served so far stays.
      log.error({ err: (err as Error).message }, 'certificate not reloaded, keeping the one served now');
      return false;
    }
  }
  const stopWatching = watchCertificate(certificate.files, reload);
  const stopRotating = rotateTicketKeys(server, { secret: ticketSecret, rotateMs: ticketRotateMs, now });
  return {
    get info() {
      return certificate.info;
    },
    reload,
    stop() {
      stopWatching();
      stopRotating();
    },
  };
}
