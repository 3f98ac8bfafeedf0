// Plan limits as pure functions: (plan, usage, stream) -> the issue names the
// client sees in `Unfit: ...`. No I/O, no emits.
import type { Stream } from './protocol';

/** A plan's limits; 0 means unlimited. */
export interface Plan {
  connections: number;
  totalBitrate: number;
  bitrate: number;
  audioBitrate: number;
  width: number;
  height: number;
  frameRate: number;
}

export const UNLIMITED: Plan = {
  connections: 0,
  totalBitrate: 0,
  bitrate: 0,
  audioBitrate: 0,
  width: 0,
  height: 0,
  frameRate: 0,
};

/** Issue names in the order the client shows them. */
export type Issue =
  | 'width'
  | 'height'
  | 'portrait'
  | 'bitrate'
  | 'frameRate'
  | 'audioBitrate'
  | 'totalBitrate'
  | 'connections';

const over = (value: number, limit: number) => limit > 0 && value > limit;

/**
 * Per-stream limits. Width and height limits describe landscape; a portrait
 * stream (height > width) is checked against the swapped limits and a failure
 * then also names `portrait`.
 */
export function streamIssues(plan: Plan, stream: Stream): Issue[] {
  const issues: Issue[] = [];
  const portrait = stream.height > stream.width;
  const [maxWidth, maxHeight] = portrait ? [plan.height, plan.width] : [plan.width, plan.height];
  if (over(stream.width, maxWidth)) issues.push('width');
  if (over(stream.height, maxHeight)) issues.push('height');
  if (portrait && issues.length > 0) issues.push('portrait');
  if (over(stream.bitrate, plan.bitrate)) issues.push('bitrate');
  if (over(stream.frameRate, plan.frameRate)) issues.push('frameRate');
  if (over(stream.audioBitrate, plan.audioBitrate)) issues.push('audioBitrate');
  return issues;
}

const STREAM_PARAMS = ['width', 'height', 'bitrate', 'frameRate', 'audioBitrate'] as const;

/**
 * The stream parameters a publish left out that the plan needs: a plan that
 * limits resolution, frame rate or bitrate (per stream or in total) checks
 * and counts what the stream states, so a stream that states nothing (0 kbps)
 * cannot slip under it. Width, height, bitrate and frame rate must be above
 * 0; an audio bitrate may be 0 (no audio). `params` is the client's own.
 */
export function missingStreamParams(plan: Plan, params: unknown): (typeof STREAM_PARAMS)[number][] {
  const given = typeof params === 'object' && params !== null ? (params as Record<string, unknown>) : {};
  const stated = (key: string, positive: boolean) => {
    const value = Number(given[key] ?? (key === 'frameRate' ? given.framerate : undefined));
    return given[key] !== '' && Number.isFinite(value) && (positive ? value > 0 : value >= 0);
  };
  const needed = {
    width: plan.width > 0 || plan.height > 0,
    height: plan.width > 0 || plan.height > 0,
    bitrate: plan.bitrate > 0 || plan.totalBitrate > 0,
    frameRate: plan.frameRate > 0,
    audioBitrate: plan.audioBitrate > 0 || plan.totalBitrate > 0,
  };
  return STREAM_PARAMS.filter((key) => needed[key] && !stated(key, key !== 'audioBitrate'));
}

/** The plan-limit usage of one peer: its channel's video plus audio bitrate. */
export const streamCost = (stream: Stream | undefined) => (stream ? stream.bitrate + stream.audioBitrate : 0);

/** Whether adding `added` kbps keeps an account within its `totalBitrate`. */
export function fitsTotalBitrate(plan: Pick<Plan, 'totalBitrate'>, used: number, added: number): boolean {
  return plan.totalBitrate <= 0 || added <= 0 || used + added <= plan.totalBitrate;
}

export type ConnectRefusal = 'connections' | 'totalBitrate';

/** Whether one more socket may connect: below `connections`, and below `totalBitrate`. */
export function connectRefusal(
  plan: Pick<Plan, 'connections' | 'totalBitrate'>,
  connections: number,
  usedBitrate: number,
): ConnectRefusal | null {
  if (plan.connections > 0 && connections >= plan.connections) return 'connections';
  if (plan.totalBitrate > 0 && usedBitrate >= plan.totalBitrate) return 'totalBitrate';
  return null;
}
