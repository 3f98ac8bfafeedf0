// The demo page's script. A broadcaster sends its camera to every player of a
// channel; a player shows what it receives. Both speak the signaling protocol
// exactly as the HTML5 Videochat app does (docs/PROTOCOL.md) and use the
// peerConfig the server hands out, so a working demo means a working server.
import type { io as socketIo, Socket } from 'socket.io-client';
import { RoomSession } from './room.js';
import { capBitrate, explainCameraError, Link, openCamera, streamParams, type LinkStats, type Signal, type StreamParams } from './media.js';

// The UMD bundle the server serves at /socket.io/socket.io.min.js.
declare const io: typeof socketIo | undefined;

type Mode = 'broadcast' | 'watch' | 'room';
type State = 'idle' | 'starting' | 'waiting' | 'live' | 'ended' | 'stopped' | 'error';

interface Settings {
  mode: Mode;
  token: string;
  channel: string;
  name: string;
}

interface ServerError {
  message: string;
}

interface ServerEvents {
  message: (message: Signal) => void;
  publishError: (error: ServerError) => void;
  subscribeError: (error: ServerError) => void;
  uniquenessError: (error: ServerError) => void;
  messageError: (error: ServerError) => void;
}

interface ClientEvents {
  publish: (peerID: string, channel: string, params: StreamParams) => void;
  subscribe: (peerID: string, channel: string) => void;
  messagePeer: (message: Signal & { from: string; target: string; type: string }) => void;
}

/** What the page offers to scripts driving it (the end-to-end test). */
interface DemoApi {
  state(): State;
  stats(): Promise<LinkStats[]>;
}

declare global {
  interface Window {
    demo: DemoApi;
  }
}

// ---- the page ----

function element<T extends HTMLElement>(selector: string): T {
  const found = document.querySelector<T>(selector);
  if (!found) throw new Error(`The page has no ${selector}`);
  return found;
}

const form = element<HTMLFormElement>('#setup');
const startButton = element<HTMLButtonElement>('#start');
const video = element<HTMLVideoElement>('#video');
const placeholder = element<HTMLElement>('#placeholder');
const badge = element<HTMLElement>('#badge');
const statusLine = element<HTMLElement>('#status');
const errorLine = element<HTMLElement>('#error');
const peerList = element<HTMLUListElement>('#peers');
const share = element<HTMLElement>('#share');
const shareLink = element<HTMLAnchorElement>('#share-link');
const input = (name: string) => form.elements.namedItem(name) as HTMLInputElement;
const modeChoice = form.elements.namedItem('mode') as RadioNodeList;
const stage = element<HTMLElement>('#stage');
const roomArea = element<HTMLElement>('#room');
const channelLabel = element<HTMLElement>('#channel-label');
const roomView = {
  grid: element<HTMLElement>('#grid'),
  participants: element<HTMLUListElement>('#participants'),
  chat: element<HTMLOListElement>('#chat'),
  chatForm: element<HTMLFormElement>('#chat-form'),
};

/** Room mode shows the grid and the chat; the channel field names the room. */
function showMode(mode: string) {
  const room = mode === 'room';
  stage.hidden = room;
  roomArea.hidden = !room;
  channelLabel.textContent = room ? 'Room' : 'Channel';
  input('name').required = !room;
  input('name').closest('label')?.toggleAttribute('hidden', room);
}

const badgeText: Record<State, string> = {
  idle: 'Idle',
  starting: 'Starting',
  waiting: 'Waiting',
  live: 'Live',
  ended: 'Ended',
  stopped: 'Stopped',
  error: 'Error',
};

let state: State = 'idle';

function show(next: State, text: string) {
  state = next;
  document.body.dataset.state = next;
  badge.textContent = badgeText[next];
  statusLine.textContent = text;
}

function showError(text: string | undefined) {
  errorLine.textContent = text ?? '';
  errorLine.hidden = !text;
}

function showVideo(stream: MediaStream | null, muted = true) {
  if (video.srcObject === stream) return;
  video.srcObject = stream;
  video.muted = muted;
  placeholder.hidden = Boolean(stream);
  if (!stream) return void (video.controls = false);
  // Browsers may refuse to play sound before the user interacts with the
  // page; then play muted and give the user the controls to unmute.
  video.play().catch(() => {
    video.muted = true;
    video.controls = true;
    video.play().catch(() => undefined);
  });
}

const connectionWords: Record<RTCPeerConnectionState, string> = {
  new: 'starting',
  connecting: 'connecting…',
  connected: 'connected',
  disconnected: 'interrupted, retrying…',
  failed: 'failed',
  closed: 'closed',
};

function showLinks(rows: LinkStats[]) {
  peerList.replaceChildren(
    ...rows.map((row) => {
      const item = document.createElement('li');
      const name = document.createElement('span');
      const detail = document.createElement('span');
      name.textContent = row.peer;
      const frames = row.framesDecoded
        ? ` · ${row.framesDecoded} frames received`
        : row.framesSent
          ? ` · ${row.framesSent} frames sent`
          : '';
      // A relayed route means TURN carries the media: worth knowing when checking a setup.
      const via = row.route?.type === 'relay' ? ' · via TURN' : '';
      detail.textContent = connectionWords[row.connection] + via + frames;
      item.append(name, detail);
      return item;
    }),
  );
}

// ---- plain words for what the server and the browser report ----

const handshakeErrors = new Map([
  [
    'ERROR: Authentication error',
    'The server did not accept the token. Use the STATIC_TOKEN from its settings or the token of an account.',
  ],
  ['ERROR: Suspended account', 'The account of this token is suspended.'],
  [
    'ERROR: Connection limit exceeded',
    'The account already has as many connections as its plan allows. Close another tab or raise the plan’s connections.',
  ],
  ['ERROR: Bitrate limit exceeded', 'The account already uses all the bitrate its plan allows.'],
  ['ERROR: Server unavailable', 'The server could not check the token just now (its account database may be down). Try again shortly.'],
  ['ERROR: Too many failed attempts', 'Too many wrong tokens came from this address. Wait a minute, then try again.'],
]);

function explainConnectError(message: string): string {
  const known = handshakeErrors.get(message);
  if (known) return `${known} (The server said “${message}”.)`;
  return (
    `Could not reach the signaling server at ${location.host} (${message}). ` +
    'Check that it runs, that its port is open and that the browser trusts its certificate.'
  );
}

function explainDisconnect(reason: string): string {
  if (reason === 'io server disconnect') return 'The server closed the connection (it may be restarting).';
  return `Lost the connection to the signaling server (${reason}).`;
}

function explainRefusal(what: string, message: string): string {
  const unfit = /^Unfit: (.+)\.$/.exec(message);
  if (unfit) return `The server refused to ${what}: it does not fit the account’s plan (${unfit[1]}). (The server said “${message}”.)`;
  return `The server refused to ${what}: ${message}`;
}

// ---- a broadcast or a watch, from Start to Stop ----

class Session {
  private socket: Socket<ServerEvents, ClientEvents> | undefined;
  private media: MediaStream | undefined;
  private params: StreamParams | undefined;
  private peerConfig: RTCConfiguration = {};
  private broadcaster: string | undefined;
  private readonly links = new Map<string, Link>();
  private closed = false;

  constructor(
    private readonly settings: Settings,
    private readonly fail: (text: string) => void,
  ) {}

  async start() {
    const { mode, token, channel, name } = this.settings;
    if (mode === 'broadcast') {
      show('starting', 'Asking for your camera…');
      try {
        this.media = await openCamera();
      } catch (err) {
        return this.fail(explainCameraError(err));
      }
      if (this.closed) return this.close();
      showVideo(this.media);
      this.params = streamParams(this.media);
    }
    if (!io)
      return this.fail('The Socket.IO client did not load from /socket.io/socket.io.min.js: is this page served by the signaling server?');
    show('starting', `Connecting to the signaling server at ${location.host}…`);
    const socket: Socket<ServerEvents, ClientEvents> = io(location.origin, {
      auth: { token },
      transports: ['websocket'],
      reconnection: false,
    });
    this.socket = socket;
    socket.on('connect', () => {
      if (this.params) {
        socket.emit('publish', name, channel, this.params);
        const { width, height, frameRate } = this.params;
        show('waiting', `Connected. Publishing ${width}×${height} at ${frameRate} fps on channel “${channel}”…`);
      } else {
        socket.emit('subscribe', name, channel);
        show('waiting', `Connected. Waiting for a broadcast on channel “${channel}”…`);
      }
    });
    socket.on('connect_error', (err) => this.fail(explainConnectError(err.message)));
    socket.on('disconnect', (reason) => {
      if (!this.closed) this.fail(explainDisconnect(reason));
    });
    socket.on('publishError', ({ message }) => this.fail(explainRefusal('publish this stream', message)));
    socket.on('subscribeError', ({ message }) => this.fail(explainRefusal('let you watch', message)));
    socket.on('uniquenessError', () => this.fail(`The name “${name}” is already in use on channel “${channel}”. Pick another name.`));
    // A relayed message was dropped (too many too fast): worth showing, not fatal.
    socket.on('messageError', ({ message }) => showError(`The server dropped a signaling message: ${message}`));
    socket.on('message', (message) => this.receive(message));
  }

  private receive(message: Signal) {
    const { from = '', type } = message;
    // The channel's peer list and its peerConfig (TURN servers) come from the server alone.
    if (type === 'peers' && from === '_channel_' && this.params) {
      this.peerConfig = message.peerConfig ?? {};
      for (const peer of message.peers ?? []) if (peer.type === 'player' && peer.peerID !== this.settings.name) this.offerTo(peer.peerID);
      this.showAudience();
    } else if (type === 'peer' && message.peerID && this.params) {
      this.offerTo(message.peerID);
    } else if (type === 'offer' && message.content && !this.params) {
      this.answer(from, message.content, message.peerConfig ?? {});
    } else if (type === 'answer' && message.content) {
      const answer = message.content;
      this.links.get(from)?.run((pc) => pc.setRemoteDescription(answer));
    } else if (type === 'candidate' && message.candidate) {
      const candidate = message.candidate;
      this.links.get(from)?.run((pc) => pc.addIceCandidate(candidate));
    } else if (message.payload?.action === 'close') {
      this.drop(from);
      if (from === this.broadcaster) this.broadcastEnded();
      else if (this.params) this.showAudience();
    }
  }

  private link(peer: string, config: RTCConfiguration) {
    this.drop(peer);
    const { name } = this.settings;
    const send = (message: Signal & { type: string }) => this.socket?.emit('messagePeer', { ...message, from: name, target: peer });
    // One failed connection is worth showing but does not end the session: a
    // broadcast goes on for the other viewers, a viewer may get a new offer.
    const link = new Link(peer, config, send, showError, () => this.onLinkChange(link));
    this.links.set(peer, link);
    return link;
  }

  /** Broadcaster: one connection per player, offered with the server's peerConfig. */
  private offerTo(player: string) {
    const { media, params, peerConfig } = this;
    if (!media || !params) return;
    const link = this.link(player, peerConfig);
    for (const track of media.getTracks()) link.pc.addTrack(track, media);
    link.run(async (pc) => {
      await pc.setLocalDescription(await pc.createOffer());
      const content = pc.localDescription?.toJSON() as RTCSessionDescriptionInit;
      // The player builds its connection from this, so both use the same ICE servers.
      this.socket?.emit('messagePeer', { from: this.settings.name, target: player, type: 'offer', content, peerConfig });
    });
    link.run((pc) => capBitrate(pc, params));
    this.showAudience();
  }

  /** Player: answers the broadcaster's offer and shows what arrives. */
  private answer(broadcaster: string, offer: RTCSessionDescriptionInit, config: RTCConfiguration) {
    this.broadcaster = broadcaster;
    const link = this.link(broadcaster, config);
    link.pc.ontrack = ({ streams, track }) => showVideo(streams[0] ?? new MediaStream([track]), false);
    link.run(async (pc) => {
      await pc.setRemoteDescription(offer);
      await pc.setLocalDescription();
      const content = pc.localDescription?.toJSON() as RTCSessionDescriptionInit;
      this.socket?.emit('messagePeer', { from: this.settings.name, target: broadcaster, type: 'answer', content });
    });
    show('waiting', `${broadcaster} is broadcasting on channel “${this.settings.channel}”: connecting…`);
  }

  private onLinkChange(link: Link) {
    if (this.params) return this.showAudience();
    if (link.peer !== this.broadcaster) return;
    const { channel } = this.settings;
    if (link.pc.connectionState === 'connected') show('live', `Watching ${link.peer} on channel “${channel}”.`);
    void this.refreshLinks();
  }

  private showAudience() {
    const viewers = this.links.size;
    const connected = [...this.links.values()].filter((l) => l.pc.connectionState === 'connected').length;
    const { channel } = this.settings;
    const { width = 0, height = 0, frameRate = 0 } = this.params ?? {};
    const audience =
      viewers === 0
        ? 'No viewers yet: open this page in another tab and choose Watch.'
        : `${viewers} viewer${viewers === 1 ? '' : 's'}, ${connected} connected.`;
    show('live', `Broadcasting ${width}×${height} at ${frameRate} fps on channel “${channel}”. ${audience}`);
    void this.refreshLinks();
  }

  private broadcastEnded() {
    this.broadcaster = undefined;
    showVideo(null);
    show('ended', `The broadcast ended. This page stays on channel “${this.settings.channel}” and shows the next one.`);
    void this.refreshLinks();
  }

  private drop(peer: string) {
    this.links.get(peer)?.close();
    this.links.delete(peer);
  }

  stats(): Promise<LinkStats[]> {
    return Promise.all([...this.links.values()].map((link) => link.stats()));
  }

  async refreshLinks() {
    const rows = await this.stats();
    if (!this.closed) showLinks(rows);
  }

  close() {
    this.closed = true;
    for (const peer of [...this.links.keys()]) this.drop(peer);
    this.socket?.disconnect();
    for (const track of this.media?.getTracks() ?? []) track.stop();
    showVideo(null);
    showLinks([]);
  }
}

// ---- Start and Stop ----

let session: Session | RoomSession | undefined;
let ticker: ReturnType<typeof setInterval> | undefined;

function readSettings(): Settings {
  return {
    mode: modeChoice.value === 'watch' || modeChoice.value === 'room' ? modeChoice.value : 'broadcast',
    token: input('token').value,
    channel: input('channel').value.trim(),
    name: input('name').value.trim(),
  };
}

function setRunning(running: boolean) {
  startButton.textContent = running ? 'Stop' : 'Start';
  for (const field of form.querySelectorAll('input')) field.disabled = running;
}

function begin() {
  const settings = readSettings();
  showError(undefined);
  const fail = (text: string) => {
    if (session !== current) return;
    end('error', 'Stopped because of the error below. Fix it, then press Start again.');
    showError(text);
  };
  const current: Session | RoomSession =
    settings.mode === 'room'
      ? new RoomSession(settings.channel, settings.token, { ...roomView, show, showError, fail }, (token) => {
          if (!io) throw new Error('The Socket.IO client did not load from /socket.io/socket.io.min.js');
          return io(location.origin, { auth: { token }, transports: ['websocket'], reconnection: false });
        })
      : new Session(settings, fail);
  session = current;
  setRunning(true);
  ticker = setInterval(() => void current.stats().then((rows) => session === current && showLinks(rows)), 1000);
  const watchUrl = new URL(location.href);
  watchUrl.search = new URLSearchParams({ mode: 'watch', channel: settings.channel }).toString();
  shareLink.href = watchUrl.href;
  share.hidden = settings.mode !== 'broadcast';

  void current.start();
}

function end(next: 'stopped' | 'error', text: string) {
  clearInterval(ticker);
  session?.close();
  session = undefined;
  share.hidden = true;
  setRunning(false);
  show(next, text);
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  if (session) end('stopped', 'Stopped. Press Start to begin again.');
  else if (form.reportValidity()) begin();
});

// A name that is not typed in follows the chosen mode.
let nameTyped = false;
const defaultName = (mode: string) => `${mode === 'watch' ? 'Viewer' : 'Studio'}-${Math.floor(1000 + Math.random() * 9000)}`;
input('name').addEventListener('input', () => (nameTyped = true));
form.addEventListener('change', (event) => {
  if ((event.target as HTMLInputElement).name !== 'mode') return;
  showMode(modeChoice.value);
  if (!nameTyped) input('name').value = defaultName(modeChoice.value);
});

// Links such as /demo?mode=watch&channel=lobby&token=... fill the form.
const query = new URLSearchParams(location.search);
const requestedMode = query.get('mode');
modeChoice.value = requestedMode === 'watch' || requestedMode === 'room' ? requestedMode : 'broadcast';
showMode(modeChoice.value);
input('token').value = query.get('token') ?? '';
input('channel').value = query.get('channel') ?? 'demo';
input('name').value = query.get('name') ?? defaultName(modeChoice.value);
nameTyped = query.has('name');

window.demo = {
  state: () => state,
  stats: () => session?.stats() ?? Promise.resolve([]),
};
show('idle', 'Pick broadcast or watch, a channel and a name, then press Start; or a room, with a signed access token.');
