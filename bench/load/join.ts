// join: complete signaling handshakes (publish, subscribe, peer notice,
// offer, answer, two candidates each way) back to back, with many idle
// sockets connected, to expose per-event work that grows with the
// connection count. `workers` handshakes run at once; each takes the
// broadcaster/player pair idle the longest from a pool, so every socket sends
// a few dozen events a second at most, as a browser would, not hundreds.
// With a second instance (job.playerUrl) every player and half the idle
// sockets are on it, so every handshake crosses instances; with Redis
// (job.redisUrl) its commands and CPU are read too.
import { candidate, sdp, STREAM } from '../messages';
import type { Job, Outcome, Window } from '../profile';
import { cpuMs } from '../proc';
import { throttleCounts, type ThrottleCounts } from '../cgroup';
import { messageType, openMany, type Wire } from '../wire';
import { connectIdle, monotonicUs, registerChannels, sleep, wireOptions } from './common';
import { minus, RedisCounters, statsMinus } from './redis';

/** One broadcaster/player pair; each handshake uses a new channel (registering elsewhere leaves the old one). */
export class Pair {
  private round = 0;
  private channel = '';
  private got = { answer: false, offer: false, broadcasterCandidates: 0, playerCandidates: 0 };
  private done: (() => void) | undefined;
  /** The last events each side heard (`b:peers`, `p:offer`), for a report when a handshake stalls. */
  private heard: string[] = [];
  private readonly bName: string;
  private readonly pName: string;
  private readonly offer: string;
  private readonly answer: string;
  private readonly toPlayer: string;
  private readonly toBroadcaster: string;

  constructor(
    private readonly broadcaster: Wire,
    private readonly player: Wire,
    private readonly id: number,
  ) {
    const [b, p] = [(this.bName = `join-${id}-b`), (this.pName = `join-${id}-p`)];
    this.offer = JSON.stringify(['messagePeer', { from: b, target: p, type: 'offer', content: { type: 'offer', sdp: sdp('offer', id) } }]);
    this.answer = JSON.stringify([
      'messagePeer',
      { from: p, target: b, type: 'answer', content: { type: 'answer', sdp: sdp('answer', id) } },
    ]);
    this.toPlayer = JSON.stringify(['messagePeer', { from: b, target: p, type: 'candidate', candidate: candidate(id) }]);
    this.toBroadcaster = JSON.stringify(['messagePeer', { from: p, target: b, type: 'candidate', candidate: candidate(id + 1) }]);
    broadcaster.onEvent = (text) => this.onBroadcaster(this.hear('b', text));
    player.onEvent = (text) => this.onPlayer(this.hear('p', text));
  }

  private hear(side: 'b' | 'p', text: string): string {
    const type = messageType(text);
    // An event other than `message` (an error) is kept whole: it says why.
    this.heard.push(`${side}:${text.startsWith('42["message"') ? type : text.slice(2, 200)}`);
    if (this.heard.length > 6) this.heard.shift();
    return type;
  }

  /** Where an unfinished handshake stands. */
  describe(): string {
    const g = this.got;
    const open = `${this.broadcaster.open ? 'open' : 'CLOSED'}/${this.player.open ? 'open' : 'CLOSED'}`;
    return `pair ${this.id} on ${this.channel} (sockets ${open}): offer ${g.offer}, answer ${g.answer}, candidates ${g.broadcasterCandidates}+${g.playerCandidates}; heard ${this.heard.join(' ') || 'nothing'}`;
  }

  get busy() {
    return this.done !== undefined;
  }

  /** Runs one handshake; `done` is called once both sides have everything. */
  handshake(done: () => void) {
    this.done = done;
    this.channel = `join-${this.id}-${this.round++}`;
    this.got = { answer: false, offer: false, broadcasterCandidates: 0, playerCandidates: 0 };
    this.broadcaster.emit('publish', this.bName, this.channel, STREAM);
  }

  private onBroadcaster(type: string) {
    if (type === 'peers') this.player.emit('subscribe', this.pName, this.channel);
    else if (type === 'peer') {
      this.broadcaster.sendRaw(this.offer);
      this.broadcaster.sendRaw(this.toPlayer);
      this.broadcaster.sendRaw(this.toPlayer);
    } else if (type === 'answer') this.got.answer = true;
    else if (type === 'candidate') this.got.broadcasterCandidates++;
    this.check();
  }

  private onPlayer(type: string) {
    // The player also hears the close of its previous channel; nothing to do.
    if (type === 'offer') {
      this.got.offer = true;
      this.player.sendRaw(this.answer);
      this.player.sendRaw(this.toBroadcaster);
      this.player.sendRaw(this.toBroadcaster);
    } else if (type === 'candidate') this.got.playerCandidates++;
    this.check();
  }

  private check() {
    const g = this.got;
    if (!this.done || !(g.answer && g.offer && g.broadcasterCandidates === 2 && g.playerCandidates === 2)) return;
    const done = this.done;
    this.done = undefined;
    done();
  }
}

/** The job with players' connections going to the second instance, if any. */
export const playerSide = (job: Job): Job => ({ ...job, url: job.playerUrl ?? job.url });

/**
 * `count` sockets, in channels of two (sockets 2k and 2k + 1): with a second
 * instance, every other one is on it (so channels of two cross instances);
 * with `instanceUrls` and `tokens`, as the Job says.
 */
async function connectSpread(job: Job, count: number): Promise<Wire[]> {
  if (job.instanceUrls || job.tokens) {
    const urls = job.instanceUrls ?? [job.url];
    const tokens = job.tokens ?? [job.token];
    return openMany(
      count,
      64,
      (i) => {
        const k = Math.floor(i / 2);
        return { ...wireOptions(job), url: urls[(k + (i % 2)) % urls.length] as string, token: tokens[k % tokens.length] as string };
      },
      performance.now() + 120_000,
    );
  }
  if (!job.playerUrl) return connectIdle(job, count, 64);
  const [first, second] = await Promise.all([
    connectIdle(job, Math.ceil(count / 2), 32),
    connectIdle(playerSide(job), Math.floor(count / 2), 32),
  ]);
  return first.flatMap((w, i) => (second[i] ? [w, second[i]] : [w]));
}

/** The share of periods (%) in which the most throttled process hit its CPU quota. */
function mostThrottled(before: ThrottleCounts[], after: ThrottleCounts[]): number {
  const shares = after.map((b, i) => {
    const a = before[i] as ThrottleCounts;
    const periods = b.periods - a.periods;
    return periods > 0 ? ((b.throttled - a.throttled) / periods) * 100 : 0;
  });
  return Math.max(...shares);
}

const serverCpuMs = (job: Job) => (job.pids ?? [job.pid]).reduce((sum, pid) => sum + cpuMs(pid), 0);

export async function join(job: Job): Promise<Outcome> {
  const p = job.profile.join;
  const pairWires = await connectSpread(job, p.pairs * 2);
  const pairs = Array.from({ length: p.pairs }, (_, i) => new Pair(pairWires[2 * i] as Wire, pairWires[2 * i + 1] as Wire, i));
  const idle = [...pairs];
  const redis = job.redisUrl ? await RedisCounters.open(job.redisUrl) : undefined;
  let completed = 0;
  let running = false;
  let lastProgress: number;
  let active = 0;
  const startOne = () => {
    const pair = idle.shift();
    if (!pair) return;
    active++;
    pair.handshake(() => {
      completed++;
      active--;
      lastProgress = performance.now();
      idle.push(pair);
      if (running) startOne();
    });
  };

  const background: Wire[] = [];
  const figures: Record<string, number> = {};
  const notes: Record<string, number> = {};
  const windows: Window[] = [];
  for (const [level, count] of p.background.entries()) {
    const added = await connectSpread(job, count - background.length);
    await registerChannels(added, () => 2, `idle${background.length}`, STREAM);
    background.push(...added);
    await sleep(300);

    running = true;
    lastProgress = performance.now();
    for (let i = 0; i < p.workers; i++) startOne();
    // The first level also warms the server's JIT up.
    await sleep(level === 0 ? p.warmupMs * 3 : p.warmupMs);
    // Pairs take turns in order, so once pairs + workers have completed, every first call set-up has.
    while (p.everyPairOnce && completed < p.pairs + p.workers) {
      await sleep(50);
      if (performance.now() - lastProgress > 10_000) throw new Error('no handshake completed for 10 s');
    }
    const stats0 = job.commandStats ? await redis?.commandStats() : undefined;
    const statsAt0 = performance.now();
    const redis0 = await redis?.read();
    const throttle0 = job.cpuStatFiles?.map(throttleCounts);
    const done0 = completed;
    const cpu0 = serverCpuMs(job);
    const load0 = process.cpuUsage();
    const t0 = performance.now();
    const startUs = monotonicUs();
    const deadline = performance.now() + p.windowMs;
    while (performance.now() < deadline) {
      await sleep(Math.min(100, Math.max(1, deadline - performance.now())));
      if (performance.now() - lastProgress > 10_000) throw new Error('no handshake completed for 10 s');
    }
    const done = completed - done0;
    const elapsed = performance.now() - t0;
    const serverCpu = serverCpuMs(job) - cpu0;
    const load = process.cpuUsage(load0);
    const redis1 = await redis?.read();
    const throttle1 = job.cpuStatFiles?.map(throttleCounts);
    const stats1 = stats0 ? await redis?.commandStats() : undefined;
    const statsMs = performance.now() - statsAt0;
    windows.push({ label: `${count} idle`, startUs, endUs: monotonicUs() });
    running = false;
    const stopBy = performance.now() + 10_000;
    while (active > 0 && performance.now() < stopBy) await sleep(10); // the handshakes in flight finish
    if (active > 0) {
      const stuck = pairs.filter((pair) => pair.busy).slice(0, 4);
      throw new Error(`${active} handshakes never finished (${completed} had); ${stuck.map((pair) => pair.describe()).join('; ')}`);
    }
    figures[`handshakesPerSec@${count}idle`] = (done * 1000) / elapsed;
    figures[`cpuPerHandshakeUs@${count}idle`] = (serverCpu * 1000) / done;
    notes[`serverCpuPct@${count}idle`] = (serverCpu / elapsed) * 100;
    notes[`loadGeneratorCpuPct@${count}idle`] = ((load.user + load.system) / 1000 / elapsed) * 100;
    if (throttle0 && throttle1) figures[`throttledPct@${count}idle`] = mostThrottled(throttle0, throttle1);
    if (redis && redis0 && redis1) {
      // Heartbeats and the adapter's own traffic go on without handshakes: an
      // idle interval as long as the window is read and taken off.
      const busy = minus(redis1, redis0);
      await sleep(300);
      const idle0 = await redis.read();
      await sleep(p.windowMs);
      const quiet = minus(await redis.read(), idle0);
      // As rates: the two readings take a while on a busy Redis (longer still under a CPU quota), and
      // handshakes go on meanwhile, so Redis's interval is longer than the window whose handshakes are counted.
      const perHandshake = (busyTotal: number, quietTotal: number) => (busyTotal / busy.at - quietTotal / quiet.at) / (done / elapsed);
      figures[`redisCommandsPerHandshake@${count}idle`] = perHandshake(busy.commands, quiet.commands);
      figures[`redisCpuPerHandshakeUs@${count}idle`] = perHandshake(busy.cpuMs, quiet.cpuMs) * 1000;
      notes[`redisIdleCpuPct@${count}idle`] = (quiet.cpuMs / quiet.at) * 100;
      // Each redis-server's share, to see whether the load spread evenly over the shards.
      if (busy.nodeCpuMs.length > 1)
        busy.nodeCpuMs.forEach((ms, i) => (notes[`redisNode${i + 1}CpuPct@${count}idle`] = (ms / busy.at) * 100));
      notes[`redisCpuPct@${count}idle`] = (busy.cpuMs / busy.at) * 100;
      // The busiest redis-server, in % of one core: at a CPU quota, the quota when Redis is the bottleneck.
      figures[`redisBusiestCpuPct@${count}idle`] = (Math.max(...busy.nodeCpuMs) / busy.at) * 100;
      notes[`redisIdleCommandsPerSec@${count}idle`] = (quiet.commands * 1000) / quiet.at;
      if (stats0 && stats1) {
        // Per handshake, as rates: the readings on a throttled Redis take a while, and handshakes go on
        // meanwhile (the idle interval is not taken off: a few commands per second).
        const perHs = (total: number) => total / statsMs / (done / elapsed);
        for (const [name, s] of [...statsMinus(stats1, stats0)].sort((a, b) => b[1].usec - a[1].usec)) {
          notes[`cmd.${name}.calls`] = perHs(s.calls);
          notes[`cmd.${name}.usec`] = perHs(s.usec);
          notes[`cmd.${name}.usecPerCall`] = s.usec / s.calls;
        }
      }
    }
  }
  redis?.close();
  for (const w of [...pairWires, ...background]) w.close();
  return { figures, notes, windows };
}
