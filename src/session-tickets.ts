// TLS session tickets, so that a reconnecting client resumes its session
// instead of paying a full handshake again (a resumed handshake skips the
// certificate signature, the larger share of a connection's CPU).
//
// Node encrypts tickets with one key per server, random and never changed.
// Here the key changes every TLS_TICKET_ROTATE_HOURS, so a key that leaks
// opens only that period's sessions. With TLS_TICKET_SECRET each period's key
// is derived from the secret, the same on every instance, so a reconnect that
// a load balancer or pm2's cluster mode sends to another instance resumes
// there too, with no round trip to anything shared. A ticket from before a
// rotation gets a full handshake, as a client without a ticket does.
import { hkdfSync, randomBytes } from 'node:crypto';
import type { Server } from 'node:tls';

/** Node's ticket key: 16 bytes of key name, 16 of HMAC secret, 16 of AES key. */
const TICKET_KEY_BYTES = 48;

/** The ticket key of rotation period `period`, derived from `secret`. */
export function derivedTicketKey(secret: string, period: number): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'videowhisper-webrtc tls session tickets', `period ${period}`, TICKET_KEY_BYTES));
}

export interface TicketKeyOptions {
  /** Shared by every instance that should resume each other's sessions; unset: a random key per instance. */
  secret: string | undefined;
  rotateMs: number;
  /** Wall-clock ms: instances agree on the period through the time of day. */
  now: () => number;
}

/** Sets the server's ticket key now and at the start of every period; returns a function that stops it. */
export function rotateTicketKeys(server: Server, { secret, rotateMs, now }: TicketKeyOptions): () => void {
  let timer: NodeJS.Timeout | undefined;
  const apply = () => {
    const period = Math.floor(now() / rotateMs);
    server.setTicketKeys(secret ? derivedTicketKey(secret, period) : randomBytes(TICKET_KEY_BYTES));
    // At the next period's start, plus a little, so that instances whose clocks differ slightly agree soon after.
    timer = setTimeout(apply, (period + 1) * rotateMs - now() + 1000);
    timer.unref();
  };
  apply();
  return () => clearTimeout(timer);
}
