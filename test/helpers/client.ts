// socket.io-client as the shipped HTML5 Videochat client uses it: websocket
// transport only, `auth: { token }`, no reconnection.
import type { TestContext } from 'node:test';
import { io, type Socket } from 'socket.io-client';
import { testCertificate } from './tls';

export type Client = Socket & { messages: Record<string, unknown>[] };

/** The stream a broadcaster publishes when a test needs no other. */
export const STREAM = { width: 640, height: 360, bitrate: 500, frameRate: 15, audioBitrate: 32 };

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

/** `reply`, unless `socket` gets the `refusal` event first: then the wait fails with the server's reason. */
async function unlessRefused<T>(reply: Promise<T>, socket: Client, refusal: string): Promise<T> {
  let refused = (_error: { message?: unknown }) => {};
  const failure = new Promise<never>((_, reject) => {
    refused = (error) => reject(new Error(`${refusal}: ${String(error?.message)}`));
  });
  socket.on(refusal, refused);
  try {
    return await Promise.race([reply, failure]);
  } finally {
    socket.off(refusal, refused);
  }
}

export interface BroadcastAndWatch {
  channel: string;
  /** The broadcaster's peerID ('Studio' unless given). */
  broadcaster?: string;
  /** The player's peerID ('Viewer' unless given). */
  player?: string;
  stream?: Record<string, unknown>;
  /** Where the player connects when not where the broadcaster does (another instance of a cluster). */
  playerUrl?: string;
}

/**
 * The protocol's usual opening: a broadcaster publishes `channel` and gets
 * its `peers` list, then a player subscribes and the broadcaster gets the
 * `peer` notice (returned). A publishError or subscribeError fails it with
 * the server's reason. Both sockets are closed after the test.
 */
export async function broadcastAndWatch(
  t: TestContext | undefined,
  url: string,
  token: string,
  { channel, broadcaster = 'Studio', player = 'Viewer', stream = STREAM, playerUrl = url }: BroadcastAndWatch,
): Promise<{ broadcaster: Client; player: Client; notice: Record<string, unknown> }> {
  const broadcasting = await connect(t, url, token);
  const published = unlessRefused(nextMessage(broadcasting, 'peers'), broadcasting, 'publishError');
  broadcasting.emit('publish', broadcaster, channel, stream);
  await published;
  const watching = await connect(t, playerUrl, token);
  const noticed = unlessRefused(nextMessage(broadcasting, 'peer'), watching, 'subscribeError');
  watching.emit('subscribe', player, channel);
  return { broadcaster: broadcasting, player: watching, notice: await noticed };
}

/** An offer from the broadcaster `Studio` to the player `Viewer` and the answer back, each awaited where it lands. */
export async function offerAndAnswer(broadcaster: Client, player: Client) {
  const offered = nextMessage(player, 'offer');
  broadcaster.emit('messagePeer', { target: 'Viewer', type: 'offer', content: { type: 'offer', sdp: 'v=0' } });
  await offered;
  const answered = nextMessage(broadcaster, 'answer');
  player.emit('messagePeer', { target: 'Studio', type: 'answer', content: { type: 'answer', sdp: 'v=0' } });
  await answered;
}
