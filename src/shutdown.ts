// The server's close sequence: stop taking sockets, let calls drain when
// asked, tell every channel and room its peers leave, cut connections that
// will not close, then release each part even when one before it fails.
import type { Server as HttpServer } from 'node:http';
import type { Socket as NetSocket } from 'node:net';
import type { Logger } from 'pino';
import type { SignalingServer, SignalingSocket } from './signaling/session';

export interface CloseOptions {
  /**
   * First stop listening and let established sockets go on (calls in
   * progress) for up to this long, while other instances take new connections.
   */
  drainMs?: number;
}

export interface ShutdownDeps {
  io: SignalingServer;
  server: HttpServer;
  /** Every open connection, so that those that will not close (a client that stops reading) can be cut. */
  connections: ReadonlySet<NetSocket>;
  /** Run first: from here the server must refuse new sockets and answer /ready with 503. */
  begin: () => void;
  /** Stages of leaving, each run for every socket before the next (channels, then rooms). */
  departures: readonly ((socket: SignalingSocket) => Promise<unknown>)[];
  /** Released in this order once the sockets are gone. */
  parts: readonly (readonly [name: string, release: () => Promise<unknown>])[];
  /** SHUTDOWN_GRACE_MS: time for a load balancer's health checks to see the 503. */
  graceMs: number;
  /** SHUTDOWN_TIMEOUT_MS: the whole close must fit in it (pm2's kill_timeout). */
  timeoutMs: number;
  log: Logger;
}

export interface Shutdown {
  /** Closes the server; called again while draining, it ends the drain and returns the same promise. */
  close(options?: CloseOptions): Promise<void>;
}

/** How long a closing connection may take to flush before it is cut. */
const FLUSH_MS = 1000;

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves once `done()` holds, checked whenever `subscribe`'s callback says it may have changed, or after `ms`, or when cut. */
function until(done: () => boolean, subscribe: (check: () => void) => void, ms: number, onCut?: (cut: () => void) => void) {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(finish, ms);
    function finish() {
      clearTimeout(timer);
      resolve();
    }
    const check = () => void (done() && finish());
    subscribe(check);
    onCut?.(finish);
    check();
  });
}

export function createShutdown({ io, server, connections, begin, departures, parts, graceMs, timeoutMs, log }: ShutdownDeps): Shutdown {
  let closing: Promise<void> | undefined;
  let cutDrain: (() => void) | undefined;

  async function endSessions() {
    const sockets = [...io.sockets.sockets.values()];
    // Each peer's channel hears it leave before the sockets go.
    for (const leave of departures) await Promise.allSettled(sockets.map(leave));
    // This instance's sockets only: through the adapter it would reach every instance's.
    io.local.disconnectSockets(true);
    return sockets.length;
  }
  function stopListening() {
    server.close();
    server.closeIdleConnections();
  }

  async function drain(drainMs: number) {
    if (io.engine.clientsCount === 0) return;
    log.info({ sockets: io.engine.clientsCount, drainMs }, 'draining: established sockets go on until they end');
    await until(
      () => io.engine.clientsCount === 0,
      (check) => {
        for (const socket of io.sockets.sockets.values()) socket.conn.once('close', () => setImmediate(check));
      },
      drainMs,
      (cut) => (cutDrain = cut),
    );
  }

  async function release() {
    // Each part is released even when one before it fails; a failure is still a failed shutdown.
    const failed: string[] = [];
    for (const [part, releasePart] of parts) {
      await releasePart().catch((err: unknown) => {
        failed.push(part);
        log.error({ err, part }, 'releasing a part of the server failed');
      });
    }
    if (failed.length) throw new Error(`shutdown: releasing ${failed.join(', ')} failed`);
  }

  async function close({ drainMs = 0 }: CloseOptions) {
    begin();
    let sockets: number;
    if (drainMs > 0) {
      // Behind a load balancer: time for its health checks to see the 503.
      if (graceMs) await delay(graceMs);
      // New connections now go to the other instances (pm2 stops sending them here).
      stopListening();
      await drain(drainMs);
      sockets = await endSessions();
    } else {
      sockets = await endSessions();
      if (graceMs) await delay(graceMs);
      stopListening();
    }
    // A socket that does not read never flushes its close: it gets a short
    // while, then it is cut, so that the clean-up below always runs.
    const flushMs = Math.min(FLUSH_MS, timeoutMs / 2);
    await until(
      () => connections.size === 0,
      (check) => connections.forEach((socket) => socket.once('close', check)),
      flushMs,
    );
    if (connections.size) log.warn({ connections: connections.size }, 'connections that did not close in time were cut');
    for (const socket of connections) socket.destroy();
    server.closeAllConnections();
    // The adapter's last Redis write may fail (Redis away): the process is leaving anyway.
    const ioClosed = io.close().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'Socket.IO closed with an error'));
    await Promise.race([ioClosed, delay(flushMs)]);
    await release();
    log.info({ sockets }, 'server closed');
  }

  return {
    close(options = {}) {
      if (closing) cutDrain?.();
      return (closing ??= close(options));
    },
  };
}
