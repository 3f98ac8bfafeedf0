// engine.io keeps each connection's first HTTP request (for a WebSocket
// client, its upgrade request) for as long as the connection lasts, so that
// Socket.IO can build the handshake of every namespace the client connects
// to. Only a few of its fields are read after the upgrade: Socket.IO's
// handshake reads the headers, URL, query and whether it came over TLS, this
// server the client's address through proxies (proxy-addr: the socket and
// X-Forwarded-For) and the socket that carries the frames (coalesce.ts).
// Keeping those in a small object instead frees the request itself (its
// stream state, raw header list and parser leftovers) on every idle
// connection. The headers stay whole: an account's allowed origins are
// checked again on every namespace connect, and rightly so.
import type { IncomingMessage } from 'node:http';
import type { Socket as EngineSocket } from 'engine.io';
import type { SignalingServer } from './session';

/** What is read of a connection's first request once the connection is set up. */
export interface FirstRequest {
  headers: IncomingMessage['headers'];
  url: IncomingMessage['url'];
  /** engine.io's parsed query string, Socket.IO's `handshake.query`. */
  _query: unknown;
  socket: IncomingMessage['socket'];
  /** The same socket, under the name Socket.IO reads (`connection.encrypted`). */
  connection: IncomingMessage['socket'];
}

export function keepFirstRequestEssentials(io: SignalingServer) {
  io.engine.on('connection', (conn: EngineSocket) => {
    const req = conn.request as IncomingMessage & { _query?: unknown };
    const kept: FirstRequest = { headers: req.headers, url: req.url, _query: req._query, socket: req.socket, connection: req.socket };
    conn.request = kept as unknown as IncomingMessage;
  });
}
