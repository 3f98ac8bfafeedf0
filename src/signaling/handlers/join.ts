// Registering a socket in a channel, for `publish` and `subscribe`: a socket
// holds one registration, so a new one replaces the old; a refusal is
// answered on the action's error event (or `uniquenessError`).
import type { ChannelRegistry, JoinRefusal, JoinRequest } from '../../channels/registry';
import { unfitMessage, uniquenessMessage } from '../../protocol';
import type { SignalingReport } from '../../server-events';
import type { Departures } from '../departures';
import type { RecordFailure } from '../failures';
import { bindings, type PeerSocket, type Replies } from '../replies';

export interface JoinDeps {
  registry: Pick<ChannelRegistry, 'join'>;
  departures: Pick<Departures, 'detach' | 'announceLeft'>;
  replies: Pick<Replies, 'refuse'>;
  countRefusal: CountRefusal;
  accountMaxChannels: number;
  accountMaxPeers: number;
  report?: Pick<SignalingReport, 'joined'> | undefined;
}

/** Counts a refusal in its account's stats; never rejects. */
export type CountRefusal = (socket: PeerSocket, ...args: Parameters<ChannelRegistry['countRefusal']>) => Promise<void>;

/**
 * Counting a refusal is bookkeeping: a registry that cannot count it (Redis
 * away) is recorded, and the client still gets the refusal it caused.
 */
export function createRefusalCounter({
  registry,
  recordFailure,
}: {
  registry: Pick<ChannelRegistry, 'countRefusal'>;
  recordFailure: RecordFailure;
}): CountRefusal {
  return (socket, ...refusal) =>
    registry.countRefusal(...refusal).catch((err: unknown) => void recordFailure('counting a refusal', bindings(socket), err));
}

export type Joining = ReturnType<typeof createJoining>;

export function createJoining({ registry, departures, replies, countRefusal, accountMaxChannels, accountMaxPeers, report }: JoinDeps) {
  return {
    /** Registers the socket; a registry that cannot answer throws (the event is answered as failed). */
    async join(socket: PeerSocket, request: Omit<JoinRequest, 'account' | 'socketId' | 'plan'>) {
      const { account } = socket.data;
      const current = socket.data.registration;
      // A socket holds one registration: the one it had is left in the same registry call.
      const leaving =
        current && (current.channel !== request.channel || current.peerID !== request.peerID) ? departures.detach(socket) : undefined;
      // Fields written out, one shape for every request: this is a hot path.
      const result = await registry.join({
        channel: request.channel,
        peerID: request.peerID,
        role: request.role,
        stream: request.stream,
        account: account.name,
        socketId: socket.id,
        plan: account.plan,
        maxChannels: accountMaxChannels,
        maxPeers: accountMaxPeers,
        leaving: leaving && { channel: leaving.channel, peerID: leaving.peerID },
      });
      if (leaving) departures.announceLeft(socket, leaving, result.left ?? null);
      if (result.ok) socket.data.registration = { channel: request.channel, peerID: request.peerID, role: request.role };
      if (result.ok && result.isNew) report?.joined(account.name, request);
      return result;
    },

    /** Answers a join the registry refused. */
    async refuseJoin(socket: PeerSocket, action: 'publish' | 'subscribe', peerID: string, channel: string, refusal: JoinRefusal) {
      if (refusal === 'uniqueness')
        return replies.refuse(socket, 'uniquenessError', peerID, uniquenessMessage(peerID, channel), 'uniqueness');
      await countRefusal(socket, socket.data.account.name, action, [refusal]);
      replies.refuse(socket, action === 'publish' ? 'publishError' : 'subscribeError', peerID, unfitMessage([refusal]), refusal);
    },
  };
}
