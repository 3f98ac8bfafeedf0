// Reads a V8 .cpuprofile (node --cpu-prof) and says where the time went,
// counting only the samples inside the load generator's measurement windows
// (both use CLOCK_MONOTONIC, in µs), so set-up and teardown do not blur it.
import { readFileSync } from 'node:fs';
import type { Window } from './profile';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Where a frame comes from: a package, a Node internal module, this server's file. */
function origin(url: string): string {
  if (!url) return '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1] === '.cache' ? 'bare relay' : (pkg[1] as string);
  if (url.startsWith('node:')) return url.replace(/^node:(internal\/)?/, 'node:').split('/')[0] as string;
  const dist = /\/dist\/(.+)$/.exec(url);
  return dist ? `dist/${dist[1]}` : (url.split('/').pop() as string);
}

const frameName = (f: CallFrame) => `${f.functionName || '(anonymous)'} ${origin(f.url)}${f.url ? `:${f.lineNumber + 1}` : ''}`;

/** Self time by function and by origin, as shares of the busy (not idle) time in the windows. */
export function summarize(file: string, windows: Window[], top = 25): string {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parents = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parents.set(c, n.id);
  const byFunction = new Map<string, number>();
  const byOrigin = new Map<string, number>();
  // Inclusive time of the servers' own functions: how much of the work they start.
  const own = new Map<string, number>();
  const isOwn = (f: CallFrame) =>
    (f.url.includes('/dist/') && !f.url.includes('/node_modules/')) || f.url.includes('/node_modules/.cache/vw-bench/');
  let busy = 0;
  let idle = 0;
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i] ?? 0;
    t += delta;
    if (!windows.some((w) => t >= w.startUs && t <= w.endUs)) continue;
    const frame = nodes.get(profile.samples[i] as number)?.callFrame;
    if (!frame) continue;
    if (frame.functionName === '(idle)') {
      idle += delta;
      continue;
    }
    busy += delta;
    const name = frameName(frame);
    byFunction.set(name, (byFunction.get(name) ?? 0) + delta);
    const from = frame.url ? origin(frame.url) : frame.functionName;
    byOrigin.set(from, (byOrigin.get(from) ?? 0) + delta);
    const seen = new Set<string>();
    for (let id: number | undefined = profile.samples[i]; id !== undefined; id = parents.get(id)) {
      const f = nodes.get(id)?.callFrame;
      if (!f || !isOwn(f)) continue;
      const key = frameName(f);
      if (seen.has(key)) continue;
      seen.add(key);
      own.set(key, (own.get(key) ?? 0) + delta);
    }
  }
  const list = (m: Map<string, number>, n: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, v]) => `  ${((v / busy) * 100).toFixed(1).padStart(5)}%  ${k}`)
      .join('\n');
  const total = busy + idle;
  return [
    // V8 counts native work done in the poll phase outside JS (TLS, socket reads) as idle,
    // so the shares below are of the samples it could attribute.
    `main thread in windows: ${(total / 1000).toFixed(0)} ms, ${total ? ((busy / total) * 100).toFixed(0) : 0}% attributed (not idle)`,
    'self time by origin (share of attributed):',
    list(byOrigin, 15),
    'self time by function:',
    list(byFunction, top),
    "inclusive time of the server's own functions:",
    list(own, 15),
  ].join('\n');
}
