// Node writes each WebSocket frame to the TLS socket on its own: one TLS
// record and one write syscall per Socket.IO packet. When engine.io sends
// several packets at once (those queued while the previous write was in
// flight, e.g. an offer's candidates), they are corked into a single write.
// Corking and uncorking happen in the same synchronous call, so no packet
// waits for anything.
import type { Socket as EngineSocket } from 'engine.io';
import type { SignalingServer } from './session';

export function coalesceBatchedWrites(io: SignalingServer) {
  let corked: EngineSocket['request']['socket'] | undefined;
  io.engine.on('flush', (conn: EngineSocket, packets: unknown[]) => {
    // The first request of a WebSocket-only session is its upgrade, whose
    // socket carries the frames; for any other session this is a no-op.
    if (packets.length < 2 || conn.transport.name !== 'websocket') return;
    // Left corked only if a send threw before its drain: let it go first.
    corked?.uncork();
    corked = conn.request.socket;
    corked.cork();
  });
  io.engine.on('drain', () => {
    if (!corked) return;
    const socket = corked;
    corked = undefined;
    socket.uncork();
  });
}
