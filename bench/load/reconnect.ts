// reconnect: CPU per reconnect of clients that had been connected before,
// as after a network change or a page reload. With `job.resume` each client
// offers the TLS session of its first connection (as a browser does, or
// socket.io-client with a shared https.Agent); without, it pays a full
// handshake again (socket.io-client's default).
import type { Job, Outcome, Window } from '../profile';
import { cpuTimes } from '../proc';
import { openWire, type Wire } from '../wire';
import { monotonicUs, sleep, wireOptions } from './common';

/** Opens one connection per session slot, `concurrency` at a time, keeping each slot's newest session. */
async function openAll(job: Job, sessions: (Buffer | undefined)[], concurrency: number, resumed: { count: number }): Promise<Wire[]> {
  const wires: Wire[] = [];
  let next = 0;
  const deadline = performance.now() + 120_000;
  const worker = async () => {
    while (next < sessions.length) {
      if (performance.now() > deadline) throw new Error(`only ${wires.length} of ${sessions.length} reconnects before the deadline`);
      const slot = next++;
      let counted = false;
      const wire = await openWire({
        ...wireOptions(job),
        session: job.resume ? sessions[slot] : undefined,
        onTls: ({ resumed: wasResumed, session }) => {
          if (session) sessions[slot] = session;
          if (wasResumed && !counted) {
            counted = true;
            resumed.count++;
          }
        },
      });
      wires.push(wire);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, sessions.length) }, worker));
  return wires;
}

export async function reconnect(job: Job): Promise<Outcome> {
  const { counts, concurrency, settleMs } = job.profile.connect;
  const clients = counts[0] ?? 0;
  const sessions: (Buffer | undefined)[] = Array.from({ length: clients }, () => undefined);
  // First visits: full handshakes, each client keeping the ticket it is sent (TLS 1.3 sends it after the handshake).
  const first = await openAll(job, sessions, concurrency, { count: 0 });
  await sleep(settleMs);
  for (const w of first) w.close();
  await sleep(settleMs);

  const resumed = { count: 0 };
  const cpu0 = cpuTimes(job.pid);
  const startUs = monotonicUs();
  const t0 = performance.now();
  const again = await openAll(job, sessions, concurrency, resumed);
  const ms = performance.now() - t0;
  const windows: Window[] = [{ label: `${clients} reconnects`, startUs, endUs: monotonicUs() }];
  const cpu1 = cpuTimes(job.pid);
  for (const w of again) w.close();
  return {
    figures: { cpuPerReconnectUs: ((cpu1.user + cpu1.system - cpu0.user - cpu0.system) * 1000) / clients },
    windows,
    notes: {
      resumedPct: (resumed.count / clients) * 100,
      reconnectsPerSec: (clients * 1000) / ms,
      ticketsKeptPct: (sessions.filter(Boolean).length / clients) * 100,
    },
  };
}
