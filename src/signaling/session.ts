// What the server keeps per socket (its queue is in queue.ts).
import type { Server, Socket } from 'socket.io';
import type { Account } from '../accounts/account';
import type { Identity } from '../auth/rights';
import type { ClientToServerEvents, InterServerEvents, PeerRole, ServerToClientEvents } from '../protocol';
import type { EventBucket } from './rate-limits';

export interface Registration {
  channel: string;
  peerID: string;
  role: PeerRole;
}

// Kept flat, with no closure or object per socket: thousands of idle sockets
// each hold one of these for as long as they stay connected.
/** The socket's own event bucket (see rate-limits.ts), and what else the server keeps for it. */
export interface SocketData extends EventBucket {
  account: Account;
  /** The signed-in user (user/PIN or signed token); undefined for an account token. */
  identity: Identity | undefined;
  /** When the socket was last told it is over the rate limit. */
  rateNoticeAt: number;
  /** When a refused or dropped event of the socket was last logged, and how many were not since. */
  loggedAt: number;
  unlogged: number;
  registration?: Registration | undefined;
  /** Events accepted but not yet handled. */
  pending: number;
  queue?: Promise<void> | undefined;
  /** Whether the account's connection count has been given back. */
  released: boolean;
  /** The rooms the socket is in, by name; absent until it joins one. */
  rooms?: Map<string, RoomSeat> | undefined;
  /** Chat messages the socket may still send (a bucket like the event one). */
  chat?: EventBucket | undefined;
}

/**
 * A socket's place in one room: the channels it registered there under its
 * user, besides (and apart from) `registration`.
 */
export interface RoomSeat {
  /** Stream names it published; each is a channel where it is the broadcaster. */
  published: Set<string>;
  /** Other participants' channels where it is a player: channel -> its publisher. */
  subscribed: Map<string, string>;
}

/** Every channel the socket's room seats hold, once each. */
export function roomChannels(data: Pick<SocketData, 'rooms'>): Set<string> {
  const channels = new Set<string>();
  if (data.rooms)
    for (const seat of data.rooms.values()) {
      for (const c of seat.published) channels.add(c);
      for (const c of seat.subscribed.keys()) channels.add(c);
    }
  return channels;
}

/**
 * The room channels where `peerID` is most likely found (its own streams,
 * and the socket's, where it would be a player), then the rest: a messagePeer
 * asks the first group alone, and the rest only if that fails.
 */
export function roomChannelsToward(data: Pick<SocketData, 'rooms'>, peerID: string): [likely: string[], rest: string[]] {
  const likely = new Set<string>();
  if (data.rooms)
    for (const seat of data.rooms.values()) {
      for (const c of seat.published) likely.add(c);
      for (const [c, publisher] of seat.subscribed) if (publisher === peerID) likely.add(c);
    }
  return [[...likely], [...roomChannels(data)].filter((c) => !likely.has(c))];
}

export type SignalingServer = Server<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;
export type SignalingSocket = Socket<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;
