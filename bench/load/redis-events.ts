// redisEvents: Redis round trips per signaling event, one kind of event at a
// time, counted exactly with MONITOR (bench/load/redis.ts): N complete
// handshakes, then N publishes, N subscribes, N messagePeer and N
// disconnects. Broadcasters are on job.url and players on job.playerUrl, so
// with two instances every notice and message crosses between them. What
// goes on without events (heartbeats, the adapter's own) is counted over an
// idle interval and taken off in proportion to each phase's length.
import { candidate, STREAM } from '../messages';
import type { Job, Outcome, RedisEvent } from '../profile';
import { messageType, type Wire } from '../wire';
import { connectIdle, sleep, until } from './common';
import { Pair, playerSide } from './join';
import { RedisTap, sentTotal, type Tally } from './redis';

/** Time for the last replies of a phase (the adapter's next XREAD) to reach Redis. */
const SETTLE_MS = 250;

/** Runs `count` tasks, `workers` at a time; each calls its `done` once finished. */
async function inTurn(count: number, workers: number, task: (i: number, done: () => void) => void) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(workers, count) }, async () => {
      while (next < count) {
        const i = next++;
        await new Promise<void>((done) => task(i, done));
      }
    }),
  );
}

export async function redisEvents(job: Job): Promise<Outcome> {
  if (!job.redisUrl || !job.events) throw new Error('redisEvents needs redisUrl and events');
  const { count, handshakes, workers } = job.events;
  const [broadcasters, players, hsBroadcasters, hsPlayers] = await Promise.all([
    connectIdle(job, count, 32),
    connectIdle(playerSide(job), count, 32),
    connectIdle(job, handshakes, 32),
    connectIdle(playerSide(job), handshakes, 32),
  ]);
  const tap = await RedisTap.open(job.redisUrl, job.pids ?? [job.pid]);
  const tallies = new Map<RedisEvent, Tally>();
  try {
    // Handshakes as in the join runs: a pair's second one, so its previous channel is left.
    const pairs = hsBroadcasters.map((b, i) => new Pair(b, hsPlayers[i] as Wire, 100_000 + i));
    await inTurn(handshakes, workers, (i, done) => pairs[i]?.handshake(done));
    await sleep(SETTLE_MS);
    await tap.mark();
    await inTurn(handshakes, workers, (i, done) => pairs[i]?.handshake(done));
    await sleep(SETTLE_MS);
    tallies.set('handshake', await tap.mark());

    // The other events one kind at a time, each kind counted until the last reply.
    let heard = 0;
    const phase = async (event: RedisEvent, send: (i: number) => void) => {
      heard = 0;
      for (let i = 0; i < count; i++) send(i);
      await until(() => heard >= count, 30_000, `${count} replies to ${event}`);
      await sleep(SETTLE_MS);
      tallies.set(event, await tap.mark());
    };
    const expect = (wires: Wire[], type: string) => {
      for (const w of wires) w.onEvent = (text) => void (messageType(text) === type && heard++);
    };
    expect(broadcasters, 'peers');
    await phase('publish', (i) => broadcasters[i]?.emit('publish', `ev-${i}-b`, `ev-${i}`, STREAM));
    expect(broadcasters, 'peer');
    await phase('subscribe', (i) => players[i]?.emit('subscribe', `ev-${i}-p`, `ev-${i}`));
    expect(players, 'candidate');
    await phase('messagePeer', (i) =>
      broadcasters[i]?.emit('messagePeer', { from: `ev-${i}-b`, target: `ev-${i}-p`, type: 'candidate', candidate: candidate(i) }),
    );
    // A player gone: its connection and registration are released, and its broadcaster hears it leave.
    expect(broadcasters, 'close');
    await phase('disconnect', (i) => players[i]?.close());

    const busyMs = [...tallies.values()].reduce((sum, t) => sum + t.ms, 0);
    await sleep(busyMs);
    const idle = await tap.mark();

    const figures: Record<string, number> = {};
    const notes: Record<string, number> = { idleRoundTripsPerSec: (sentTotal(idle) * 1000) / idle.ms };
    for (const [event, tally] of tallies) {
      const n = event === 'handshake' ? handshakes : count;
      const scale = tally.ms / idle.ms;
      figures[`roundTrips.${event}`] = (sentTotal(tally) - sentTotal(idle) * scale) / n;
      figures[`scriptCommands.${event}`] = (tally.inScripts - idle.inScripts * scale) / n;
      for (const [command, calls] of tally.sent) notes[`${event}.${command}`] = (calls - (idle.sent.get(command) ?? 0) * scale) / n;
    }
    return { figures, notes, windows: [] };
  } finally {
    tap.close();
    for (const w of [...broadcasters, ...players, ...hsBroadcasters, ...hsPlayers]) w.close();
  }
}
