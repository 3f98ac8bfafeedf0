// connect: CPU per accepted connection while ramping up, and RSS per idle
// connection once the sockets sit idle.
import type { Job, Outcome, Window } from '../profile';
import { cpuTimes, rssKiB } from '../proc';
import type { Wire } from '../wire';
import { connectIdle, monotonicUs, sleep } from './common';

/** RSS once it has stopped moving (two reads 250 ms apart within 1%), after `settleMs`. */
async function settledRss(pid: number, settleMs: number): Promise<number> {
  await sleep(settleMs);
  let last = rssKiB(pid);
  for (let i = 0; i < 8; i++) {
    await sleep(250);
    const now = rssKiB(pid);
    if (Math.abs(now - last) <= last * 0.01) return now;
    last = now;
  }
  return last;
}

export async function connect(job: Job): Promise<Outcome> {
  const { counts, concurrency, settleMs } = job.profile.connect;
  const figures: Record<string, number> = {};
  const windows: Window[] = [];
  // Warm-up: the first connections load code and grow pools once.
  for (const w of await connectIdle(job, 50, concurrency)) w.close();
  const rss0 = await settledRss(job.pid, settleMs);

  const wires: Wire[] = [];
  let rampCpu = 0;
  let rampSystem = 0;
  let rampMs = 0;
  for (const count of counts) {
    const cpu0 = cpuTimes(job.pid);
    const t0 = performance.now();
    const startUs = monotonicUs();
    wires.push(...(await connectIdle(job, count - wires.length, concurrency)));
    windows.push({ label: `ramp to ${count}`, startUs, endUs: monotonicUs() });
    rampMs += performance.now() - t0;
    const cpu1 = cpuTimes(job.pid);
    rampCpu += cpu1.user + cpu1.system - cpu0.user - cpu0.system;
    rampSystem += cpu1.system - cpu0.system;
    figures[`rssPerIdleConnectionKiB@${count}`] = ((await settledRss(job.pid, settleMs)) - rss0) / count;
  }
  figures.cpuPerConnectionUs = (rampCpu * 1000) / wires.length;
  for (const w of wires) w.close();
  return {
    figures,
    windows,
    notes: { connectionsPerSec: (wires.length * 1000) / rampMs, serverSystemCpuPct: (rampSystem / rampCpu) * 100, baseRssMiB: rss0 / 1024 },
  };
}
