// Channel and peer state, and each account's usage, behind one interface: the
// in-memory registry serves one process, a shared one can serve several.
// Every decision that depends on shared state (uniqueness, totalBitrate,
// connections) is made inside the registry, atomically with its update.
import type { ConnectRefusal, Plan } from '../limits';
import { streamFields, type Peer, type PeerRole, type Stream } from '../protocol';

export interface JoinRequest {
  account: string;
  channel: string;
  peerID: string;
  socketId: string;
  role: PeerRole;
  /** The stream a broadcaster publishes; players leave it out. */
  stream?: Stream | undefined;
  plan: Pick<Plan, 'totalBitrate'>;
  /** Abuse bounds per account: channels it may hold, peers it may register (0 or unset: none). */
  maxChannels?: number;
  maxPeers?: number;
  /**
   * The socket's registration it leaves first, in the same step (as `leave`
   * would, even when the join is refused): a socket moving between channels.
   */
  leaving?: { channel: string; peerID: string } | undefined;
}

export type JoinResult =
  | {
      ok: true;
      /** Everyone registered in the channel after the join, the joiner included. */
      peers: Peer[];
      /** The channel's broadcaster, when a player joined a published channel (located: for the server, never sent to a client). */
      publisher?: LocatedPeer | undefined;
      /** False when the same socket re-registered under the same name. */
      isNew: boolean;
      left?: LeftPeers;
    }
  | { ok: false; refusal: JoinRefusal; left?: LeftPeers };

/**
 * With `leaving`: the peers left in the channel it left, or null when the
 * socket was not registered there (located: for the server, never sent to a
 * client).
 */
export type LeftPeers = LocatedPeer[] | null;

export type JoinRefusal = 'uniqueness' | 'totalBitrate' | 'channels' | 'peers';

export interface ChannelSummary extends Stream {
  publisher: string;
  time: number;
  peers: number;
  account: string;
}

/** A published channel as `/channels` shows it: the stream, then who and how many. */
export function channelSummary(stream: Stream & { publisher: string; time: number }, peers: number, account: string): ChannelSummary {
  return { ...streamFields(stream), publisher: stream.publisher, time: stream.time, peers, account };
}

export interface AccountUsage {
  connections: number;
  bitrate: number;
  audioBitrate: number;
  players: number;
  broadcasters: number;
  /** Refusals by limit name (`width`, `totalBitrate`, `connections`, ...). */
  issues: Record<string, number>;
  /** Refusals by what was refused (`message`: relayed events over the rate limit). */
  refused: { connect: number; publish: number; subscribe: number; message: number };
}

export type RefusedAction = keyof AccountUsage['refused'];

/**
 * A peer found for a message, with the instance that holds its socket where
 * the registry is shared (never sent to clients: peers lists carry `Peer`).
 */
export interface LocatedPeer extends Peer {
  instance?: string | undefined;
}

/** A peer removed for a socket that is gone: the channel's remaining sockets must hear it leave. */
export interface PeerGone {
  channel: string;
  peerID: string;
  /** The channel's remaining sockets that must hear it. */
  socketIds: string[];
}

/**
 * Where a channel's peers should connect (`GET /route`): the address of the
 * instance that holds its broadcaster, else most of its peers, so that its
 * signaling never crosses instances. `holder` is false when no instance with
 * a known address holds it: then this instance answers with its own.
 */
export interface ChannelRoute {
  url: string | null;
  instance: string | null;
  holder: boolean;
}

/** What the REST API shows, each list in the original's `Object.entries` shape. */
export interface RegistrySnapshot {
  connections: [string, Record<string, Peer>][];
  channels: [string, ChannelSummary][];
  stats: [string, AccountUsage][];
}

/**
 * Each account's usage and how many channels it has peers in: what the
 * periodic readers (metrics, the admin console, limit webhooks) need,
 * without reading every channel's peers as a snapshot does.
 */
export type UsageSnapshot = [account: string, usage: AccountUsage, channels: number][];

/**
 * A registry call that could not be answered: the shared store (Redis) is
 * unreachable or slow, or the registry is closed. An outage, not a bug:
 * signaling answers the client `ERROR: Server unavailable` and logs it as
 * such. Every other error a registry call throws is taken for a bug.
 */
export class RegistryUnavailableError extends Error {
  override name = 'RegistryUnavailableError';
}

/** Implementations throw RegistryUnavailableError when they cannot answer (see above). */
export interface ChannelRegistry {
  /** Counts one more live socket of the account, unless a plan limit refuses it. */
  connect(account: string, plan: Pick<Plan, 'connections' | 'totalBitrate'>): Promise<ConnectRefusal | null>;
  disconnect(account: string): Promise<void>;
  join(request: JoinRequest): Promise<JoinResult>;
  /** Removes a registration made by `socketId`; returns the peers left in the channel. */
  leave(account: string, channel: string, peerID: string, socketId: string): Promise<LeftPeers>;
  /** At once where the answer is on this instance (the hot path of every relayed message), else by a promise. */
  findPeer(account: string, channel: string, peerID: string): LocatedPeer | undefined | Promise<LocatedPeer | undefined>;
  peers(account: string, channel: string): Promise<Peer[]>;
  route(account: string, channel: string): Promise<ChannelRoute>;
  countRefusal(account: string, action: RefusedAction, issues: readonly string[]): Promise<void>;
  snapshot(): Promise<RegistrySnapshot>;
  usage(): Promise<UsageSnapshot>;
  /**
   * Receives the peers removed because the instance that held their sockets
   * died or lost them (a shared registry only; one process never fires it).
   * Returns a function that stops the listening.
   */
  onPeersGone(listener: (gone: PeerGone[]) => void): () => void;
  close(): Promise<void>;
}
