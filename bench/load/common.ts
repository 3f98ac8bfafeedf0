// Small pieces every scenario of the load generator uses.
import { existsSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Job } from '../profile';
import { messageType, openMany, type Wire, type WireOptions } from '../wire';

export { sleep };

/** CLOCK_MONOTONIC in µs: the clock of a V8 CPU profile. */
export const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

export const wireOptions = (job: Job): WireOptions => ({ url: job.url, token: job.token, ca: job.ca });

/** The p-th percentile (0..100) of the first `count` values. */
export function percentile(values: Float64Array, count: number, p: number): number {
  if (count === 0) return Number.NaN;
  const sorted = values.slice(0, count).sort();
  return sorted[Math.min(count - 1, Math.max(0, Math.ceil((p / 100) * count) - 1))] as number;
}

/** Waits until `done()` holds, checking every `everyMs`; throws after `ms`. */
export async function until(done: () => boolean, ms: number, what: string, everyMs = 5): Promise<void> {
  const deadline = performance.now() + ms;
  while (!done()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Worst event-loop delay (ms) the server saw since the last call: signals it and reads its answer. */
export async function loopDelay(job: Job): Promise<number> {
  const read = (): { seq: number; maxMs: number } =>
    existsSync(job.loopDelayFile)
      ? (JSON.parse(readFileSync(job.loopDelayFile, 'utf8')) as { seq: number; maxMs: number })
      : { seq: 0, maxMs: 0 };
  const before = read().seq;
  process.kill(job.pid, 'SIGUSR2');
  let answer = read();
  await until(() => (answer = read()).seq !== before, 10_000, 'the server to report its event-loop delay');
  return answer.maxMs;
}

/**
 * Registers connected sockets as idle peers, channel after channel of
 * `sizes(channel)` members: one broadcaster, then players; resolves once every
 * broadcaster has heard of every player.
 */
export async function registerChannels(wires: Wire[], sizes: (channel: number) => number, prefix: string, stream: object) {
  let peersReplies = 0;
  let notices = 0;
  let expectedNotices = 0;
  const broadcasters: Wire[] = [];
  for (let i = 0, channel = 0; i < wires.length; channel++) {
    const members = wires.slice(i, i + sizes(channel));
    i += members.length;
    const [broadcaster, ...players] = members as [Wire, ...Wire[]];
    const name = `${prefix}-${channel}`;
    broadcaster.onEvent = (text) => {
      const type = messageType(text);
      if (type === 'peers') {
        peersReplies++;
        players.forEach((p, k) => p.emit('subscribe', `${name}-p${k}`, name));
      } else if (type === 'peer') notices++;
    };
    for (const p of players) p.onEvent = () => {};
    expectedNotices += players.length;
    broadcasters.push(broadcaster);
    broadcaster.emit('publish', `${name}-b`, name, stream);
  }
  await until(() => peersReplies === broadcasters.length && notices >= expectedNotices, 60_000, `${wires.length} peers to register`);
  for (const w of wires) w.onEvent = () => {};
}

export async function connectIdle(job: Job, count: number, concurrency: number): Promise<Wire[]> {
  return openMany(count, concurrency, wireOptions(job), performance.now() + 120_000);
}
