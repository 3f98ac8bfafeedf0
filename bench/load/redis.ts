// What Redis did for the servers: totals from INFO (commands, its CPU) over a
// window, and exact counts from MONITOR, which shows a client's commands
// with its address and the commands a script runs as `[db lua]`, so round
// trips can be told apart from the work inside one.
import type { createClient } from 'redis';
import { connectionPorts } from '../proc';

type Client = ReturnType<typeof createClient>;

async function open(url: string): Promise<Client> {
  // Loaded here: the load generator needs it only for the runs on Redis.
  const { createClient } = await import('redis');
  const client = createClient({ url, socket: { reconnectStrategy: false, connectTimeout: 5000 } });
  client.on('error', () => undefined); // a failed command rejects; the bench reports it
  await client.connect();
  return client;
}

export interface RedisTotals {
  /** total_commands_processed: a script's commands count too. */
  commands: number;
  /** used_cpu_sys + used_cpu_user of redis-server, ms. */
  cpuMs: number;
  /** cpuMs of each redis-server, in the order of the URLs. */
  nodeCpuMs: number[];
  /** performance.now() at the reading. */
  at: number;
}

/** The difference of two readings. */
export const minus = (b: RedisTotals, a: RedisTotals): RedisTotals => ({
  commands: b.commands - a.commands,
  cpuMs: b.cpuMs - a.cpuMs,
  nodeCpuMs: b.nodeCpuMs.map((ms, i) => ms - (a.nodeCpuMs[i] ?? Number.NaN)),
  at: b.at - a.at,
});

/** Totals of one Redis, or summed over a Redis Cluster's masters (URLs comma-separated). */
export class RedisCounters {
  private constructor(private readonly clients: Client[]) {}

  static async open(urls: string) {
    return new RedisCounters(await Promise.all(urls.split(',').map(open)));
  }

  async read(): Promise<RedisTotals> {
    const infos = await Promise.all(this.clients.map(async (client) => String(await client.sendCommand(['INFO']))));
    const value = (info: string, name: string) => Number(new RegExp(`^${name}:([0-9.]+)`, 'm').exec(info)?.[1] ?? Number.NaN);
    const nodeCpuMs = infos.map((info) => (value(info, 'used_cpu_sys') + value(info, 'used_cpu_user')) * 1000);
    return {
      commands: infos.reduce((sum, info) => sum + value(info, 'total_commands_processed'), 0),
      cpuMs: nodeCpuMs.reduce((a, b) => a + b, 0),
      nodeCpuMs,
      at: performance.now(),
    };
  }

  /** INFO commandstats summed over the servers: calls and µs by command (a script's commands count too). */
  async commandStats(): Promise<Map<string, { calls: number; usec: number }>> {
    const infos = await Promise.all(this.clients.map(async (client) => String(await client.sendCommand(['INFO', 'commandstats']))));
    const stats = new Map<string, { calls: number; usec: number }>();
    for (const info of infos)
      for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
        const s = stats.get(m[1] as string) ?? { calls: 0, usec: 0 };
        s.calls += Number(m[2]);
        s.usec += Number(m[3]);
        stats.set(m[1] as string, s);
      }
    return stats;
  }

  close() {
    for (const client of this.clients) client.destroy();
  }
}

/** The difference of two commandstats readings. */
export function statsMinus(b: Map<string, { calls: number; usec: number }>, a: Map<string, { calls: number; usec: number }>) {
  const out = new Map<string, { calls: number; usec: number }>();
  for (const [name, s] of b) {
    const before = a.get(name) ?? { calls: 0, usec: 0 };
    if (s.calls > before.calls) out.set(name, { calls: s.calls - before.calls, usec: s.usec - before.usec });
  }
  return out;
}

export interface Tally {
  /** Time between the two marks on Redis's clock, ms. */
  ms: number;
  /** Commands the servers sent (round trips), by name. */
  sent: Map<string, number>;
  /** Commands run inside the servers' scripts. */
  inScripts: number;
}

const total = (counts: Map<string, number>) => [...counts.values()].reduce((a, b) => a + b, 0);
export const sentTotal = (tally: Tally) => total(tally.sent);

/**
 * A MONITOR tap. `mark()` sends a marker through another connection and
 * resolves, once MONITOR shows it, with what was counted since the previous
 * marker: Redis runs commands one at a time, so the markers cut its stream
 * exactly. Only the given processes' connections are counted.
 */
export class RedisTap {
  private sent = new Map<string, number>();
  private inScripts = 0;
  private ports = new Set<number>();
  /** Whether the last client command was a server's: a script's commands follow its EVALSHA at once. */
  private ours = false;
  private lastMarkAt = Number.NaN;
  private seq = 0;
  private waiting: { token: string; resolve: (tally: Tally) => void } | undefined;

  private constructor(
    private readonly monitor: Client,
    private readonly control: Client,
    private readonly redisPort: number,
    private readonly pids: number[],
  ) {}

  static async open(url: string, pids: number[]) {
    const [monitor, control] = await Promise.all([open(url), open(url)]);
    const tap = new RedisTap(monitor, control, Number(new URL(url).port || 6379), pids);
    await monitor.monitor((line) => tap.onLine(String(line)));
    await tap.mark();
    return tap;
  }

  // `1764099123.456789 [0 127.0.0.1:51234] "EVALSHA" "..."`, or `[0 lua]` inside a script.
  private onLine(line: string) {
    const match = /^(\d+\.\d+) \[\d+ ([^\]]+)\] "([^"]*)"/.exec(line);
    if (!match) return;
    const [, time, client, command] = match as unknown as [string, string, string, string];
    if (client === 'lua') {
      if (this.ours) this.inScripts++;
      return;
    }
    const port = Number(client.slice(client.lastIndexOf(':') + 1));
    this.ours = this.ports.has(port);
    if (this.waiting && command.toUpperCase() === 'ECHO' && line.endsWith(`"${this.waiting.token}"`)) {
      const at = Number(time) * 1000;
      const tally: Tally = { ms: at - this.lastMarkAt, sent: this.sent, inScripts: this.inScripts };
      this.sent = new Map();
      this.inScripts = 0;
      this.lastMarkAt = at;
      const { resolve } = this.waiting;
      this.waiting = undefined;
      resolve(tally);
      return;
    }
    if (!this.ours) return;
    const name = command.toUpperCase();
    this.sent.set(name, (this.sent.get(name) ?? 0) + 1);
  }

  /** Counts since the previous mark. */
  async mark(): Promise<Tally> {
    // The servers' connections are looked up each time: one may have reconnected.
    this.ports = connectionPorts(this.pids, this.redisPort);
    const token = `vw-bench-mark-${++this.seq}`;
    const seen = new Promise<Tally>((resolve) => (this.waiting = { token, resolve }));
    await this.control.sendCommand(['ECHO', token]);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>(
      (_, reject) => (timer = setTimeout(() => reject(new Error('MONITOR did not show the marker within 10 s')), 10_000)),
    );
    return Promise.race([seen, late]).finally(() => clearTimeout(timer));
  }

  close() {
    this.monitor.destroy();
    this.control.destroy();
  }
}
