// The bench's command line:
//   npm run bench [-- --quick] [--accounts] [--only connect,relay] [--rounds N] [--out file.json] [--no-build] [--cpu-prof]
//   npm run bench -- --cluster [--quick] [--rounds N] [--out file.json] [--no-build]
import { join, resolve } from 'node:path';
import { CLUSTER_FULL, CLUSTER_QUICK, FULL, QUICK, SCENARIOS, type ClusterProfile, type Profile, type Scenario } from './profile';

export const ROOT = resolve(__dirname, '..');

export interface Options {
  profile: Profile;
  /** Set with --cluster: one instance against two on Redis, instead of against the bare relay. */
  cluster?: ClusterProfile;
  accounts: boolean;
  only: Scenario[];
  out: string;
  build: boolean;
  cpuProf: boolean;
}

export function parseArgs(argv: string[]): Options {
  const flag = (name: string) => argv.includes(name);
  const value = (name: string) => {
    const at = argv.indexOf(name);
    return at >= 0 ? argv[at + 1] : undefined;
  };
  const profile: Profile = { ...(flag('--quick') ? QUICK : FULL) };
  const cluster = flag('--cluster') ? { ...(flag('--quick') ? CLUSTER_QUICK : CLUSTER_FULL) } : undefined;
  const rounds = value('--rounds');
  if (rounds) profile.rounds = Math.max(1, Number.parseInt(rounds, 10) || 1);
  if (rounds && cluster) cluster.rounds = profile.rounds;
  const asked = value('--only')?.split(',') ?? SCENARIOS;
  for (const s of asked) if (!SCENARIOS.includes(s as Scenario)) throw new Error(`unknown scenario ${s} (known: ${SCENARIOS.join(', ')})`);
  const only = SCENARIOS.filter((s) => asked.includes(s));
  const accounts = flag('--accounts');
  if (cluster && (accounts || flag('--only') || flag('--cpu-prof'))) throw new Error('--cluster goes with --quick, --rounds, --out and --no-build only');
  const quickName = cluster ? 'cluster-quick.json.tmp' : 'quick.json.tmp';
  const name = profile.name === 'quick' ? quickName : cluster ? 'cluster.json' : accounts ? 'latest-accounts.json' : 'latest.json';
  const out = resolve(value('--out') ?? join(ROOT, 'bench', 'results', name));
  return { profile, ...(cluster && { cluster }), accounts, only, out, build: !flag('--no-build'), cpuProf: flag('--cpu-prof') };
}
