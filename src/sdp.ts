// ENFORCE_SDP: the offers and answers peers relay get the plan's limits
// written into them, so a browser that honours its peer's SDP sends no more
// than the plan allows whatever the client claimed at publish. Pure
// functions over the SDP text; sdp-transform parses and writes it.
import { parse, type MediaDescription, type SessionDescription } from 'sdp-transform';
import type { Plan } from './limits';

/** What an SDP may ask for: kbps per video and audio section, frame size and rate (0: no cap). */
export interface SdpCaps {
  videoKbps: number;
  audioKbps: number;
  width: number;
  height: number;
  frameRate: number;
}

export function sdpCaps(plan: Plan): SdpCaps | undefined {
  const caps = { videoKbps: plan.bitrate, audioKbps: plan.audioBitrate, width: plan.width, height: plan.height, frameRate: plan.frameRate };
  return Object.values(caps).some((v) => v > 0) ? caps : undefined;
}

export type CappedSdp = { sdp: string } | { error: string };

// Every line of an SDP is `<letter>=<value>` (RFC 8866 section 5).
const SDP_LINE = /^[a-z]=/;

/**
 * The SDP with, in each audio and video section, `b=AS` (kbps) and `b=TIAS`
 * (bps) no higher than the caps, and the frame size and rate where the codec
 * has a standard parameter for them. sdp-transform reads the SDP; the edits
 * are made to its lines, so every line the caps do not concern goes on byte
 * for byte (writing the parsed SDP back would reorder and respell some).
 * Lines are only lowered or added, never raised or dropped. An SDP that is
 * not one is an error, never relayed half-rewritten.
 */
export function capSdp(text: string, caps: SdpCaps): CappedSdp {
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  const lines = text.split(/\r?\n/);
  // The final line break leaves one empty string; any other empty line is no SDP.
  if (lines.at(-1) === '') lines.pop();
  if (lines[0] !== 'v=0' || !lines.every((line) => SDP_LINE.test(line))) return { error: 'not an SDP' };
  let session: SessionDescription;
  try {
    session = parse(text);
  } catch {
    return { error: 'unreadable SDP' };
  }
  // Sections as line ranges: [0] the session part, then one per m= line.
  const starts = [0, ...lines.flatMap((line, i) => (line.startsWith('m=') ? [i] : []))];
  if (session.media.length !== starts.length - 1 || session.media.some((m) => !m.type || !Number.isInteger(m.port)))
    return { error: 'unreadable media section' };
  const sections = starts.map((start, i) => lines.slice(start, starts[i + 1] ?? lines.length));
  session.media.forEach((media, i) => {
    const section = sections[i + 1] as string[];
    if (media.type === 'video') {
      capBandwidth(section, caps.videoKbps);
      capFrames(section, media, caps);
    } else if (media.type === 'audio') capBandwidth(section, caps.audioKbps);
  });
  // A session-level line caps the whole session: at most audio plus video.
  const head = sections[0] as string[];
  if (head.some((line) => line.startsWith('b=')) && caps.videoKbps > 0 && caps.audioKbps > 0)
    capBandwidth(head, caps.videoKbps + caps.audioKbps, false);
  return { sdp: sections.flat().join(eol) + eol };
}

/** Lowers (or, in a media section, adds) the section's b=AS and b=TIAS lines, in place. */
function capBandwidth(section: string[], kbps: number, add = true) {
  if (kbps <= 0) return;
  for (const [type, limit] of [
    ['AS', kbps],
    ['TIAS', kbps * 1000],
  ] as const) {
    const at = section.findIndex((line) => line.startsWith(`b=${type}:`));
    if (at < 0) {
      if (!add) continue;
      // b= lines go after the m= (or session) line's i= and c= lines (RFC 8866 section 5).
      let after = 0;
      while (after + 1 < section.length && /^[icb]=/.test(section[after + 1] as string)) after++;
      section.splice(after + 1, 0, `b=${type}:${limit}`);
      continue;
    }
    const current = Number((section[at] as string).slice(type.length + 3));
    // A missing or zero value (`b=AS:` with no number) is no limit at all.
    if (!(current > 0) || current > limit) section[at] = `b=${type}:${limit}`;
  }
}

const macroblocks = (width: number, height: number) => Math.ceil(width / 16) * Math.ceil(height / 16);

/**
 * H.264 levels (ITU-T H.264 Table A-1): level_idc, largest frame in
 * macroblocks, macroblocks per second. RFC 6184's `max-fs` may only add to
 * what a level allows, so for H.264 the level itself says the frame size.
 */
const H264_LEVELS: [level: number, maxFs: number, maxMbps: number][] = [
  [10, 99, 1485],
  [11, 396, 3000],
  [12, 396, 6000],
  [13, 396, 11_880],
  [20, 396, 11_880],
  [21, 792, 19_800],
  [22, 1620, 20_250],
  [30, 1620, 40_500],
  [31, 3600, 108_000],
  [32, 5120, 216_000],
  [40, 8192, 245_760],
  [41, 8192, 245_760],
  [42, 8704, 522_240],
  [50, 22_080, 589_824],
  [51, 36_864, 983_040],
  [52, 36_864, 2_073_600],
];

/** The lowest H.264 level that still carries the plan's largest stream. */
function h264Level(frameSize: number, frameRate: number): number {
  const rate = frameSize * (frameRate > 0 ? frameRate : 30);
  const fit = H264_LEVELS.find(([, maxFs, maxMbps]) => maxFs >= frameSize && maxMbps >= rate);
  return fit ? fit[0] : 52;
}

type Fmtp = Map<string, string>;
const readFmtp = (config: string): Fmtp =>
  new Map(
    config
      .split(';')
      .map((p) => p.trim())
      .filter(Boolean)
      .map((p) => {
        const at = p.indexOf('=');
        return at < 0 ? [p, ''] : [p.slice(0, at).trim(), p.slice(at + 1).trim()];
      }),
  );
const writeFmtp = (params: Fmtp) => [...params].map(([k, v]) => (v === '' ? k : `${k}=${v}`)).join(';');

/** Lowers (or adds) one parameter; true when it changed. */
const lower = (params: Fmtp, key: string, value: number) => {
  const current = Number(params.get(key));
  if (current > 0 && current <= value) return false;
  params.set(key, String(value));
  return true;
};

/**
 * VP8 (RFC 7741) and VP9 (RFC 9628) take a receiver's `max-fs` (macroblocks)
 * and `max-fr` (frames per second) in a=fmtp; H.264 takes the level of
 * `profile-level-id` (RFC 6184), lowered to the smallest level that fits.
 */
function capFrames(section: string[], media: MediaDescription, caps: SdpCaps) {
  const frameSize = caps.width > 0 && caps.height > 0 ? macroblocks(caps.width, caps.height) : 0;
  if (!frameSize && !(caps.frameRate > 0)) return;
  for (const { payload, codec } of media.rtp) {
    const name = codec.toUpperCase();
    if (name !== 'VP8' && name !== 'VP9' && name !== 'H264') continue;
    const prefix = `a=fmtp:${payload} `;
    const at = section.findIndex((line) => line.startsWith(prefix));
    const params = readFmtp(at < 0 ? '' : (section[at] as string).slice(prefix.length));
    if (name === 'H264') {
      const profileLevel = params.get('profile-level-id');
      if (at < 0 || !frameSize || !profileLevel || !/^[0-9a-f]{6}$/i.test(profileLevel)) continue;
      const level = Number.parseInt(profileLevel.slice(4), 16);
      const fit = h264Level(frameSize, caps.frameRate);
      // Level 1b (level_idc 11 with constraint_set3) and unknown levels stay as they are.
      if (!H264_LEVELS.some(([l]) => l === level) || fit >= level) continue;
      params.set('profile-level-id', profileLevel.slice(0, 4) + fit.toString(16).padStart(2, '0'));
    } else {
      const fs = frameSize > 0 && lower(params, 'max-fs', frameSize);
      const fr = caps.frameRate > 0 && lower(params, 'max-fr', Math.floor(caps.frameRate) || 1);
      if (!fs && !fr) continue;
    }
    const line = prefix + writeFmtp(params);
    if (at >= 0) section[at] = line;
    else {
      // A new a=fmtp goes right after its payload's a=rtpmap.
      const rtpmap = section.findIndex((l) => l.startsWith(`a=rtpmap:${payload} `));
      section.splice(rtpmap < 0 ? section.length : rtpmap + 1, 0, line);
    }
  }
}
