// The load generator: one process per job, started by bench/run.ts (pinned to
// its own core). It gets the job over IPC, runs it, sends the figures back
// and exits; it also exits when the bench that started it goes away.
import type { Job, JobResult, Outcome } from '../profile';
import { connect } from './connect';
import { join } from './join';
import { hold, massDisconnect } from './mass-disconnect';
import { reconnect } from './reconnect';
import { redisEvents } from './redis-events';
import { relay } from './relay';

const scenarios: Record<Job['scenario'], (job: Job) => Promise<Outcome>> = {
  connect,
  connectRsa: connect,
  reconnect,
  relay,
  join,
  massDisconnect,
  redisEvents,
};

async function run(job: Job): Promise<JobResult> {
  try {
    return { ok: true, ...(await scenarios[job.scenario](job)) };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) };
  }
}

process.once('disconnect', () => process.exit(0));
process.once('message', (message: Job | { hold: Job }) => {
  if ('hold' in message) {
    hold(message.hold).catch((err: unknown) => {
      console.error(err);
      process.exit(1);
    });
    return;
  }
  void run(message).then((result) => process.send?.(result, () => process.exit(0)));
});
