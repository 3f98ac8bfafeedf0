// Sending to sockets by id, wherever they are connected.
import type { DirectRoute } from '../channels/redis/direct';
import type { ServerToClientEvents } from '../protocol';
import type { SignalingServer } from './session';

/** A socket to reach, and the instance that holds it where the registry knows it. */
export interface SocketAddress {
  socketId: string;
  instance?: string | undefined;
}

export interface Delivery {
  /** To one socket: directly when it is on this process, else through the adapter, which knows the others. */
  toSocket<E extends keyof ServerToClientEvents>(socketId: string, event: E, ...payload: Parameters<ServerToClientEvents[E]>): void;
  /**
   * To one socket whose instance is known: on another instance, straight to
   * it over the cluster's direct route (direct.ts), else as toSocket.
   */
  toPeer<E extends keyof ServerToClientEvents>(peer: SocketAddress, event: E, ...payload: Parameters<ServerToClientEvents[E]>): void;
  /**
   * To several sockets, each reached as toPeer: those whose instance is known
   * straight to it, the others through the adapter together.
   */
  toPeers<E extends keyof ServerToClientEvents>(peers: SocketAddress[], event: E, ...payload: Parameters<ServerToClientEvents[E]>): void;
  /** To several sockets at once, on any process. */
  toSockets<E extends keyof ServerToClientEvents>(socketIds: string[], event: E, ...payload: Parameters<ServerToClientEvents[E]>): void;
}

export interface DirectDelivery {
  /** This instance's id: a socket registered here but gone needs no route. */
  instanceId: string;
  route: DirectRoute;
}

/**
 * Sends to sockets of this process, if they are still here. Through a local
 * broadcast rather than Socket.emit: the broadcast frames the packet as a
 * WebSocket message once, as a buffer, where Socket.emit hands the string to
 * `ws`, which measures its UTF-8 length and then writes it as a string, and
 * the slow-reader count (outgoing.ts) would measure it once more.
 */
export function createLocalSend(io: SignalingServer) {
  // `io.local` builds two operators per call; one is kept, for the namespace's adapter it was made with.
  let kept: { adapter: SignalingServer['sockets']['adapter']; operator: SignalingServer['local'] } | undefined;
  return function toLocalSocket<E extends keyof ServerToClientEvents>(
    socketId: string,
    event: E,
    ...payload: Parameters<ServerToClientEvents[E]>
  ) {
    const adapter = io.sockets.adapter;
    if (kept?.adapter !== adapter) kept = { adapter, operator: io.local };
    kept.operator.to(socketId).emit(event, ...payload);
  };
}

export function createDelivery(io: SignalingServer, direct?: DirectDelivery): Delivery {
  const toLocalSocket = createLocalSend(io);
  function toSocket<E extends keyof ServerToClientEvents>(socketId: string, event: E, ...payload: Parameters<ServerToClientEvents[E]>) {
    if (io.sockets.sockets.has(socketId)) toLocalSocket(socketId, event, ...payload);
    else io.to(socketId).emit(event, ...payload);
  }
  /** Sends to a peer on a known instance and answers true, else answers false. */
  function sentDirectly<E extends keyof ServerToClientEvents>(peer: SocketAddress, event: E, payload: Parameters<ServerToClientEvents[E]>) {
    const { socketId, instance } = peer;
    if (!direct || !instance) return false;
    if (instance === direct.instanceId) {
      // Registered by this instance: here, or gone (no other instance has it).
      toLocalSocket(socketId, event, ...payload);
      return true;
    }
    // The route falls back to the adapter when that instance cannot be reached (direct.ts).
    direct.route.send(instance, socketId, event, payload, () => io.to(socketId).emit(event, ...payload));
    return true;
  }
  function toSockets<E extends keyof ServerToClientEvents>(socketIds: string[], event: E, ...payload: Parameters<ServerToClientEvents[E]>) {
    io.to(socketIds).emit(event, ...payload);
  }
  return {
    toSocket,
    toPeer(peer, event, ...payload) {
      if (!sentDirectly(peer, event, payload)) toSocket(peer.socketId, event, ...payload);
    },
    toPeers(peers, event, ...payload) {
      const elsewhere = peers.filter((peer) => !sentDirectly(peer, event, payload)).map((peer) => peer.socketId);
      if (elsewhere.length === 1) toSocket(elsewhere[0] as string, event, ...payload);
      else if (elsewhere.length) toSockets(elsewhere, event, ...payload);
    },
    toSockets,
  };
}
