// mass disconnect: a separate process holds the peers, registered in channels
// of two to four; it is killed (SIGKILL), so every socket drops at once as in
// a network failure. Meanwhile GET / is probed on kept-alive connections.
import { fork } from 'node:child_process';
import https from 'node:https';
import { STREAM } from '../messages';
import type { Job, Outcome } from '../profile';
import { cpuMs, peakRssKiB, resetPeakRss, rssKiB } from '../proc';
import { connectIdle, loopDelay, monotonicUs, registerChannels, sleep, until } from './common';

/** The holder's side: connect, register, report, then wait to be killed. */
export async function hold(job: Job) {
  const wires = await connectIdle(job, job.profile.massDisconnect.peers, 64);
  await registerChannels(wires, (channel) => 2 + (channel % 3), 'drop', STREAM);
  process.send?.('ready');
}

interface Probe {
  sent: number;
  answered: number;
}

export async function massDisconnect(job: Job): Promise<Outcome> {
  const m = job.profile.massDisconnect;
  const holder = fork(require.resolve('./index'), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const agent = new https.Agent({ keepAlive: true, maxSockets: 4, ca: job.ca });
  let probing: NodeJS.Timeout | undefined;
  try {
    let ready = false;
    holder.on('message', (msg) => (ready ||= msg === 'ready'));
    holder.send({ hold: job });
    await until(() => ready || holder.exitCode !== null, 180_000, 'the peers to register', 50);
    if (!ready) throw new Error('the process holding the peers failed');
    await sleep(500);

    const probes: Probe[] = [];
    probing = setInterval(() => {
      if (probes.length > 20_000) return;
      const probe = { sent: performance.now(), answered: Number.NaN };
      probes.push(probe);
      https
        .get(`${job.url}/`, { agent }, (res) => {
          res.resume();
          res.on('end', () => (probe.answered = performance.now()));
        })
        // A failed probe counts as answered when it failed.
        .on('error', () => (probe.answered = performance.now()));
    }, m.probeEveryMs);

    // The probes' own cost, to leave out of the drop's.
    await sleep(300);
    const idle0 = cpuMs(job.pid);
    const idleStart = performance.now();
    await sleep(1000);
    const idleRate = (cpuMs(job.pid) - idle0) / (performance.now() - idleStart);

    await loopDelay(job); // starts a fresh maximum
    const peakReset = resetPeakRss(job.pid);
    let rssMax = rssKiB(job.pid);
    const cpu0 = cpuMs(job.pid);
    const t0 = performance.now();
    const startUs = monotonicUs();
    holder.kill('SIGKILL');

    // Done once the server's CPU is back to the probes' level for half a second.
    let last = cpu0;
    let quiet = 0;
    while (performance.now() - t0 < m.maxObserveMs && quiet < 2) {
      await sleep(250);
      const now = cpuMs(job.pid);
      quiet = (now - last) / 250 <= idleRate + 0.02 && performance.now() - t0 > 500 ? quiet + 1 : 0;
      last = now;
      rssMax = Math.max(rssMax, rssKiB(job.pid));
    }
    const tEnd = performance.now();
    const window = { label: 'drop', startUs, endUs: monotonicUs() };
    const cpu = last - cpu0 - idleRate * (tEnd - t0);
    clearInterval(probing);
    probing = undefined;
    await until(() => probes.every((p) => !Number.isNaN(p.answered)), 3000, 'the last probes').catch(() => undefined);

    // Answering again: after the last probe that took the bound or longer (one never answered counts as answered now).
    const end = performance.now();
    let recovery = 0;
    for (const p of probes) {
      const answered = Number.isNaN(p.answered) ? end : p.answered;
      if (answered >= t0 && answered - p.sent >= m.answerBoundMs) recovery = Math.max(recovery, answered - t0);
    }
    const figures = {
      cpuMs: Math.max(0, cpu),
      recoveryMs: recovery,
      maxEventLoopDelayMs: await loopDelay(job),
      peakRssMiB: (peakReset ? peakRssKiB(job.pid) : rssMax) / 1024,
    };
    return { figures, notes: { observedMs: tEnd - t0, probeCpuPct: idleRate * 100 }, windows: [window] };
  } finally {
    if (probing) clearInterval(probing);
    agent.destroy();
    holder.kill('SIGKILL');
  }
}
