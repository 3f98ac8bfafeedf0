// The registry of one process. Every operation is O(1) in the number of
// unrelated connections: state is indexed by account, then channel, then
// peer, and each account's usage is kept up to date instead of recounted.
import { connectRefusal, fitsTotalBitrate, streamCost } from '../limits';
import { streamFields, ZERO_STREAM, type Peer, type Stream } from '../protocol';
import {
  channelSummary,
  type AccountUsage,
  type ChannelRegistry,
  type JoinRefusal,
  type JoinRequest,
  type JoinResult,
  type LeftPeers,
  type RegistrySnapshot,
  type UsageSnapshot,
} from './registry';
import { systemClock, type Clock } from '../clock';

interface PublishedStream extends Stream {
  publisher: string;
  time: number;
}

interface ChannelState {
  peers: Map<string, Peer>;
  stream?: PublishedStream | undefined;
}

interface AccountState {
  usage: AccountUsage;
  channels: Map<string, ChannelState>;
}

const emptyUsage = (): AccountUsage => ({
  connections: 0,
  bitrate: 0,
  audioBitrate: 0,
  players: 0,
  broadcasters: 0,
  issues: Object.create(null) as Record<string, number>,
  refused: { connect: 0, publish: 0, subscribe: 0, message: 0 },
});

const countPeer = (usage: AccountUsage, peer: Peer, delta: number) => {
  if (peer.type === 'broadcaster') usage.broadcasters += delta;
  else usage.players += delta;
};

export interface MemoryRegistryOptions {
  clock?: Pick<Clock, 'now'>;
  /** PUBLIC_URL: what `route` answers, for this process holds every channel. */
  publicUrl?: string | undefined;
}

export function createMemoryRegistry({ clock = systemClock, publicUrl }: MemoryRegistryOptions = {}): ChannelRegistry {
  const accounts = new Map<string, AccountState>();

  const accountState = (name: string): AccountState => {
    let state = accounts.get(name);
    if (!state) accounts.set(name, (state = { usage: emptyUsage(), channels: new Map() }));
    return state;
  };

  // An account that has nothing left to show is forgotten, so state stays
  // bounded by what is live (refusal counters are kept: they are the stats).
  const forgetIfIdle = (name: string, state: AccountState) => {
    const u = state.usage;
    if (
      state.channels.size === 0 &&
      u.connections === 0 &&
      u.refused.connect + u.refused.publish + u.refused.subscribe + u.refused.message === 0
    )
      accounts.delete(name);
  };

  const addStreamUsage = (usage: AccountUsage, stream: Stream | undefined, peers: number) => {
    if (!stream) return;
    usage.bitrate += stream.bitrate * peers;
    usage.audioBitrate += stream.audioBitrate * peers;
  };

  function join(req: JoinRequest): JoinResult {
    const left = req.leaving ? leave(req.account, req.leaving.channel, req.leaving.peerID, req.socketId) : undefined;
    const state = accountState(req.account);
    const channel = state.channels.get(req.channel);
    const existing = channel?.peers.get(req.peerID);
    if (existing && existing.socketId !== req.socketId) return refused(req, state, 'uniqueness', left);
    const bounded = (refusal: 'channels' | 'peers'): JoinResult => refused(req, state, refusal, left);
    if (!channel && req.maxChannels && state.channels.size >= req.maxChannels) return bounded('channels');
    if (!existing && req.maxPeers && state.usage.players + state.usage.broadcasters >= req.maxPeers) return bounded('peers');

    const before = channel?.peers.size ?? 0;
    const after = existing ? before : before + 1;
    const oldStream = channel?.stream;
    let newStream: PublishedStream | undefined = oldStream;
    if (req.role === 'broadcaster') {
      newStream = { ...streamFields(req.stream ?? ZERO_STREAM), publisher: req.peerID, time: clock.now() };
    } else if (oldStream?.publisher === req.peerID) newStream = undefined;

    const used = state.usage.bitrate + state.usage.audioBitrate;
    if (!fitsTotalBitrate(req.plan, used, after * streamCost(newStream) - before * streamCost(oldStream)))
      return refused(req, state, 'totalBitrate', left);

    const target = channel ?? { peers: new Map<string, Peer>() };
    if (!channel) state.channels.set(req.channel, target);
    if (existing) countPeer(state.usage, existing, -1);
    const peer: Peer = { socketId: req.socketId, peerID: req.peerID, type: req.role, account: req.account };
    target.peers.set(req.peerID, peer);
    countPeer(state.usage, peer, 1);
    addStreamUsage(state.usage, oldStream, -before);
    addStreamUsage(state.usage, newStream, after);
    target.stream = newStream;

    // One object shape for every result: this runs for every publish and subscribe.
    return {
      ok: true,
      peers: req.role === 'broadcaster' ? [...target.peers.values()] : [],
      publisher: req.role === 'player' && newStream ? target.peers.get(newStream.publisher) : undefined,
      isNew: !existing,
      left,
    };
  }

  function refused(req: JoinRequest, state: AccountState, refusal: JoinRefusal, left: LeftPeers | undefined): JoinResult {
    forgetIfIdle(req.account, state);
    return { ok: false, refusal, left };
  }

  function leave(account: string, channelName: string, peerID: string, socketId: string): Peer[] | null {
    const state = accounts.get(account);
    const channel = state?.channels.get(channelName);
    const peer = channel?.peers.get(peerID);
    if (!state || !channel || !peer || peer.socketId !== socketId) return null;
    const before = channel.peers.size;
    channel.peers.delete(peerID);
    countPeer(state.usage, peer, -1);
    addStreamUsage(state.usage, channel.stream, -before);
    if (channel.stream?.publisher === peerID) channel.stream = undefined;
    addStreamUsage(state.usage, channel.stream, before - 1);
    if (channel.peers.size === 0) state.channels.delete(channelName);
    forgetIfIdle(account, state);
    return [...channel.peers.values()];
  }

  const copyUsage = (usage: AccountUsage): AccountUsage => ({ ...usage, issues: { ...usage.issues }, refused: { ...usage.refused } });

  function snapshot(): RegistrySnapshot {
    const result: RegistrySnapshot = { connections: [], channels: [], stats: [] };
    for (const [account, state] of accounts) {
      result.stats.push([account, copyUsage(state.usage)]);
      for (const [name, channel] of state.channels) {
        result.connections.push([name, Object.fromEntries([...channel.peers].map(([id, p]) => [id, { ...p }]))]);
        if (channel.stream) result.channels.push([name, channelSummary(channel.stream, channel.peers.size, account)]);
      }
    }
    return result;
  }

  return {
    async connect(account, plan) {
      const state = accountState(account);
      const refusal = connectRefusal(plan, state.usage.connections, state.usage.bitrate + state.usage.audioBitrate);
      if (refusal) forgetIfIdle(account, state);
      else state.usage.connections++;
      return refusal;
    },
    async disconnect(account) {
      const state = accounts.get(account);
      if (!state) return;
      state.usage.connections = Math.max(0, state.usage.connections - 1);
      forgetIfIdle(account, state);
    },
    join: async (req) => join(req),
    leave: async (account, channel, peerID, socketId) => leave(account, channel, peerID, socketId),
    findPeer: (account, channel, peerID) => accounts.get(account)?.channels.get(channel)?.peers.get(peerID),
    peers: async (account, channel) => [...(accounts.get(account)?.channels.get(channel)?.peers.values() ?? [])],
    route: async (account, channel) => ({
      url: publicUrl ?? null,
      instance: null,
      holder: accounts.get(account)?.channels.has(channel) ?? false,
    }),
    async countRefusal(account, action, issues) {
      const usage = accountState(account).usage;
      usage.refused[action]++;
      for (const issue of issues) usage.issues[issue] = (usage.issues[issue] ?? 0) + 1;
    },
    snapshot: async () => snapshot(),
    usage: async (): Promise<UsageSnapshot> =>
      [...accounts].map(([account, state]) => [account, copyUsage(state.usage), state.channels.size]),
    // One process: a peer goes only with its own socket, so no peer is ever gone behind its back.
    onPeersGone: () => () => undefined,
    close: async () => accounts.clear(),
  };
}
