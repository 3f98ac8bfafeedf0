// `message { ... }`: relayed to every other peer of the sender's channel,
// with `from` stamped by the server.
import type { ChannelRegistry } from '../../channels/registry';
import type { Telemetry } from '../../metrics';
import type { EventSchemas } from '../../protocol';
import type { Delivery } from '../delivery';
import { bindings, describe, type Replies } from '../replies';
import { relayRefusal } from './relay';
import type { Handler } from './types';

export interface MessageDeps {
  schemas: Pick<EventSchemas, 'message'>;
  registry: Pick<ChannelRegistry, 'peers'>;
  replies: Pick<Replies, 'refuse' | 'dropped'>;
  delivery: Pick<Delivery, 'toSockets'>;
  telemetry: Pick<Telemetry, 'refused' | 'relayed'>;
  enforceSdp: boolean;
}

export const messageHandler =
  ({ schemas, registry, replies, delivery, telemetry, enforceSdp }: MessageDeps): Handler =>
  async (socket, args) => {
    const registration = socket.data.registration;
    if (!registration) return replies.dropped(socket, () => bindings(socket), 'message dropped: sender is in no channel');
    const parsed = schemas.message.safeParse(args);
    if (!parsed.success) {
      telemetry.refused('validation');
      return replies.dropped(socket, () => ({ ...bindings(socket), why: describe(parsed.error) }), 'message dropped: invalid');
    }
    // The parsed object is a copy: it may be stamped and rewritten.
    const relayed = parsed.data[0];
    const refusal = relayRefusal(socket.data.account, relayed, enforceSdp);
    if (refusal) return replies.refuse(socket, 'messageError', registration.peerID, refusal.message, refusal.reason);
    relayed.from = registration.peerID;
    const peers = await registry.peers(socket.data.account.name, registration.channel);
    const others = peers.filter((p) => p.socketId !== socket.id).map((p) => p.socketId);
    if (others.length) delivery.toSockets(others, 'message', relayed);
    telemetry.relayed('broadcast');
  };
