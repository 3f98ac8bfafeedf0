// Peers leaving their channel: on `publish`/`subscribe` elsewhere, on
// disconnect, at shutdown. Disconnects are handled in batches on the next
// turn of the event loop: when thousands of sockets drop at once (a network
// cut), each batch is bounded, timers and HTTP requests run between batches,
// and peers that left together are not sent each other's close messages.
import type { ChannelRegistry, LeftPeers } from '../channels/registry';
import { closeMessage } from '../protocol';
import type { SignalingReport } from '../server-events';
import type { Delivery, SocketAddress } from './delivery';
import type { RecordFailure } from './failures';
import { enqueue } from './queue';
import { bindings, type PeerSocket, type Replies } from './replies';
import { roomChannels, type Registration, type SignalingSocket } from './session';

/** Disconnected sockets whose channels are left in one go. */
const LEAVE_BATCH = 256;

export interface DeparturesDeps {
  registry: Pick<ChannelRegistry, 'leave'>;
  delivery: Delivery;
  replies: Pick<Replies, 'debug'>;
  recordFailure: RecordFailure;
  /** Gives the socket's connection back to its account's count. */
  releaseConnection: (socket: SignalingSocket) => void;
  report?: Pick<SignalingReport, 'left'> | undefined;
}

export interface Departures {
  /** Takes the socket out of its channel (not out of its rooms); the channel hears it leave. */
  leaveChannel(socket: PeerSocket): Promise<void>;
  /**
   * Lets go of the socket's registration; returns it when the registry must
   * remove it (a room's registration stays until the room lets it go).
   */
  detach(socket: PeerSocket): Registration | undefined;
  /** Tells the channel a registration left that the socket left, with the peers that remain there. */
  announceLeft(socket: PeerSocket, registration: Registration, remaining: LeftPeers): void;
  /** Tells a channel's remaining peers that `peerID` left; peers that disconnected in the same burst need no telling. */
  announceLeave(peerID: string, channel: string, socketIds: string[]): void;
  /** The shared `disconnect` listener (`this` is the socket). */
  onDisconnect(this: SignalingSocket, reason: string): void;
}

export function createDepartures({ registry, delivery, replies, recordFailure, releaseConnection, report }: DeparturesDeps): Departures {
  const departing = new Set<string>();
  const leaving: { socket: SignalingSocket; done: () => void }[] = [];
  let flushScheduled = false;

  /** Each socket straight to its instance where the registry said which (delivery.ts), so it follows the messages sent before it. */
  function announceTo(peerID: string, channel: string, peers: SocketAddress[]) {
    const notify = peers.filter((peer) => !departing.has(peer.socketId));
    if (notify.length) delivery.toPeers(notify, 'message', closeMessage(peerID, channel));
  }

  function announceLeave(peerID: string, channel: string, socketIds: string[]) {
    announceTo(
      peerID,
      channel,
      socketIds.map((socketId) => ({ socketId })),
    );
  }

  function detach(socket: PeerSocket): Registration | undefined {
    const registration = socket.data.registration;
    if (!registration) return undefined;
    socket.data.registration = undefined;
    // A room holds the same registration: it stays until the room lets it go.
    if (socket.data.rooms && roomChannels(socket.data).has(registration.channel)) return undefined;
    return registration;
  }

  function announceLeft(socket: PeerSocket, registration: Registration, remaining: LeftPeers) {
    const { channel, peerID } = registration;
    if (remaining) announceTo(peerID, channel, remaining);
    if (remaining) report?.left(socket, registration, remaining.length);
    replies.debug(() => ({ ...bindings(socket), peer: peerID, channel, remaining: remaining?.length ?? 0 }), 'peer left');
  }

  async function leaveChannel(socket: PeerSocket) {
    const registration = detach(socket);
    if (!registration) return;
    const { channel, peerID } = registration;
    announceLeft(socket, registration, await registry.leave(socket.data.account.name, channel, peerID, socket.id));
  }

  const failedDisconnect = (socket: PeerSocket, err: unknown) => void recordFailure('disconnect', bindings(socket), err);

  const scheduleFlush = () => {
    if (flushScheduled || leaving.length === 0) return;
    flushScheduled = true;
    setImmediate(flushLeaves);
  };

  async function flushLeaves() {
    flushScheduled = false;
    const batch = leaving.splice(0, LEAVE_BATCH);
    await Promise.all(batch.map(({ socket }) => leaveChannel(socket).catch((err: unknown) => failedDisconnect(socket, err))));
    for (const { socket, done } of batch) {
      departing.delete(socket.id);
      done();
    }
    scheduleFlush();
  }

  const leaveSoon = (socket: SignalingSocket) =>
    new Promise<void>((done) => {
      leaving.push({ socket, done });
      scheduleFlush();
    });

  function onDisconnect(this: SignalingSocket, reason: string) {
    releaseConnection(this);
    departing.add(this.id);
    // Queued behind the socket's pending events, and never dropped.
    enqueue(this, leaveSoon, undefined, failedDisconnect);
    replies.debug(() => ({ ...bindings(this), reason }), 'disconnected');
  }

  return { leaveChannel, detach, announceLeft, announceLeave, onDisconnect };
}
