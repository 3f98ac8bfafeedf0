// A client that stops reading must not make the server hold its answers:
// engine.io queues outgoing packets without bound (in its write buffer while
// the transport is busy, then in the WebSocket's send buffer). Each
// connection's queued bytes are counted as packets are created; once more
// than `maxBytes` wait, the next packet cuts the connection. Also cut: a client that sends pongs
// nobody asked for, which engine.io takes as a reason to put off its next
// ping, so the heartbeat would never drop it.
import type { Socket as EngineSocket } from 'engine.io';
import type { Logger } from 'pino';
import type { Telemetry } from '../metrics';
import type { SignalingServer } from './session';

export interface OutgoingDeps {
  maxBytes: number;
  log: Logger;
  telemetry: Pick<Telemetry, 'disconnected'>;
}

interface Packet {
  type: string;
  data?: unknown;
  /** A broadcast's packet carries its WebSocket frame, header and payload, already encoded. */
  options?: { wsPreEncodedFrame?: readonly Uint8Array[] };
}

const sizeOf = ({ data, options }: Packet) => {
  // The frame's payload is the packet's bytes: measured already, not again.
  const payload = options?.wsPreEncodedFrame?.[1];
  if (payload) return payload.byteLength;
  if (typeof data === 'string') return Buffer.byteLength(data);
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return data.byteLength;
  return 0;
};

/** Bytes a WebSocket holds that the client has not taken yet (0 for polling: a response is written at once). */
const transportBuffered = (conn: EngineSocket) =>
  conn.transport.name === 'websocket'
    ? ((conn.transport as unknown as { socket?: { bufferedAmount?: number } }).socket?.bufferedAmount ?? 0)
    : 0;

/**
 * A connection's queued bytes, on the connection itself: counted for every
 * packet, where a WeakMap's set and delete cost more than the count.
 */
const QUEUED = Symbol('queuedBytes');
type CountedSocket = EngineSocket & { [QUEUED]?: number };

export function watchOutgoing(io: SignalingServer, { maxBytes, log, telemetry }: OutgoingDeps) {
  // Per connection, without a closure each: the listeners are shared and get the connection as `this`.
  const awaitingPong = new WeakSet<EngineSocket>();
  const cut = new WeakSet<EngineSocket>();

  function cutOff(conn: EngineSocket, reason: 'slowReader' | 'unpromptedPong', bytes: number) {
    if (cut.has(conn)) return;
    cut.add(conn);
    telemetry.disconnected(reason);
    log.warn({ ip: conn.remoteAddress, transport: conn.transport.name, reason, queuedBytes: bytes }, 'client disconnected');
    // After engine.io's own call (sendPacket, onPacket) returns.
    process.nextTick(terminate, conn);
  }

  function terminate(conn: EngineSocket) {
    // An orderly close would first wait for the client to read what is queued.
    if (conn.transport.name === 'websocket') (conn.transport as unknown as { socket?: { terminate(): void } }).socket?.terminate();
    conn.close(true);
  }

  function onPacketCreate(this: CountedSocket, packet: Packet) {
    if (packet.type === 'ping') awaitingPong.add(this);
    const waiting = this[QUEUED] ?? 0;
    const before = waiting + transportBuffered(this);
    // What waited before this packet decides: one large answer (a big channel's peer list) still goes out.
    if (before > maxBytes) return cutOff(this, 'slowReader', before);
    this[QUEUED] = waiting + sizeOf(packet);
  }

  // The write buffer goes to the transport whole; from there its bytes are the transport's.
  function onFlush(this: CountedSocket) {
    this[QUEUED] = 0;
  }

  function onPacket(this: EngineSocket, packet: Packet) {
    if (packet.type !== 'pong' || awaitingPong.delete(this)) return;
    cutOff(this, 'unpromptedPong', 0);
  }

  io.engine.on('connection', (conn: CountedSocket) => {
    conn[QUEUED] = 0;
    conn.on('packetCreate', onPacketCreate);
    conn.on('flush', onFlush);
    conn.on('packet', onPacket);
  });
}
