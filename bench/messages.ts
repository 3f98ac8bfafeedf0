// Signaling payloads the size a browser sends: a Chrome-like SDP of about
// 4 KB (audio and video) and ICE candidates of about 300 B on the wire.

const videoCodecs: [number, string, string[]][] = [
  [96, 'VP8/90000', []],
  [98, 'VP9/90000', ['profile-id=0']],
  [100, 'VP9/90000', ['profile-id=2']],
  [102, 'H264/90000', ['level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f']],
  [104, 'H264/90000', ['level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f']],
  [106, 'H264/90000', ['level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f']],
  [108, 'H264/90000', ['level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f']],
  [39, 'AV1/90000', ['level-idx=5;profile=0;tier=0']],
];

/** A session description of about 4 KB; `kind` is offer or answer. */
export function sdp(kind: 'offer' | 'answer', seed: number): string {
  const setup = kind === 'offer' ? 'actpass' : 'active';
  const ufrag = `u${(seed % 9000) + 1000}`;
  const ice = [
    `a=ice-ufrag:${ufrag}`,
    'a=ice-pwd:3Wq2Tf0cNlCk9rVhZyB8mS1x',
    'a=ice-options:trickle',
    'a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08',
    `a=setup:${setup}`,
  ];
  const lines = [
    'v=0',
    `o=- ${4611731400430051336n + BigInt(seed)} 2 IN IP4 127.0.0.1`,
    's=-',
    't=0 0',
    'a=group:BUNDLE 0 1',
    'a=extmap-allow-mixed',
    'a=msid-semantic: WMS stream',
    'm=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126',
    'c=IN IP4 0.0.0.0',
    'a=rtcp:9 IN IP4 0.0.0.0',
    ...ice,
    'a=mid:0',
    'a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level',
    'a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time',
    'a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01',
    'a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid',
    'a=sendrecv',
    'a=msid:stream audio0',
    'a=rtcp-mux',
    'a=rtpmap:111 opus/48000/2',
    'a=rtcp-fb:111 transport-cc',
    'a=fmtp:111 minptime=10;useinbandfec=1',
    'a=rtpmap:63 red/48000/2',
    'a=fmtp:63 111/111',
    'a=rtpmap:9 G722/8000',
    'a=rtpmap:0 PCMU/8000',
    'a=rtpmap:8 PCMA/8000',
    'a=rtpmap:13 CN/8000',
    'a=rtpmap:110 telephone-event/48000',
    'a=rtpmap:126 telephone-event/8000',
    `a=ssrc:${1000 + seed} cname:bench${seed}`,
    `a=ssrc:${1000 + seed} msid:stream audio0`,
    `m=video 9 UDP/TLS/RTP/SAVPF ${videoCodecs.flatMap(([pt]) => [pt, pt + 1]).join(' ')}`,
    'c=IN IP4 0.0.0.0',
    'a=rtcp:9 IN IP4 0.0.0.0',
    ...ice,
    'a=mid:1',
    'a=extmap:14 urn:ietf:params:rtp-hdrext:toffset',
    'a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time',
    'a=extmap:13 urn:3gpp:video-orientation',
    'a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01',
    'a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay',
    'a=extmap:6 http://www.webrtc.org/experiments/rtp-hdrext/video-content-type',
    'a=extmap:7 http://www.webrtc.org/experiments/rtp-hdrext/video-timing',
    'a=extmap:8 http://www.webrtc.org/experiments/rtp-hdrext/color-space',
    'a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid',
    'a=sendrecv',
    'a=msid:stream video0',
    'a=rtcp-mux',
    'a=rtcp-rsize',
  ];
  for (const [pt, codec, fmtp] of videoCodecs) {
    lines.push(`a=rtpmap:${pt} ${codec}`);
    for (const fb of ['goog-remb', 'transport-cc', 'ccm fir', 'nack', 'nack pli']) lines.push(`a=rtcp-fb:${pt} ${fb}`);
    for (const f of fmtp) lines.push(`a=fmtp:${pt} ${f}`);
    lines.push(`a=rtpmap:${pt + 1} rtx/90000`, `a=fmtp:${pt + 1} apt=${pt}`);
  }
  const video = 2000 + seed;
  lines.push(
    `a=ssrc-group:FID ${video} ${video + 1}`,
    `a=ssrc:${video} cname:bench${seed}`,
    `a=ssrc:${video} msid:stream video0`,
    `a=ssrc:${video + 1} cname:bench${seed}`,
    `a=ssrc:${video + 1} msid:stream video0`,
  );
  return `${lines.join('\r\n')}\r\n`;
}

/** An ICE candidate as RTCIceCandidate.toJSON() gives it. */
export function candidate(seed: number) {
  const port = 50000 + (seed % 10000);
  return {
    candidate: `candidate:${842163049 + seed} 1 udp 1677729535 203.0.113.7 ${port} typ srflx raddr 192.168.1.20 rport ${port} generation 0 ufrag u${(seed % 9000) + 1000} network-id 1 network-cost 10`,
    sdpMid: '0',
    sdpMLineIndex: 0,
    usernameFragment: `u${(seed % 9000) + 1000}`,
  };
}

/** The stream a broadcaster publishes. */
export const STREAM = { width: 640, height: 360, bitrate: 500, frameRate: 15, audioBitrate: 32 };
