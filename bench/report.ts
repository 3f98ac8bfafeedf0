// Figures as the bench reports them, shared by the single-server run and the
// two-instance run: medians of rounds, rounded results, table cells, and the
// collapsed blocks of the markdown page; and the single-server run's table,
// scenario notes and kept CPU profiles.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { summarize } from './cpu-profile';
import { metrics, type Metric, type Outcome, type Profile, type Scenario } from './profile';

export const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

/** A result as stored in the JSON: 4 significant figures or so. */
export const round = (value: number) => (Math.abs(value) >= 100 ? Math.round(value * 10) / 10 : Math.round(value * 1000) / 1000);

/** A table cell. */
export function format(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs >= 1000) return Math.round(value).toLocaleString('en-US');
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/** A markdown table of a header row and rows; the columns from `left` on are right-aligned. */
export function markdownTable(rows: string[][], left = 1): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length))) ?? [];
  const line = (row: string[]) =>
    `| ${row.map((cell, i) => (i >= left ? cell.padStart(widths[i] as number) : cell.padEnd(widths[i] as number))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i >= left ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(rows[0] ?? []), rule, ...rows.slice(1).map(line)].join('\n');
}

/** A collapsed markdown block of list items. */
export const details = (summary: string, items: string[]) => [
  `<details><summary>${summary}</summary>`,
  '',
  ...items.map((item) => `- ${item}`),
  '',
  '</details>',
  '',
];

/** A ratio of this server's figure to the baseline's, > 1 when this server does worse. */
export function ratioOf(metric: Metric, server: number, baseline: number): number {
  const floor = metric.floor ?? 0;
  const [s, b] = [Math.max(server, floor), Math.max(baseline, floor)];
  if (s === 0 && b === 0) return 1;
  return metric.higherIsBetter ? b / s : s / b;
}

export type Results = Record<string, Record<string, { server: number; baseline: number; ratio: number }>>;

/** The medians of every scenario, as a markdown table with each target met or missed. */
export function table(profile: Profile, results: Results, names: { server: string; baseline: string }): string {
  const rows: string[][] = [['scenario', 'metric', names.server, names.baseline, 'ratio', 'target']];
  const defs = metrics(profile);
  for (const scenario of Object.keys(results) as Scenario[])
    for (const metric of defs[scenario]) {
      const r = results[scenario]?.[metric.key];
      if (!r) continue;
      let target = metric.target ? `${metric.target.text} ${r.ratio <= metric.target.max ? 'met' : 'MISSED'}` : '';
      if (metric.key === 'maxEventLoopDelayMs') target = `< 100 ms ${r.server < 100 ? 'met' : 'MISSED'}`;
      rows.push([scenario, metric.label, format(r.server), format(r.baseline), `${r.ratio.toFixed(2)}x`, target]);
    }
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((row) => (row[i] as string).length))) ?? [];
  const line = (row: string[]) =>
    `| ${row.map((cell, i) => (i >= 2 && i <= 4 ? cell.padStart(widths[i] as number) : cell.padEnd(widths[i] as number))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i >= 2 && i <= 4 ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(rows[0] as string[]), rule, ...rows.slice(1).map(line)].join('\n');
}

/** What each scenario did, for the results page. */
export function describe(p: Profile): string[] {
  const { connect: c, relay: r, join: j, massDisconnect: m } = p;
  return [
    '- certificates: the bare relay always serves RSA-2048 (the baseline); this server serves ECDSA P-256 (the recommended certificate) except in connectRsa.',
    `- connect: ${c.counts.join(' then ')} TLS WebSocket connections, ${c.concurrency} at a time, left idle; CPU over the ramps, RSS once settled minus RSS before.`,
    "- connectRsa: connect again with this server on RSA-2048 too, so the certificate choice and the server's own connection path show apart (CPU only).",
    `- reconnect: ${c.counts[0]} clients connect, close, and connect again; CPU over the second round. This server's clients offer the TLS session ticket of their first ` +
      "connection (as browsers do, and socket.io-client with a shared https.Agent); the relay's do not (socket.io-client's default), so theirs is a full RSA handshake.",
    `- relay: ${r.pairs} broadcaster/player pairs exchanging messagePeer in turn (an offer and an answer of about 4.5 KB, eight candidates of about 300 B); ` +
      `latency from the scheduled send time; the highest rate climbs from ${r.search.start}/s by ×${r.search.factor} and is bisected ${r.search.refine} times, a rate failing only if it fails twice.`,
    `- join: ${j.workers} handshakes in flight over a pool of ${j.pairs} pairs (so each socket stays at a browser-like event rate), the idle sockets registered in channels of two.`,
    `- massDisconnect: ${m.peers} peers in channels of 2 to 4, held by a separate process that is killed (SIGKILL); GET / probed every ${m.probeEveryMs} ms on kept-alive connections; the event-loop delay comes from a preloaded monitorEventLoopDelay.`,
  ];
}

/** Keeps a run's CPU profile and its summary beside the results; returns the summary. */
export function keepProfile(out: string, runId: string, file: string, windows: Outcome['windows']): string {
  const summary = summarize(file, windows);
  const dir = join(dirname(out), 'profiles.tmp');
  mkdirSync(dir, { recursive: true });
  copyFileSync(file, join(dir, `${runId}.cpuprofile`));
  writeFileSync(join(dir, `${runId}.txt`), `${summary}\n`);
  writeFileSync(join(dir, `${runId}.windows.json`), `${JSON.stringify(windows)}\n`);
  return summary;
}
