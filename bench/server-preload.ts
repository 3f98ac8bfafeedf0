// Preloaded (`node --require`) into both servers alike, so neither's code is
// touched: on SIGUSR2 it writes the worst event-loop delay since the last
// SIGUSR2 to BENCH_LOOP_DELAY_FILE, and it exits with the bench that started
// it (the IPC channel closes), so no server outlives a killed bench.
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const file = process.env.BENCH_LOOP_DELAY_FILE;
if (file) {
  rmSync(file, { force: true }); // a previous server's answers would read as this one's
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  let seq = 0;
  process.on('SIGUSR2', () => {
    seq++;
    // Written aside and renamed, so a reader never sees half a file.
    writeFileSync(`${file}.new`, JSON.stringify({ seq, maxMs: histogram.max / 1e6 }));
    renameSync(`${file}.new`, file);
    histogram.reset();
  });
}
if (process.connected) process.once('disconnect', () => process.exit(0));
