// A real Redis Cluster for the tests: three masters with one replica each,
// on free loopback ports, in a temporary directory, created with
// `redis-cli --cluster create`. Start it once per test file (it takes a few
// seconds) and share it; each test keeps to its own key prefix.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCluster } from 'redis';
import { findProgram, freePort, waitForOutput } from './process';
import { eventually } from './wait';

export interface ClusterNode {
  port: number;
  address: string;
  /** Runs while the node is up. */
  child: ChildProcess | undefined;
}

export interface TestRedisCluster {
  /** REDIS_CLUSTER_NODES: every node's host:port. */
  seeds: string;
  nodes: ClusterNode[];
  /** Runs redis-cli against one node and returns its output. */
  cli(node: ClusterNode, ...args: string[]): string;
  /** The node that serves `slot` as master now. */
  masterOf(slot: number): ClusterNode;
  /** The masters that run now. */
  masters(): ClusterNode[];
  /**
   * Moves a slot to another master as `redis-cli --cluster reshard` does
   * (IMPORTING, MIGRATING, MIGRATE in batches, then the new owner), calling
   * `between` after each batch of keys, while the slot is split.
   */
  moveSlot(slot: number, to: ClusterNode, between?: () => Promise<void>): Promise<void>;
  /** Kills a node (SIGKILL) and resolves once it has exited. */
  kill(node: ClusterNode): Promise<void>;
  /** Starts a killed node again (it rejoins with its nodes.conf). */
  revive(node: ClusterNode): Promise<void>;
  /** Resolves once every node that runs reports cluster_state:ok and every slot has a master that runs. */
  settled(ms?: number): Promise<void>;
  stop(): Promise<void>;
}

/** Why a Redis Cluster cannot be started here, or undefined. */
export function clusterUnavailable(): string | undefined {
  if (!findProgram('redis-server')) return 'redis-server is not installed (apt-get install redis-server)';
  if (!findProgram('redis-cli')) return 'redis-cli is not installed (apt-get install redis-tools)';
  return undefined;
}

/**
 * `nodeTimeoutMs` is cluster-node-timeout: 1 s by default, so that a dead
 * master is noticed, and its replica promoted, within about a second; a
 * production cluster keeps Redis's 15 s, whose gossip costs each node less.
 */
export async function startRedisCluster({ masters = 3, replicas = 1, nodeTimeoutMs = 1000 } = {}): Promise<TestRedisCluster> {
  const server = findProgram('redis-server') as string;
  const cli = findProgram('redis-cli') as string;
  const dir = mkdtempSync(join(tmpdir(), 'vw-redis-cluster-'));
  const nodes: ClusterNode[] = [];
  for (let i = 0; i < masters * (1 + replicas); i++) {
    const port = await freePort();
    nodes.push({ port, address: `127.0.0.1:${port}`, child: undefined });
  }

  async function launch(node: ClusterNode) {
    const child = spawn(
      server,
      [
        ...['--port', String(node.port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'],
        ...['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${node.port}.conf`],
        ...['--cluster-node-timeout', String(nodeTimeoutMs), '--cluster-replica-validity-factor', '0', '--loglevel', 'notice'],
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    node.child = child;
    child.once('exit', () => {
      if (node.child === child) node.child = undefined;
    });
    await waitForOutput(child, 'redis-server', /Ready to accept connections/);
  }

  function run(node: ClusterNode, ...args: string[]): string {
    const result = spawnSync(cli, ['-h', '127.0.0.1', '-p', String(node.port), ...args], { encoding: 'utf8', timeout: 30_000 });
    return (result.stdout ?? '').trim();
  }

  const processExit = () => nodes.forEach((n) => n.child?.kill('SIGKILL'));
  process.once('exit', processExit);

  await Promise.all(nodes.map((node) => launch(node)));
  const created = spawnSync(
    cli,
    ['--cluster', 'create', ...nodes.map((n) => n.address), '--cluster-replicas', String(replicas), '--cluster-yes'],
    { encoding: 'utf8', timeout: 60_000 },
  );
  if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}${created.stderr}`);

  const handle: TestRedisCluster = {
    seeds: nodes.map((n) => n.address).join(','),
    nodes,
    cli: run,
    masterOf(slot) {
      for (const node of nodes) {
        if (!node.child) continue;
        const owner = masterRanges(run(node, 'CLUSTER', 'NODES')).find((s) => s.from <= slot && slot <= s.to);
        const found = owner && nodes.find((n) => n.port === owner.port);
        if (found) return found;
      }
      throw new Error(`no master serves slot ${slot}`);
    },
    masters() {
      const up = nodes.find((n) => n.child) as ClusterNode;
      const ports = new Set(masterRanges(run(up, 'CLUSTER', 'NODES')).map((r) => r.port));
      return nodes.filter((n) => n.child && ports.has(n.port));
    },
    async moveSlot(slot, to, between) {
      const from = handle.masterOf(slot);
      if (from === to) return;
      const id = (node: ClusterNode) => run(node, 'CLUSTER', 'MYID');
      run(to, 'CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', id(from));
      run(from, 'CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', id(to));
      for (let rounds = 0; rounds < 1000; rounds++) {
        const keys = run(from, 'CLUSTER', 'GETKEYSINSLOT', String(slot), '2').split('\n').filter(Boolean);
        if (!keys.length) break;
        run(from, 'MIGRATE', '127.0.0.1', String(to.port), '', '0', '5000', 'KEYS', ...keys);
        await between?.();
      }
      for (const master of handle.masters()) run(master, 'CLUSTER', 'SETSLOT', String(slot), 'NODE', id(to));
    },
    async kill(node) {
      const child = node.child;
      if (!child) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    },
    revive: (node) => launch(node),
    async settled(ms = 30_000) {
      await eventually(
        'the Redis Cluster settled',
        async () => {
          const up = nodes.filter((n) => n.child);
          if (!up.every((n) => run(n, 'CLUSTER', 'INFO').includes('cluster_state:ok'))) return false;
          const check = spawnSync(cli, ['--cluster', 'check', (up[0] as ClusterNode).address], { encoding: 'utf8', timeout: 30_000 });
          return check.status === 0 && check.stdout.includes('[OK] All 16384 slots covered');
        },
        ms,
      );
    },
    async stop() {
      process.off('exit', processExit);
      await Promise.all(nodes.map((n) => handle.kill(n)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await handle.settled();
  // Every node agrees on the slots before a client connects.
  await eventually('a cluster client connects', async () => {
    const client = createCluster({ rootNodes: [{ url: `redis://${nodes[0]?.address}` }] });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.set('probe', '1');
      return true;
    } finally {
      client.destroy();
    }
  });
  return handle;
}

/** CLUSTER NODES: the master ranges, `<id> <ip:port@bus> <flags> <master> ... <from>-<to> ...`. */
function masterRanges(output: string): { from: number; to: number; port: number }[] {
  const ranges: { from: number; to: number; port: number }[] = [];
  for (const line of output.split('\n')) {
    const [, address = '', flags = '', , , , , , ...slots] = line.trim().split(' ');
    if (!flags.split(',').includes('master') || flags.includes('fail')) continue;
    const port = Number(address.split('@')[0]?.split(':')[1]);
    for (const range of slots) {
      if (range.startsWith('[')) continue; // a slot being migrated
      const [from, to = from] = range.split('-').map(Number);
      ranges.push({ from: from as number, to: to as number, port });
    }
  }
  return ranges;
}
