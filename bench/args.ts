// The bench's command line:
//   npm run bench [-- --quick] [--accounts] [--only connect,relay] [--rounds N] [--out file.json] [--no-build] [--cpu-prof] [--server-node path]
//   npm run bench -- --cluster [--quick] [--shards-only [--shards-instances 1,4 [--no-quota]] [--command-stats] [--shards-window ms]] [--rounds N] [--out file.json] [--no-build]
import { execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { parseArgs as parseCommandLine } from 'node:util';
import { CLUSTER_FULL, CLUSTER_QUICK, FULL, QUICK, SCENARIOS, type ClusterProfile, type Profile, type Scenario } from './profile';

export const ROOT = resolve(__dirname, '..');

const parseFlags = (args: string[]) =>
  parseCommandLine({
    args,
    strict: true,
    options: {
      quick: { type: 'boolean' },
      cluster: { type: 'boolean' },
      'shards-only': { type: 'boolean' },
      'shards-instances': { type: 'string' },
      'command-stats': { type: 'boolean' },
      'no-quota': { type: 'boolean' },
      'shards-window': { type: 'string' },
      accounts: { type: 'boolean' },
      only: { type: 'string' },
      rounds: { type: 'string' },
      out: { type: 'string' },
      'no-build': { type: 'boolean' },
      'cpu-prof': { type: 'boolean' },
      'server-node': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });

export interface Options {
  profile: Profile;
  /** Set with --cluster: one instance against two on Redis, instead of against the bare relay. */
  cluster?: ClusterProfile;
  accounts: boolean;
  only: Scenario[];
  out: string;
  build: boolean;
  cpuProf: boolean;
  /** Set with --server-node: the Node binary this server runs on, and its version (the relay stays on the bench's own). */
  serverNode?: { path: string; version: string };
}

const USAGE = `usage: npm run bench [-- --quick] [--accounts] [--only ${SCENARIOS.join(',')}] [--rounds N] [--out file.json] [--no-build] [--cpu-prof] [--server-node path]
       npm run bench -- --cluster [--quick] [--shards-only [--shards-instances 1,4 [--no-quota]] [--command-stats] [--shards-window ms]] [--rounds N] [--out file.json] [--no-build]`;

export function parseArgs(argv: string[]): Options {
  // Strict: a mistyped option stops with the usage instead of starting a full run of several minutes.
  let parsed: ReturnType<typeof parseFlags>;
  try {
    parsed = parseFlags(argv);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${USAGE}`, { cause: err });
  }
  if (parsed.values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const flag = (name: string) => parsed.values[name.slice(2) as keyof typeof parsed.values] === true;
  const value = (name: string) => parsed.values[name.slice(2) as keyof typeof parsed.values] as string | undefined;
  const profile: Profile = { ...(flag('--quick') ? QUICK : FULL) };
  const cluster = flag('--cluster') ? { ...(flag('--quick') ? CLUSTER_QUICK : CLUSTER_FULL) } : undefined;
  if (flag('--shards-only') && !cluster) throw new Error('--shards-only goes with --cluster');
  if (cluster && flag('--shards-only')) cluster.shardsOnly = true;
  // A narrower run: only these instance counts, under the quota, none without it.
  const shardsInstances = value('--shards-instances');
  if (shardsInstances && !cluster?.shardsOnly) throw new Error('--shards-instances goes with --cluster --shards-only');
  if (cluster && shardsInstances)
    cluster.shards = flag('--no-quota')
      ? { ...cluster.shards, instances: [], unlimited: shardsInstances.split(',').map(Number) }
      : { ...cluster.shards, instances: shardsInstances.split(',').map(Number), unlimited: [] };
  if (flag('--no-quota') && !shardsInstances) throw new Error('--no-quota goes with --shards-instances');
  if (flag('--command-stats') && !cluster?.shardsOnly) throw new Error('--command-stats goes with --cluster --shards-only');
  // A longer window (ms): a handshake through a throttled Redis takes seconds, and 5 s hold few of them.
  const windowMs = Number(value('--shards-window') ?? Number.NaN);
  if (cluster && windowMs > 0) cluster.shards = { ...cluster.shards, join: { ...cluster.shards.join, windowMs } };
  if (cluster && flag('--command-stats')) cluster.shards = { ...cluster.shards, commandStats: true };
  const rounds = value('--rounds');
  if (rounds) profile.rounds = Math.max(1, Number.parseInt(rounds, 10) || 1);
  if (rounds && cluster) cluster.rounds = profile.rounds;
  const asked = value('--only')?.split(',') ?? SCENARIOS;
  for (const s of asked) if (!SCENARIOS.includes(s as Scenario)) throw new Error(`unknown scenario ${s} (known: ${SCENARIOS.join(', ')})`);
  const only = SCENARIOS.filter((s) => asked.includes(s));
  const accounts = flag('--accounts');
  if (cluster && (accounts || value('--only') !== undefined || flag('--cpu-prof') || value('--server-node') !== undefined))
    throw new Error('--cluster goes with --quick, --shards-only, --rounds, --out and --no-build only');
  const quickName = cluster ? 'cluster-quick.json.tmp' : 'quick.json.tmp';
  // Only the shard rows: a file of its own, so the full --cluster results stay.
  const name = cluster?.shardsOnly
    ? `shards-${profile.name}.json.tmp`
    : profile.name === 'quick'
      ? quickName
      : cluster
        ? 'cluster.json'
        : accounts
          ? 'latest-accounts.json'
          : 'latest.json';
  const out = resolve(value('--out') ?? join(ROOT, 'bench', 'results', name));
  const nodeArg = value('--server-node');
  const nodePath = nodeArg === undefined ? undefined : resolve(nodeArg);
  // Asked once here, so that a wrong path stops the bench before its first round.
  const serverNode =
    nodePath === undefined ? undefined : { path: nodePath, version: execFileSync(nodePath, ['--version'], { encoding: 'utf8' }).trim() };
  return {
    profile,
    ...(cluster && { cluster }),
    accounts,
    only,
    out,
    build: !flag('--no-build'),
    cpuProf: flag('--cpu-prof'),
    ...(serverNode && { serverNode }),
  };
}
