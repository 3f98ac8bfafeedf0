// What the server keeps per socket, and the per-socket queue that keeps one
// socket's events in order while the registry answers.
import type { Server, Socket } from 'socket.io';
import type { Account } from '../accounts/account';
import type { ClientToServerEvents, PeerRole, ServerToClientEvents } from '../protocol';
import type { EventBucket } from './rate-limits';

export interface Registration {
  channel: string;
  peerID: string;
  role: PeerRole;
}

export interface SocketData {
  account: Account;
  /** Events this socket may still send now (see rate-limits.ts). */
  bucket: EventBucket;
  /** When the socket was last told it is over the rate limit. */
  rateNoticeAt: number;
  registration?: Registration | undefined;
  /** Events accepted but not yet handled. */
  pending: number;
  queue?: Promise<void>;
  release: () => void;
}

export type SignalingServer = Server<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;
export type SignalingSocket = Socket<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;

/** Events one socket may have waiting; more are dropped, so a flood cannot hold memory. */
export const MAX_PENDING_EVENTS = 32;

/** Runs `task` after the socket's earlier events; false when the queue is full (unless `always`). */
export function enqueue(
  socket: SignalingSocket,
  task: () => Promise<void>,
  onError: (err: unknown) => void,
  always = false,
): boolean {
  const data = socket.data;
  if (data.pending >= MAX_PENDING_EVENTS && !always) return false;
  // An idle socket keeps no promise: the queue is dropped once it runs dry.
  const settle = () => {
    if (--data.pending === 0) data.queue = undefined;
  };
  const run = () =>
    task().then(settle, (err: unknown) => {
      settle();
      onError(err);
    });
  data.queue = data.pending++ > 0 && data.queue ? data.queue.then(run) : run();
  return true;
}
