// CPU quotas for the processes the bench starts, through the kernel's CPU
// controller: cgroup v1 (cpu.cfs_period_us, cpu.cfs_quota_us) or cgroup v2
// (cpu.max). Each process gets a group of its own under a parent named after
// the bench's pid, so that every process gets the same quota, not a share of
// one. The groups are removed when the bench ends, on a failure or Ctrl-C too
// (on the process's exit); groups an earlier bench left, killed before it
// could, are removed at the next start once their bench is gone.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const PARENT_PREFIX = 'vw-bench-';

/** Throttling counters of a group (cpu.stat; the same names in v1 and v2). */
export interface ThrottleCounts {
  periods: number;
  throttled: number;
}

export interface CpuGroups {
  readonly kind: 'cgroup v1' | 'cgroup v2';
  /** Puts a process into a group of its own called `name`, created on first use. */
  add(name: string, pid: number): void;
  /** Sets every group's quota, as a share of one core (0.05: 5%), or lifts it (undefined). */
  setQuota(share: number | undefined): void;
  /** A group's cpu.stat file, whose nr_periods and nr_throttled say how often it hit its quota. */
  statFile(name: string): string;
  /** Moves the processes back to the root group and removes the groups; safe to call twice. */
  remove(): void;
}

interface Controller {
  kind: CpuGroups['kind'];
  root: string;
}

/** Where the CPU controller is mounted, v1 first (a v2 hierarchy without it cannot set quotas). */
function findController(): Controller | string {
  let mounts: string;
  try {
    mounts = readFileSync('/proc/self/mounts', 'utf8');
  } catch {
    return 'no /proc/self/mounts';
  }
  let v2: string | undefined;
  for (const line of mounts.split('\n')) {
    const [, dir, type, options = ''] = line.split(' ');
    if (type === 'cgroup' && dir && options.split(',').includes('cpu')) return { kind: 'cgroup v1', root: dir };
    if (type === 'cgroup2' && dir) v2 ??= dir;
  }
  if (!v2) return 'no cgroup CPU controller is mounted';
  const enabled = existsSync(join(v2, 'cgroup.subtree_control')) ? readFileSync(join(v2, 'cgroup.subtree_control'), 'utf8') : '';
  if (!enabled.split(/\s+/).includes('cpu')) return `the cgroup v2 hierarchy at ${v2} does not enable the cpu controller for its groups`;
  return { kind: 'cgroup v2', root: v2 };
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** Moves a group's processes to the root group and removes it (a group with processes cannot be removed). */
function removeGroup(root: string, dir: string) {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) removeGroup(root, join(dir, entry.name));
  for (const pid of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
    try {
      writeFileSync(join(root, 'cgroup.procs'), pid);
    } catch {
      // exited meanwhile
    }
  }
  rmdirSync(dir);
}

/** The bench's CPU groups, or why there can be none here. */
export function cpuGroups(): CpuGroups | { unavailable: string } {
  const controller = findController();
  if (typeof controller === 'string') return { unavailable: controller };
  const { kind, root } = controller;
  // Groups of benches that were killed before they could remove them.
  for (const name of readdirSync(root)) {
    const pid = name.startsWith(PARENT_PREFIX) ? Number(name.slice(PARENT_PREFIX.length)) : Number.NaN;
    if (Number.isInteger(pid) && pid !== process.pid && !alive(pid)) {
      try {
        removeGroup(root, join(root, name));
      } catch {
        // another bench's, being removed by it
      }
    }
  }
  const parent = join(root, `${PARENT_PREFIX}${process.pid}`);
  try {
    mkdirSync(parent);
    // In v2 a group's children get the cpu controller only when it is enabled in the group.
    if (kind === 'cgroup v2') writeFileSync(join(parent, 'cgroup.subtree_control'), '+cpu');
  } catch (err) {
    try {
      if (existsSync(parent)) rmdirSync(parent);
    } catch {
      // left for the next start
    }
    return { unavailable: `cannot create a ${kind} group under ${root} (${(err as Error).message}); it needs root` };
  }

  const groups = new Set<string>();
  let quota: ReturnType<typeof quotaFor> | undefined;
  let removed = false;
  const write = (name: string, file: string, value: string) => writeFileSync(join(parent, name, file), value);
  const apply = (name: string) => {
    if (kind === 'cgroup v2') write(name, 'cpu.max', quota ? `${quota.runtimeUs} ${quota.periodUs}` : 'max');
    else if (!quota) write(name, 'cpu.cfs_quota_us', '-1');
    else {
      write(name, 'cpu.cfs_period_us', String(quota.periodUs));
      write(name, 'cpu.cfs_quota_us', String(quota.runtimeUs));
    }
  };
  const remove = () => {
    if (removed) return;
    removed = true;
    process.off('exit', remove);
    try {
      removeGroup(root, parent);
    } catch (err) {
      process.stderr.write(`could not remove the CPU group ${parent}: ${(err as Error).message}\n`);
    }
  };
  process.on('exit', remove);

  return {
    kind,
    add(name, pid) {
      if (!groups.has(name)) {
        mkdirSync(join(parent, name));
        groups.add(name);
        apply(name);
      }
      write(name, 'cgroup.procs', String(pid));
    },
    setQuota(share) {
      quota = share === undefined ? undefined : quotaFor(share);
      for (const name of groups) apply(name);
    },
    statFile: (name) => join(parent, name, 'cpu.stat'),
    remove,
  };
}

/**
 * A share of one core as a period and the runtime allowed in it, µs: at least
 * 1 ms a period (the kernel's minimum), periods of at least 10 ms (shorter ones
 * cost scheduling; longer ones stall the process longer between its runs).
 */
export function quotaFor(share: number): { periodUs: number; runtimeUs: number } {
  const periodUs = Math.max(10_000, Math.ceil(1000 / share));
  return { periodUs, runtimeUs: Math.round(share * periodUs) };
}

/** Reads a cpu.stat file's throttling counters. */
export function throttleCounts(file: string): ThrottleCounts {
  const text = readFileSync(file, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? Number.NaN);
  return { periods: field('nr_periods'), throttled: field('nr_throttled') };
}
