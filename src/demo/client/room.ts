// The demo page's room mode: join a room by name as a signed-in user, publish
// the camera into it, see everyone else's camera in a grid, and chat. It
// speaks the room events (docs/ROOMS.md) and, for the video, the same
// signaling as a channel: the server subscribes each participant to every
// other participant's stream, each stream's publisher offers, the player
// answers. Two participants have two connections (one each way), so every
// messagePeer carries `role`, the sender's side of the connection it is for.
import type { Socket } from 'socket.io-client';
import { capBitrate, explainCameraError, Link, openCamera, streamParams, type LinkStats, type Signal, type StreamParams } from './media.js';

type RoomSignal = Signal & { role?: 'broadcaster' | 'player' };

interface Participant {
  name: string;
  joinedAt: number;
}

interface ChatLine {
  text?: unknown;
  user: string;
  timestamp: number;
}

/** `roomUpdate` as the server sends it: one of these at a time, always with `room`. */
interface RoomUpdate {
  room: string;
  type?: 'roomJoin';
  participants?: Record<string, Participant>;
  messages?: ChatLine[];
  participantJoin?: Participant;
  participantLeft?: Participant;
  streamNew?: { streamId: string; user: string };
  streamRemove?: string;
  messageNew?: ChatLine;
  error?: string;
}

interface RoomServerEvents {
  message: (message: RoomSignal) => void;
  roomUpdate: (update: RoomUpdate) => void;
  unpublish: (peerID: string, channel: string) => void;
  publishError: (error: { message: string }) => void;
}

interface RoomClientEvents {
  roomJoin: (request: { room: string }) => void;
  roomPublish: (request: { room: string; stream: string; parameters: StreamParams & { type: 'webrtc' } }) => void;
  roomMessage: (request: { room: string; message: { text: string } }) => void;
  messagePeer: (message: RoomSignal & { target: string; type: string }) => void;
}

export interface RoomView {
  grid: HTMLElement;
  participants: HTMLUListElement;
  chat: HTMLOListElement;
  chatForm: HTMLFormElement;
  /** The page's status line and badge. */
  show(state: 'starting' | 'waiting' | 'live', text: string): void;
  showError(text: string | undefined): void;
  /** Ends the session with an error. */
  fail(text: string): void;
}

export type RoomLinkStats = LinkStats & { direction: 'in' | 'out' };

export class RoomSession {
  private socket: Socket<RoomServerEvents, RoomClientEvents> | undefined;
  private media: MediaStream | undefined;
  private params: StreamParams | undefined;
  private peerConfig: RTCConfiguration = {};
  private user = '';
  /** Keyed `out:<peer>` (my camera to them) and `in:<peer>` (theirs to me). */
  private readonly links = new Map<string, Link>();
  private readonly tiles = new Map<string, HTMLElement>();
  private readonly present = new Map<string, Participant>();
  private closed = false;
  private readonly sendChat = (event: SubmitEvent) => {
    event.preventDefault();
    const line = this.chatInput.value.trim();
    if (!line || !this.socket) return;
    this.socket.emit('roomMessage', { room: this.room, message: { text: line } });
    this.chatInput.value = '';
  };

  constructor(
    private readonly room: string,
    private readonly token: string,
    private readonly view: RoomView,
    private readonly connect: (token: string) => Socket<RoomServerEvents, RoomClientEvents>,
  ) {}

  private get chatInput() {
    return this.view.chatForm.elements.namedItem('line') as HTMLInputElement;
  }

  private get stream() {
    return `${this.user}@${this.room}`;
  }

  async start() {
    const { view, room } = this;
    view.show('starting', 'Asking for your camera…');
    try {
      this.media = await openCamera();
    } catch (err) {
      return view.fail(explainCameraError(err));
    }
    if (this.closed) return this.close();
    this.params = streamParams(this.media);
    view.show('starting', `Connecting to the signaling server at ${location.host}…`);
    const socket = this.connect(this.token);
    this.socket = socket;
    socket.on('connect', () => {
      socket.emit('roomJoin', { room });
      view.show('waiting', `Connected. Joining room “${room}”…`);
    });
    socket.on('connect_error', (err) => view.fail(`Could not connect: ${err.message}`));
    socket.on('disconnect', (reason) => {
      if (!this.closed) view.fail(`Lost the connection to the signaling server (${reason}).`);
    });
    socket.on('roomUpdate', (update) => this.onUpdate(update));
    socket.on('message', (message) => this.receive(message));
    socket.on('publishError', ({ message }) => view.showError(`The server refused your camera: ${message}`));
    socket.on('unpublish', () => this.stopCamera());
    view.chatForm.addEventListener('submit', this.sendChat);
  }

  private onUpdate(update: RoomUpdate) {
    if (update.room !== this.room) return;
    const { view } = this;
    if (update.error) {
      // Refused before joining: nothing more can happen in this room.
      if (!this.user) return view.fail(`Could not join room “${this.room}”: ${update.error}`);
      return view.showError(update.error);
    }
    if (update.type === 'roomJoin') return this.joined(update);
    if (update.participantJoin) this.present.set(update.participantJoin.name, update.participantJoin);
    if (update.participantLeft) {
      this.present.delete(update.participantLeft.name);
      this.drop(`in:${update.participantLeft.name}`);
      this.drop(`out:${update.participantLeft.name}`);
    }
    if (update.messageNew) this.addChat(update.messageNew);
    this.showPresence();
  }

  private joined(update: RoomUpdate) {
    const own = this.socket?.id ? update.participants?.[this.socket.id] : undefined;
    if (!own) return this.view.fail('The server did not list this page among the participants.');
    this.user = own.name;
    for (const p of Object.values(update.participants ?? {})) this.present.set(p.name, p);
    for (const line of update.messages ?? []) this.addChat(line);
    this.chatInput.disabled = false;
    (this.view.chatForm.querySelector('button') as HTMLButtonElement).disabled = false;
    if (this.media) this.tile(this.user, this.media, 'You');
    const params = this.params;
    if (params) this.socket?.emit('roomPublish', { room: this.room, stream: this.stream, parameters: { type: 'webrtc', ...params } });
    this.showPresence();
  }

  private receive(message: RoomSignal) {
    const { from = '', type } = message;
    // The channel's peer list and its peerConfig (TURN servers) come from the server alone.
    if (type === 'peers' && from === '_channel_') {
      this.peerConfig = message.peerConfig ?? {};
      for (const peer of message.peers ?? []) if (peer.type === 'player' && peer.peerID !== this.user) this.offerTo(peer.peerID);
    } else if (type === 'peer' && message.peerID) {
      this.offerTo(message.peerID);
    } else if (type === 'offer' && message.content) {
      this.answer(from, message.content, message.peerConfig ?? {});
    } else if (type === 'answer' && message.content) {
      const answer = message.content;
      this.links.get(`out:${from}`)?.run((pc) => pc.setRemoteDescription(answer));
    } else if (type === 'candidate' && message.candidate) {
      const candidate = message.candidate;
      // The sender's side of the connection says which of the two it is for.
      const key = message.role === 'broadcaster' ? `in:${from}` : `out:${from}`;
      this.links.get(key)?.run((pc) => pc.addIceCandidate(candidate));
    } else if (message.payload?.action === 'close') {
      // "<peer> left @<channel>": my channel is my camera's audience, any other is the peer's camera.
      const channel = message.payload.message?.split(' left @')[1];
      this.drop(channel === this.stream ? `out:${from}` : `in:${from}`);
    }
  }

  private link(key: string, peer: string, role: 'broadcaster' | 'player', config: RTCConfiguration) {
    this.drop(key);
    const send = (message: Signal & { type: string }) =>
      this.socket?.emit('messagePeer', { ...message, from: this.user, target: peer, role });
    const link = new Link(
      peer,
      config,
      send,
      (text) => this.view.showError(text),
      () => undefined,
    );
    this.links.set(key, link);
    return link;
  }

  /** My camera to one participant. */
  private offerTo(peer: string) {
    const { media, params, peerConfig } = this;
    if (!media || !params || peer === this.user) return;
    const link = this.link(`out:${peer}`, peer, 'broadcaster', peerConfig);
    for (const track of media.getTracks()) link.pc.addTrack(track, media);
    link.run(async (pc) => {
      await pc.setLocalDescription(await pc.createOffer());
      const content = pc.localDescription?.toJSON() as RTCSessionDescriptionInit;
      this.socket?.emit('messagePeer', { from: this.user, target: peer, type: 'offer', content, peerConfig, role: 'broadcaster' });
    });
    link.run((pc) => capBitrate(pc, params));
  }

  /** One participant's camera to me, shown in the grid. */
  private answer(peer: string, offer: RTCSessionDescriptionInit, config: RTCConfiguration) {
    const link = this.link(`in:${peer}`, peer, 'player', config);
    link.pc.ontrack = ({ streams, track }) => this.tile(peer, streams[0] ?? new MediaStream([track]), peer);
    link.run(async (pc) => {
      await pc.setRemoteDescription(offer);
      await pc.setLocalDescription();
      const content = pc.localDescription?.toJSON() as RTCSessionDescriptionInit;
      this.socket?.emit('messagePeer', { from: this.user, target: peer, type: 'answer', content, role: 'player' });
    });
  }

  private tile(peer: string, stream: MediaStream, caption: string) {
    let tile = this.tiles.get(peer);
    if (!tile) {
      tile = document.createElement('figure');
      tile.className = 'tile';
      tile.dataset.peer = peer;
      const video = document.createElement('video');
      video.autoplay = true;
      video.playsInline = true;
      video.muted = peer === this.user;
      const label = document.createElement('figcaption');
      label.textContent = caption;
      tile.append(video, label);
      this.tiles.set(peer, tile);
      // Your own camera first, the others in the order they came.
      if (peer === this.user) this.view.grid.prepend(tile);
      else this.view.grid.append(tile);
    }
    const video = tile.querySelector('video') as HTMLVideoElement;
    if (video.srcObject !== stream) {
      video.srcObject = stream;
      video.play().catch(() => {
        video.muted = true;
        video.play().catch(() => undefined);
      });
    }
  }

  private addChat(line: ChatLine) {
    const item = document.createElement('li');
    const who = document.createElement('b');
    who.textContent = line.user;
    const text = document.createElement('span');
    text.textContent = typeof line.text === 'string' ? line.text : JSON.stringify(line.text ?? '');
    item.title = new Date(line.timestamp).toLocaleTimeString();
    item.append(who, text);
    this.view.chat.append(item);
    this.view.chat.scrollTop = this.view.chat.scrollHeight;
  }

  private showPresence() {
    const names = [...this.present.keys()];
    this.view.participants.replaceChildren(
      ...names.map((name) => {
        const item = document.createElement('li');
        item.textContent = name === this.user ? `${name} (you)` : name;
        return item;
      }),
    );
    const others = names.length - 1;
    this.view.show('live', `In room “${this.room}” as ${this.user}, with ${others} other${others === 1 ? '' : 's'}.`);
  }

  private drop(key: string) {
    const link = this.links.get(key);
    if (!link) return;
    link.close();
    this.links.delete(key);
    if (key.startsWith('in:')) {
      this.tiles.get(link.peer)?.remove();
      this.tiles.delete(link.peer);
    }
  }

  private stopCamera() {
    for (const key of [...this.links.keys()]) if (key.startsWith('out:')) this.drop(key);
    for (const track of this.media?.getTracks() ?? []) track.stop();
    this.media = undefined;
  }

  stats(): Promise<RoomLinkStats[]> {
    return Promise.all(
      [...this.links].map(async ([key, link]) => ({
        ...(await link.stats()),
        direction: key.startsWith('in:') ? ('in' as const) : ('out' as const),
      })),
    );
  }

  close() {
    this.closed = true;
    this.view.chatForm.removeEventListener('submit', this.sendChat);
    for (const key of [...this.links.keys()]) this.drop(key);
    this.socket?.disconnect();
    this.stopCamera();
    for (const tile of this.tiles.values()) tile.remove();
    this.tiles.clear();
    this.view.participants.replaceChildren();
    this.view.chat.replaceChildren();
    this.chatInput.disabled = true;
    (this.view.chatForm.querySelector('button') as HTMLButtonElement).disabled = true;
  }
}
