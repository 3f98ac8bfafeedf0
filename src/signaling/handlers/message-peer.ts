// `messagePeer { target, type, ... }`: relayed to the peer `target` of a
// channel the sender is in (its registration's, or one its rooms hold), with
// `from` stamped by the server. The hot path: offers, answers, candidates.
import type { ChannelRegistry, LocatedPeer } from '../../channels/registry';
import type { Telemetry } from '../../metrics';
import type { EventSchemas, PeerMessage } from '../../protocol';
import type { Delivery } from '../delivery';
import type { VerbatimRelay } from '../verbatim';
import { bindings, describe, type PeerSocket, type Replies } from '../replies';
import { roomChannelsToward } from '../session';
import { relayRefusal } from './relay';
import type { Handler } from './types';

export interface MessagePeerDeps {
  schemas: Pick<EventSchemas, 'peerMessage' | 'messagePeer'>;
  registry: Pick<ChannelRegistry, 'findPeer'>;
  replies: Pick<Replies, 'refuse' | 'dropped'>;
  delivery: Pick<Delivery, 'toPeer'>;
  telemetry: Pick<Telemetry, 'refused' | 'relayed'>;
  /** ENFORCE_SDP: relayed offers and answers get the plan's limits written in. */
  enforceSdp: boolean;
  verbatim: Pick<VerbatimRelay, 'sendAsReceived'>;
}

export const messagePeerHandler = ({ schemas, registry, replies, delivery, telemetry, enforceSdp, verbatim }: MessagePeerDeps): Handler => {
  const ownChannelPeer = (target: LocatedPeer | undefined, from: string) => target && { target, from };

  /**
   * For a sender in rooms: the peer `peerID` in a channel the sender shares
   * with it, and the sender's own name there: its registration's channel
   * first, then the channels its rooms hold (those likely to hold the target
   * first, each group asked at once).
   */
  async function findTarget(socket: PeerSocket, peerID: string) {
    const { registration, account, identity } = socket.data;
    if (registration) {
      const target = await registry.findPeer(account.name, registration.channel, peerID);
      if (target) return { target, from: registration.peerID };
    }
    if (!identity || !socket.data.rooms) return undefined;
    for (const channels of roomChannelsToward(socket.data, peerID)) {
      const found = await Promise.all(channels.map((channel) => registry.findPeer(account.name, channel, peerID)));
      const target = found.find((peer) => peer !== undefined && peer.socketId !== socket.id);
      if (target) return { target, from: identity.user };
    }
    return undefined;
  }

  /**
   * Sends the message on to the peer found, or tells the sender there is
   * none. `unchanged` when no check rewrote it (ENFORCE_SDP may).
   */
  function relayTo(socket: PeerSocket, message: PeerMessage, unchanged: boolean, found: { target: LocatedPeer; from: string } | undefined) {
    if (!found)
      return replies.dropped(
        socket,
        () => ({ ...bindings(socket), target: message.target }),
        'messagePeer dropped: no such peer in the channel',
      );
    // `from` is the sender's registered name, whatever the client wrote. The
    // object was decoded for this event alone, so it is stamped, not copied.
    // When the client wrote that name itself (the shipped client does), the
    // object is as it came, and goes on as the text it came in (verbatim.ts).
    const asReceived = unchanged && message.from === found.from;
    message.from = found.from;
    // To the instance that holds the target where the registry says which (delivery.ts).
    const send = () => delivery.toPeer(found.target, 'message', message);
    if (asReceived) verbatim.sendAsReceived(message, send);
    else send();
    telemetry.relayed(message.type);
  }

  return function messagePeer(socket, args) {
    const registration = socket.data.registration;
    if (!registration && !socket.data.rooms?.size)
      return replies.dropped(socket, () => bindings(socket), 'messagePeer dropped: sender is in no channel');
    const message = schemas.peerMessage(args);
    if (!message) {
      telemetry.refused('validation');
      return replies.dropped(
        socket,
        () => {
          const parsed = schemas.messagePeer.safeParse(args);
          return { ...bindings(socket), why: parsed.success ? 'invalid' : describe(parsed.error) };
        },
        'messagePeer dropped: invalid',
      );
    }
    const content = message.content;
    const refusal = relayRefusal(socket.data.account, message, enforceSdp);
    if (refusal)
      return replies.refuse(socket, 'messageError', registration?.peerID ?? socket.data.identity?.user, refusal.message, refusal.reason);
    const unchanged = message.content === content;
    if (!registration || socket.data.rooms)
      return findTarget(socket, message.target).then((found) => relayTo(socket, message, unchanged, found));
    // The common case, a peer in its registration's channel alone: one
    // lookup, answered at once when the target is on this instance, and then
    // relayed without a promise.
    const target = registry.findPeer(socket.data.account.name, registration.channel, message.target);
    if (target instanceof Promise)
      return target.then((peer) => relayTo(socket, message, unchanged, ownChannelPeer(peer, registration.peerID)));
    relayTo(socket, message, unchanged, ownChannelPeer(target, registration.peerID));
  };
};
