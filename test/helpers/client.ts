// socket.io-client as the shipped HTML5 Videochat client uses it: websocket
// transport only, `auth: { token }`, no reconnection.
import type { TestContext } from 'node:test';
import { io, type Socket } from 'socket.io-client';
import { testCertificate } from './tls';

export type Client = Socket & { messages: Record<string, unknown>[] };

export function connectClient(url: string, auth: Record<string, unknown> | undefined, extra: Record<string, unknown> = {}): Client {
  const socket = io(url, {
    ...(auth === undefined ? {} : { auth }),
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    ca: testCertificate().ca.toString(),
    ...extra,
  }) as Client;
  socket.messages = [];
  socket.on('message', (m: Record<string, unknown>) => socket.messages.push(m));
  return socket;
}

/** Connects and resolves once connected; closed after the test. */
export async function connect(t: TestContext | undefined, url: string, token: string, extra?: Record<string, unknown>) {
  const socket = connectClient(url, { token }, extra);
  t?.after(() => socket.close());
  await Promise.race([
    next(socket, 'connect'),
    next<Error>(socket, 'connect_error').then((err) => {
      throw err;
    }),
  ]);
  return socket;
}

/**
 * Resolves with the connect_error message of a refused connection,
 * 'connected', or 'closed' when the server dropped a malformed handshake.
 */
export async function refusal(url: string, auth: Record<string, unknown> | undefined): Promise<string> {
  const socket = connectClient(url, auth);
  try {
    return await Promise.race([
      next(socket, 'connect').then(() => 'connected'),
      next<Error>(socket, 'connect_error').then((err) => err.message),
      // 'forced close' is the client giving up after a connect_error; only the server closing counts.
      next<string>(socket.io as unknown as Socket, 'close', (reason) => reason !== 'forced close').then(() => 'closed'),
    ]);
  } finally {
    socket.close();
  }
}

/** The next `event` whose payload matches; fails after `ms`. */
export function next<T = Record<string, unknown>>(
  socket: { on(event: string, fn: (payload: T) => void): unknown; off(event: string, fn: (payload: T) => void): unknown },
  event: string,
  match: (payload: T) => boolean = () => true,
  ms = 5000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(event, listener);
      reject(new Error(`no matching "${event}" within ${ms} ms`));
    }, ms);
    // A pending wait must not keep the test process alive once the tests are done.
    timer.unref();
    const listener = (payload: T) => {
      if (!match(payload)) return;
      clearTimeout(timer);
      socket.off(event, listener);
      resolve(payload);
    };
    socket.on(event, listener);
  });
}

/** The next signaling message of a given type (or close action) addressed to this socket. */
export const nextMessage = (socket: Socket, type: string, ms?: number) =>
  next(socket, 'message', (m) => m.type === type || (type === 'close' && (m.payload as { action?: string })?.action === 'close'), ms);
