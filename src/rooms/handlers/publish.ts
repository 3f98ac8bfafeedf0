// `roomPublish {room, stream, parameters}`: a participant publishes a stream
// (a channel where it is the broadcaster) under its own name; everyone else
// in the room becomes a player of it. Checked like `publish`: rights, then
// the plan, then the registry.
import type { Logger } from 'pino';
import { publishRefusal } from '../../auth/rights';
import type { ChannelRegistry } from '../../channels/registry';
import type { Clock } from '../../clock';
import type { PeerConfig } from '../../ice';
import { streamIssues } from '../../limits';
import type { Telemetry } from '../../metrics';
import { unfitMessage, type EventSchemas } from '../../protocol';
import type { CountRefusal } from '../../signaling/handlers/join';
import type { SignalingSocket } from '../../signaling/session';
import { jsonBytes, MAX_PARAMETERS_BYTES, MAX_STREAMS_PER_PARTICIPANT } from '../limits';
import { bindings, RoomError, type RoomReplies } from '../replies';
import { joinRefusalText, type Seats } from '../seats';
import type { RoomStore, RoomStream } from '../store';

export interface RoomPublishDeps {
  store: Pick<RoomStore, 'addStream'>;
  registry: Pick<ChannelRegistry, 'peers' | 'join'>;
  seats: Pick<Seats, 'release' | 'announceStream'>;
  replies: RoomReplies;
  schemas: Pick<EventSchemas, 'publish'>;
  countRefusal: CountRefusal;
  telemetry: Pick<Telemetry, 'refused'>;
  peerConfig: (account: string) => PeerConfig;
  accountMaxChannels: number;
  accountMaxPeers: number;
  clock: Pick<Clock, 'now'>;
  log: Logger;
}

export const roomPublishHandler = (deps: RoomPublishDeps) => {
  const { store, registry, seats, replies, schemas, countRefusal, telemetry } = deps;
  const { refuse } = replies;

  return async function roomPublish(socket: SignalingSocket, room: string, streamId: string, parameters: Record<string, unknown>) {
    const identity = replies.signedIn(socket, room);
    if (!identity) return;
    const seat = socket.data.rooms?.get(room);
    if (!seat) return refuse(socket, room, RoomError.notParticipant, 'notParticipant');
    if (parameters.type !== 'webrtc') return refuse(socket, room, RoomError.streamType(parameters.type), 'streamType');
    if (jsonBytes(parameters) > MAX_PARAMETERS_BYTES) return refuse(socket, room, RoomError.parameters, 'parameters');
    const parsed = schemas.publish.safeParse([identity.user, streamId, parameters]);
    if (!parsed.success) return refuse(socket, room, RoomError.parameters, 'parameters');
    const stream = parsed.data[2] ?? undefined;
    const { account } = socket.data;
    const channel = streamId;
    const publishError = (message: string, issues: readonly string[]) => {
      socket.emit('publishError', { from: '_server_', to: identity.user, message });
      refuse(socket, room, message, issues.join(','));
    };
    const denied = publishRefusal({ identity, restrictPublish: account.restrictPublish, peerID: identity.user, channel });
    if (denied) {
      await countRefusal(socket, account.name, 'publish', [denied.issue]);
      telemetry.refused('rights');
      return publishError(denied.message, [denied.issue]);
    }
    const issues = stream ? streamIssues(account.plan, stream) : [];
    if (issues.length) {
      await countRefusal(socket, account.name, 'publish', issues);
      for (const issue of issues) telemetry.refused(issue);
      return publishError(unfitMessage(issues), issues);
    }
    // A channel is one stream: a room never takes over another user's.
    if (seat.published.has(channel)) return refuse(socket, room, RoomError.streamExists(streamId), 'streamExists');
    const present = await registry.peers(account.name, channel);
    if (present.some((p) => p.type === 'broadcaster' && p.peerID !== identity.user))
      return refuse(socket, room, RoomError.streamExists(streamId), 'streamExists');
    const result = await registry.join({
      account: account.name,
      channel,
      peerID: identity.user,
      socketId: socket.id,
      role: 'broadcaster',
      stream,
      plan: account.plan,
      maxChannels: deps.accountMaxChannels,
      maxPeers: deps.accountMaxPeers,
    });
    if (!result.ok) {
      if (result.refusal !== 'uniqueness') await countRefusal(socket, account.name, 'publish', [result.refusal]);
      telemetry.refused(result.refusal);
      return publishError(joinRefusalText(result.refusal, identity.user, channel), [result.refusal]);
    }
    const info: RoomStream = {
      ...parameters,
      type: 'webrtc',
      streamId,
      socketId: socket.id,
      user: identity.user,
      channel,
      publishedAt: deps.clock.now(),
    };
    const added = await store.addStream(account.name, room, info, MAX_STREAMS_PER_PARTICIPANT);
    if (added !== 'ok' || socket.data.rooms?.get(room) !== seat) {
      await seats.release(socket, channel);
      if (added === 'exists') return refuse(socket, room, RoomError.streamExists(streamId), 'streamExists');
      if (added === 'tooMany') return refuse(socket, room, RoomError.streamsPerParticipant, 'streamsPerParticipant');
      return refuse(socket, room, RoomError.notParticipant, 'notParticipant');
    }
    seat.published.add(channel);
    socket.emit('message', {
      type: 'peers',
      from: '_channel_',
      target: identity.user,
      peers: result.peers,
      peerConfig: deps.peerConfig(account.name),
    });
    seats.announceStream(account.name, room, info);
    deps.log.debug({ ...bindings(socket), room, stream: streamId }, 'published in room');
  };
};
