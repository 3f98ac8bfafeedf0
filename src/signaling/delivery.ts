// Sending to sockets by id, wherever they are connected.
import type { ServerToClientEvents } from '../protocol';
import type { SignalingServer } from './session';

export interface Delivery {
  /** To one socket: directly when it is on this process, else through the adapter, which knows the others. */
  toSocket<E extends keyof ServerToClientEvents>(socketId: string, event: E, ...payload: Parameters<ServerToClientEvents[E]>): void;
  /** To several sockets at once, on any process. */
  toSockets<E extends keyof ServerToClientEvents>(socketIds: string[], event: E, ...payload: Parameters<ServerToClientEvents[E]>): void;
}

export function createDelivery(io: SignalingServer): Delivery {
  return {
    toSocket(socketId, event, ...payload) {
      const local = io.sockets.sockets.get(socketId);
      if (local) local.emit(event, ...payload);
      else io.to(socketId).emit(event, ...payload);
    },
    toSockets(socketIds, event, ...payload) {
      io.to(socketIds).emit(event, ...payload);
    },
  };
}
