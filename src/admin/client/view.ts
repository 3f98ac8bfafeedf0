// What the /admin namespace sends, shared by the server and the page (types only).

export interface AccountRowView {
  /** The id to act on; absent for accounts the API cannot change (the static token). */
  id: number | null;
  name: string;
  suspended: boolean;
  planId: number | null;
  planName: string | null;
  connections: number;
  /** 0: no limit. */
  maxConnections: number;
  bitrate: number;
  maxBitrate: number;
  refused: number;
}

export interface PeerView {
  peerID: string;
  type: string;
  socketId: string;
}

export interface ChannelView {
  account: string;
  channel: string;
  stream: { width: number; height: number; bitrate: number; frameRate: number; audioBitrate: number; publisher: string } | null;
  peers: PeerView[];
}

export interface InstanceView {
  id: string;
  /** This instance. */
  self: boolean;
  /** ms since its last heartbeat, when known. */
  heartbeatAgeMs: number | null;
}

export interface LiveView {
  time: number;
  totals: { connections: number; channels: number; peers: number };
  accounts: AccountRowView[];
  channels: ChannelView[];
  /** Channels left out of `channels` (only the first ones are sent). */
  moreChannels: number;
  refusals: Record<string, number>;
  instances: InstanceView[];
  plans: { id: number; name: string }[];
  webhooks: { queued: number; delivered: number; expired: number; dropped: number };
  /** Whether accounts can be changed (MySQL or an accounts file). */
  manageable: boolean;
}

/** One point of the last hour's charts. */
export interface Sample {
  time: number;
  connections: number;
  channels: number;
  handshakesPerSecond: number;
  refusalsPerSecond: number;
  /** Per account: [connections, channels, handshakes per second, refusals per second]. */
  accounts: Record<string, [number, number, number, number]>;
}

export type AdminAction =
  | { action: 'suspend'; id: number; suspended: boolean }
  | { action: 'plan'; id: number; planId: number | null }
  | { action: 'rotate'; id: number }
  | { action: 'disconnect'; socketId: string };

export type ActionResult = { ok: true; token?: string } | { ok: false; error: string };
