// Plans: their schema, and their limits as pure functions (plan, usage,
// stream) -> the issue names the client sees in `Unfit: ...`. No I/O, no emits.
import { z } from 'zod';
import { numeric, STREAM_FIELDS, streamFields, streamShape, type Stream, type StreamField } from './protocol';

// A null limit is no limit, like a missing one.
const limit = z.preprocess((v) => v ?? 0, numeric(Number.MAX_VALUE));

/** A plan as its JSON properties state it: the account's connections and total bitrate, then a limit per stream field. */
export const planSchema = z
  .looseObject({ connections: limit.optional(), totalBitrate: limit.optional(), ...streamShape(limit.optional()) })
  .transform((p) => ({ connections: p.connections ?? 0, totalBitrate: p.totalBitrate ?? 0, ...streamFields(p) }));

/** A plan's limits; 0 means unlimited. */
export type Plan = z.output<typeof planSchema>;

export const UNLIMITED: Plan = planSchema.parse({});

/** Issue names in the order the client shows them. */
export type Issue = 'width' | 'height' | 'portrait' | 'bitrate' | 'frameRate' | 'audioBitrate' | 'totalBitrate' | 'connections';

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

/**
 * The stream parameters a publish left out that the plan needs: a plan that
 * limits resolution, frame rate or bitrate (per stream or in total) checks
 * and counts what the stream states, so a stream that states nothing (0 kbps)
 * cannot slip under it. Width, height, bitrate and frame rate must be above
 * 0; an audio bitrate may be 0 (no audio). `params` is the client's own.
 */
export function missingStreamParams(plan: Plan, params: unknown): StreamField[] {
  const given = typeof params === 'object' && params !== null ? (params as Record<string, unknown>) : {};
  const stated = (key: string, positive: boolean) => {
    const value = Number(given[key] ?? (key === 'frameRate' ? given.framerate : undefined));
    return given[key] !== '' && Number.isFinite(value) && (positive ? value > 0 : value >= 0);
  };
  const needed: Record<StreamField, boolean> = {
    width: plan.width > 0 || plan.height > 0,
    height: plan.width > 0 || plan.height > 0,
    bitrate: plan.bitrate > 0 || plan.totalBitrate > 0,
    frameRate: plan.frameRate > 0,
    audioBitrate: plan.audioBitrate > 0 || plan.totalBitrate > 0,
  };
  return STREAM_FIELDS.filter((key) => needed[key] && !stated(key, key !== 'audioBitrate'));
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
