// The registry's and the room store's scripts whose keys depend on what
// Redis holds (a dead instance's sweep, an instance's sync) while their
// bucket's slot moves to another master: they run on the whole of the
// bucket, never on half of it.
// Runs on a Redis Cluster of three masters with a replica each, started for
// this file on loopback ports.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import keySlot from 'cluster-key-slot';
import pino from 'pino';
import { encodeName, keyLayout } from '../src/channels/redis/keys';
import { createRedisRegistry, type RedisRegistry } from '../src/channels/redis/registry';
import {
  registryLibrary,
  syncScript,
  sweepScript,
  type RedisCommands,
  type Script,
  type ScriptLibrary,
} from '../src/channels/redis/scripts';
import { createRedisRoomStore } from '../src/rooms/redis/store';
import { roomsLibrary, sweepScript as roomSweepScript } from '../src/rooms/redis/scripts';
import { manualClock } from './helpers/clock';
import { STREAM } from './helpers/client';
import { testRedis, useRedisCluster, type TestRedis } from './helpers/redis';
import type { ClusterNode } from './helpers/redis-cluster';
import { eventually } from './helpers/wait';

useRedisCluster();

/** Client commands that tell when Redis first answers (or refuses) a script called on a base. */
function watched(
  commands: RedisCommands,
  library: ScriptLibrary = registryLibrary,
  scripts: Script<never, unknown>[] = [sweepScript, syncScript] as Script<never, unknown>[],
) {
  const waiting: { script: Script<never, unknown>; base: string; answered: () => void }[] = [];
  /** The KEYS of each call of a script, by the script's name. */
  const declared = new Map<string, string[][]>();
  const isCall = (args: string[], script: Script<never, unknown>) =>
    (args[0] === 'FCALL' && args[1] === library.functionName(script)) ||
    (args[0] === 'EVALSHA' && args[1] === script.sha) ||
    (args[0] === 'EVAL' && args[1] === script.source);
  return {
    commands: {
      send(args: string[], key: string | undefined) {
        const reply = commands.send(args, key);
        const script = scripts.find((s) => isCall(args, s));
        if (script) declared.set(script.name, [...(declared.get(script.name) ?? []), args.slice(3, 3 + Number(args[2]))]);
        for (const w of waiting.filter((w) => w.base === key && isCall(args, w.script))) {
          waiting.splice(waiting.indexOf(w), 1);
          reply.then(w.answered, w.answered);
        }
        return reply;
      },
    } satisfies RedisCommands,
    declared,
    answered<I, R>(script: Script<I, R>, base: string) {
      return new Promise<void>((answered) => waiting.push({ script: script as Script<never, unknown>, base, answered }));
    },
  };
}

/** Three accounts that share a bucket, its base and slot. */
function oneBucket(redis: TestRedis) {
  const layout = keyLayout(redis.prefix, redis.buckets);
  const base = layout.bucketOf(encodeName('site0'));
  const accounts = ['site0'];
  for (let i = 1; accounts.length < 3; i++) if (layout.bucketOf(encodeName(`site${i}`)) === base) accounts.push(`site${i}`);
  return { layout, base, slot: keySlot(base), accounts };
}

function registryOn(redis: TestRedis, commands: RedisCommands, instanceId: string, aliveMs = 60_000) {
  return createRedisRegistry({
    client: commands,
    buckets: redis.buckets,
    prefix: redis.prefix,
    instanceId,
    aliveMs,
    log: pino({ level: 'silent' }),
    clock: manualClock(),
  });
}

/** Connects once per account, and registers a broadcaster or player per channel, as `roles` says. */
async function register(registry: RedisRegistry, name: string, accounts: string[], roles: ('broadcaster' | 'player' | undefined)[]) {
  for (const account of accounts) {
    assert.equal(await registry.connect(account, { connections: 0, totalBitrate: 0 }), null);
    for (const [i, role] of roles.entries()) {
      if (!role) continue;
      const stream = role === 'broadcaster' ? STREAM : undefined;
      const socketId = `${name}-${account}-${i}`;
      const joined = await registry.join({
        account,
        channel: `ch${i}`,
        peerID: socketId,
        socketId,
        role,
        stream,
        plan: { totalBitrate: 0 },
      });
      assert.ok(joined.ok);
    }
  }
}

/** What the registry shows of the bucket: the REST views' state. */
const shown = async (registry: RedisRegistry) => ({ usage: await registry.usage(), snapshot: await registry.snapshot() });

/**
 * Moves the slot to another master and, once about half its keys are on
 * the new one, starts `task` and waits for `answered` (Redis's first answer
 * to the script under test) before the move goes on.
 */
async function midMove<T>(
  t: TestContext,
  redis: TestRedis,
  slot: number,
  answered: () => Promise<void>,
  task: () => Promise<T>,
): Promise<T> {
  const cluster = redis.cluster as NonNullable<TestRedis['cluster']>;
  const from = cluster.masterOf(slot);
  const target = cluster.masters().find((m) => m !== from) as ClusterNode;
  const total = Number(cluster.cli(from, 'CLUSTER', 'COUNTKEYSINSLOT', String(slot)));
  let batches = 0;
  let running: Promise<T> | undefined;
  await cluster.moveSlot(slot, target, async () => {
    batches++;
    if (running || batches * 2 < total / 2) return;
    const first = answered();
    running = task();
    // Kept from an unhandled rejection while the move goes on; awaited below.
    running.catch(() => undefined);
    await first;
  });
  assert.equal(cluster.masterOf(slot), target);
  assert.ok(running, `the slot had ${total} keys`);
  t.diagnostic(`slot ${slot}: ${total} keys moved in ${batches} batches`);
  return running;
}

// Each account: ch0-ch2 published by the live instance, ch3 published by the
// other with a live player, ch4-ch5 the other's alone.
const LIVE: ('broadcaster' | 'player' | undefined)[] = ['broadcaster', 'broadcaster', 'broadcaster', 'player'];
const OTHER: ('broadcaster' | 'player' | undefined)[] = ['player', 'player', 'player', 'broadcaster', 'broadcaster', 'player'];

test("a dead instance is swept while its bucket's slot moves: every registration and connection of it removed, usage exact", async (t) => {
  const redis = await testRedis(t);
  if (!redis?.cluster) return;
  const { layout, base, slot, accounts } = oneBucket(redis);
  const watch = watched(redis.commands);
  const live = registryOn(redis, watch.commands, 'live');
  const dead = registryOn(redis, redis.commands, 'dead', 300);
  await register(live, 'live', accounts, LIVE);
  const before = await shown(live);
  await register(dead, 'dead', accounts, OTHER);
  assert.notDeepEqual(await shown(live), before);
  // Dead once its heartbeat expires.
  const alive = layout.alive('dead');
  await eventually('the heartbeat expired', async () => (await redis.commands.send(['EXISTS', alive], alive)) === 0);

  const swept = await midMove(
    t,
    redis,
    slot,
    () => watch.answered(sweepScript, base),
    () => live.sweep(),
  );
  assert.deepEqual(swept, ['dead']);
  assert.deepEqual(await shown(live), before);
  // Nothing of it is left in the bucket.
  const keys = await redis.keys();
  assert.deepEqual(
    keys.filter((key) => key.startsWith(base) && key.includes('dead')),
    [],
  );
  assert.deepEqual(await redis.commands.send(['SMEMBERS', `${base}synced`], base), ['live']);
  // The call that swept had declared the keys it found: each account and each channel the dead instance was in.
  const found = accounts.flatMap((a) => [`acct:${encodeName(a)}`, ...OTHER.map((_, i) => `ch:${encodeName(a)}${encodeName(`ch${i}`)}`)]);
  assert.ok(watch.declared.get('sweep')?.some((keys) => found.every((key) => keys.includes(base + key))));
  assert.equal(await live.sweep().then((gone) => gone.length), 0);
});

test("an instance syncs while its bucket's slot moves: what it no longer holds is removed, usage exact", async (t) => {
  const redis = await testRedis(t);
  if (!redis?.cluster) return;
  const { base, slot, accounts } = oneBucket(redis);
  const watch = watched(redis.commands);
  const live = registryOn(redis, redis.commands, 'live');
  const syncing = registryOn(redis, watch.commands, 'syncing');
  await register(live, 'live', accounts, LIVE);
  await register(syncing, 'kept', accounts, ['player', undefined, undefined, undefined, 'broadcaster']);
  const before = await shown(live);
  // The same instance registered more than it now holds (as after a lost reply).
  const earlier = registryOn(redis, redis.commands, 'syncing');
  await register(earlier, 'stale', accounts, OTHER);
  assert.notDeepEqual(await shown(live), before);

  syncing.resync();
  await midMove(
    t,
    redis,
    slot,
    () => watch.answered(syncScript, base),
    () => syncing.heartbeat(),
  );
  assert.deepEqual(await shown(live), before);
  const keys = await redis.keys();
  const peers = keys.find((key) => key === `${base}peers:syncing`) as string;
  const records = (await redis.commands.send(['HVALS', peers], peers)) as string[];
  assert.equal(records.filter((r) => r.includes('stale')).length, 0);
  assert.equal(records.length, accounts.length * 2);
});

test("a dead instance's room seats are swept while their bucket's slot moves: every seat of it removed, the rooms exact", async (t) => {
  const redis = await testRedis(t);
  if (!redis?.cluster) return;
  const { base, slot, accounts } = oneBucket(redis);
  const watch = watched(redis.commands, roomsLibrary, [roomSweepScript as Script<never, unknown>]);
  const store = (commands: RedisCommands, instanceId: string) =>
    createRedisRoomStore({ client: commands, buckets: redis.buckets, prefix: redis.prefix, instanceId, log: pino({ level: 'silent' }) });
  const live = store(watch.commands, 'live');
  const dead = store(redis.commands, 'dead');
  const seat = (account: string, room: string, name: string) => ({
    account,
    room,
    socketId: `${name}-${account}-${room}`,
    participant: { name, joinedAt: 1 },
    maxRooms: 0,
    maxParticipants: 0,
    history: 0,
  });
  const rooms = ['r0', 'r1', 'r2', 'r3'];
  // Each account: r0 and r1 shared with a live participant, r2 and r3 the dead instance's alone.
  for (const account of accounts) for (const room of rooms.slice(0, 2)) assert.ok((await live.join(seat(account, room, 'alive'))).ok);
  const before = await live.list();
  for (const account of accounts)
    for (const room of rooms) {
      assert.ok((await dead.join(seat(account, room, 'gone'))).ok);
      const cam = {
        type: 'webrtc' as const,
        streamId: `${account}-${room}`,
        socketId: `gone-${account}-${room}`,
        user: 'gone',
        channel: `${account}-${room}`,
        publishedAt: 1,
      };
      assert.equal(await dead.addStream(account, room, cam, 4), 'ok');
    }
  assert.notDeepEqual(await live.list(), before);

  // No live instance is registered in this test: every other instance is dead to `live`.
  const gone = await midMove(
    t,
    redis,
    slot,
    () => watch.answered(roomSweepScript, base),
    () => live.sweep(),
  );
  assert.equal(gone.length, accounts.length * rooms.length);
  assert.ok(gone.every((d) => d.participant.name === 'gone' && d.streams.length === 1));
  assert.deepEqual(await live.list(), before);
  // Nothing of it is left but the mark of what was swept (for its return).
  const keys = await redis.keys();
  assert.deepEqual(
    keys.filter((key) => key.startsWith(base) && key.includes('dead') && !key.includes('rmswept')),
    [],
  );
  // The call that swept had declared the rooms it found.
  const found = accounts.flatMap((a) => rooms.map((r) => `rm:${encodeName(a)}${encodeName(r)}`));
  assert.ok(watch.declared.get('sweep')?.some((keys) => found.every((key) => keys.includes(base + key))));
});
