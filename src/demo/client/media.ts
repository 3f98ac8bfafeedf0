// What both the channel modes and the room mode of the demo page use: the
// camera, the stream it declares, and one WebRTC connection per remote peer.

export interface Peer {
  peerID: string;
  type: 'broadcaster' | 'player';
}

/** Everything that arrives on the `message` event, and what goes out with `messagePeer`. */
export interface Signal {
  type?: string;
  from?: string;
  target?: string;
  peerID?: string;
  peers?: Peer[];
  peerConfig?: RTCConfiguration;
  content?: RTCSessionDescriptionInit;
  candidate?: RTCIceCandidateInit;
  payload?: { action?: string; message?: string };
}

export interface LinkStats {
  peer: string;
  connection: RTCPeerConnectionState;
  framesSent: number;
  framesDecoded: number;
  /** Video bytes received so far, and when (ms) the browser counted them: a bitrate over two readings. */
  bytesReceived: number;
  at: number;
  /** The addresses the media flows between, once ICE has chosen them. */
  route?: { type: string; local: string; remote: string };
}

/** The fields of getStats() reports read here. */
export interface StatsReport {
  type: string;
  kind?: string;
  framesSent?: number;
  framesDecoded?: number;
  bytesReceived?: number;
  timestamp?: number;
  selectedCandidatePairId?: string;
  localCandidateId?: string;
  remoteCandidateId?: string;
  candidateType?: string;
  address?: string;
  port?: number;
}

export function explainCameraError(err: unknown): string {
  const name = err instanceof DOMException ? err.name : '';
  if (name === 'NotAllowedError')
    return 'The browser was not allowed to use the camera. Allow camera access for this site, then press Start again.';
  if (name === 'NotFoundError') return 'No camera was found.';
  if (name === 'NotReadableError') return 'The camera is busy: another application may be using it.';
  return `The camera could not be opened (${err instanceof Error ? err.message : String(err)}).`;
}

// ---- media ----

export async function openCamera(): Promise<MediaStream> {
  if (!navigator.mediaDevices) throw new Error('the camera needs an https:// page or localhost: set CERTIFICATE on the server');
  const video = { width: { ideal: 1280 }, height: { ideal: 720 } };
  try {
    return await navigator.mediaDevices.getUserMedia({ video, audio: true });
  } catch (err) {
    // Many desktops have a camera but no microphone.
    if (err instanceof DOMException && err.name === 'NotFoundError') return navigator.mediaDevices.getUserMedia({ video });
    throw err;
  }
}

/**
 * The stream as `publish` declares it (docs/PROTOCOL.md: `params`), read
 * from the camera's actual settings. The page is built apart from the server,
 * so its type is this function's own.
 */
export function streamParams(media: MediaStream) {
  const settings = media.getVideoTracks()[0]?.getSettings() ?? {};
  const width = settings.width ?? 640;
  const height = settings.height ?? 480;
  const frameRate = Math.round(settings.frameRate ?? 30);
  // About 0.1 bit per pixel gives a clear picture; rounded to 50 kbps.
  const bitrate = Math.max(100, Math.round((width * height * frameRate) / 10_000 / 50) * 50);
  return { width, height, bitrate, frameRate, audioBitrate: media.getAudioTracks().length ? 64 : 0 };
}

export type StreamParams = ReturnType<typeof streamParams>;

/** Keeps what is sent within what `publish` declared, so plan limits hold. */
export async function capBitrate(pc: RTCPeerConnection, params: StreamParams) {
  for (const sender of pc.getSenders()) {
    const kbps = sender.track?.kind === 'video' ? params.bitrate : params.audioBitrate;
    const parameters = sender.getParameters();
    const encoding = parameters.encodings[0];
    if (!encoding || !kbps) continue;
    encoding.maxBitrate = kbps * 1000;
    await sender.setParameters(parameters);
  }
}

// ---- one WebRTC connection per remote peer ----

export class Link {
  readonly pc: RTCPeerConnection;
  private steps: Promise<void> = Promise.resolve();

  constructor(
    readonly peer: string,
    config: RTCConfiguration,
    send: (message: Signal & { type: string }) => void,
    private readonly onFailure: (text: string) => void,
    onChange: () => void,
  ) {
    this.pc = new RTCPeerConnection(config);
    // Queued behind the step that sends the description, so the other side
    // never gets a candidate before the offer or answer it belongs to.
    this.pc.onicecandidate = ({ candidate }) => {
      if (candidate) this.run(async () => send({ type: 'candidate', candidate: candidate.toJSON() }));
    };
    this.pc.onconnectionstatechange = () => {
      if (this.pc.connectionState === 'failed')
        onFailure(
          `The video connection with ${peer} failed: the two browsers could not reach each other. ` +
            'Across different networks this needs a TURN server (COTURN_SERVER in the server’s settings).',
        );
      onChange();
    };
  }

  /** Runs signaling steps one at a time: a candidate is only added after its description. */
  run(step: (pc: RTCPeerConnection) => Promise<unknown>) {
    this.steps = this.steps
      .then(() => step(this.pc))
      .then(
        () => undefined,
        (err: unknown) => {
          if (this.pc.signalingState !== 'closed')
            this.onFailure(`Setting up the video with ${this.peer} failed (${err instanceof Error ? err.message : String(err)}).`);
        },
      );
  }

  async stats(): Promise<LinkStats> {
    const reports = await this.pc.getStats();
    let framesSent = 0;
    let framesDecoded = 0;
    let bytesReceived = 0;
    let at = 0;
    let route: LinkStats['route'];
    reports.forEach((report: StatsReport) => {
      if (report.type === 'outbound-rtp' && report.kind === 'video') framesSent += report.framesSent ?? 0;
      if (report.type === 'inbound-rtp' && report.kind === 'video') {
        framesDecoded += report.framesDecoded ?? 0;
        bytesReceived += report.bytesReceived ?? 0;
        at = report.timestamp ?? at;
      }
      if (report.type === 'transport' && report.selectedCandidatePairId) {
        const pair = reports.get(report.selectedCandidatePairId) as StatsReport | undefined;
        const local = pair?.localCandidateId ? (reports.get(pair.localCandidateId) as StatsReport | undefined) : undefined;
        const remote = pair?.remoteCandidateId ? (reports.get(pair.remoteCandidateId) as StatsReport | undefined) : undefined;
        if (local && remote) {
          const address = (c: StatsReport) => `${c.address}:${c.port}`;
          route = { type: local.candidateType ?? '', local: address(local), remote: address(remote) };
        }
      }
    });
    return { peer: this.peer, connection: this.pc.connectionState, framesSent, framesDecoded, bytesReceived, at, route };
  }

  close() {
    this.pc.close();
  }
}
