// Redis CPU of the registry's join script alone: no sockets, no server, no
// adapter. Each pair's broadcaster and player move to a new channel per
// handshake, as in bench/redis-cpu.ts, with the account bounds a server
// passes (ACCOUNT_MAX_CHANNELS, ACCOUNT_MAX_PEERS). An empty function called
// with the same arguments gives the floor of a call (parsing, the round trip):
//   node --import tsx bench/redis-moves.ts [--windows 5] [--pairs 40] [--handshakes 400]
// Redis's CPU (INFO) per handshake, median and range over the windows; the
// redis-server is the bench's own, so nothing else runs on it.
import { parseArgs } from 'node:util';
import { createClient } from 'redis';
import { encodeName } from '../src/channels/redis/keys';
import { createScriptRunner, joinScript, registryLibrary, type Registration } from '../src/channels/redis/scripts';
import { loadConfig } from '../src/config';
import { median } from './report';
import { redisCpuUs, startRedisServer } from './redis-server';

const { values } = parseArgs({
  options: {
    windows: { type: 'string', default: '5' },
    pairs: { type: 'string', default: '40' },
    handshakes: { type: 'string', default: '400' },
  },
});
const windows = Number(values.windows);
const pairCount = Number(values.pairs);
const perWindow = Number(values.handshakes);

const BASE = 'moves:{0}';
const INSTANCE = 'bench-instance';
const EMPTY_LIBRARY = `#!lua name=bench_empty\nredis.register_function('bench_empty', function(KEYS, ARGV) return 1 end)`;
const { accountMaxChannels, accountMaxPeers } = loadConfig({ STATIC_TOKEN: 'unused' });
const stream = JSON.stringify({ width: 640, height: 360, bitrate: 500, frameRate: 15, audioBitrate: 32, publisher: 'b', time: 0 });

type Role = 'broadcaster' | 'player';
const peerName = (id: number, role: Role) => encodeName(`${role === 'broadcaster' ? 'b' : 'p'}${id}`);
const channelName = (id: number, handshake: number) => encodeName(`c${id}-${handshake}`);

/** The join a socket sends when it moves from its channel of the handshake before. */
function moveInput(id: number, handshake: number, role: Role) {
  const broadcaster = role === 'broadcaster';
  const registration: Registration = {
    account: encodeName('bench'),
    channel: channelName(id, handshake),
    peerID: peerName(id, role),
    socketId: encodeName(`${role}-${id}-0123456789abcdef`),
    role,
    bitrate: broadcaster ? '500' : '',
    audioBitrate: broadcaster ? '32' : '',
    stream: broadcaster ? stream : '',
  };
  const leaving = handshake > 0 ? { channel: channelName(id, handshake - 1), peerID: peerName(id, role) } : undefined;
  return { instance: INSTANCE, registration, maxTotalBitrate: 0, maxChannels: accountMaxChannels, maxPeers: accountMaxPeers, leaving };
}

async function main() {
  const server = await startRedisServer();
  const client = createClient({ url: server.url });
  await client.connect();
  try {
    const runner = createScriptRunner({ send: (args) => client.sendCommand(args) }, { library: registryLibrary, declareKeys: false });
    await client.sendCommand(['SADD', `${BASE}synced`, INSTANCE]);
    await client.sendCommand(['FUNCTION', 'LOAD', EMPTY_LIBRARY]);
    const move = (id: number, handshake: number, role: Role) => runner.run(joinScript, BASE, moveInput(id, handshake, role));
    const empty = (id: number, handshake: number, role: Role) =>
      client.sendCommand(['FCALL', 'bench_empty', '1', BASE, ...joinScript.args(moveInput(id, handshake + 1, role))]);
    const cpuUs = async () => redisCpuUs(String(await client.sendCommand(['INFO', 'cpu'])));
    /** Redis CPU per handshake (µs) of `perWindow` handshakes per pair, all pairs at once. */
    async function window(call: (id: number, handshake: number, role: Role) => Promise<unknown>, from: number) {
      const before = await cpuUs();
      await Promise.all(
        Array.from({ length: pairCount }, async (_, id) => {
          for (let handshake = from; handshake < from + perWindow; handshake++) {
            await call(id, handshake, 'broadcaster');
            await call(id, handshake, 'player');
          }
        }),
      );
      return ((await cpuUs()) - before) / (pairCount * perWindow);
    }
    // A warm-up window: every pair in a channel, and Redis past its first calls.
    await window(move, 0);
    const moves: number[] = [];
    const floor: number[] = [];
    for (let w = 1; w <= windows; w++) {
      moves.push(await window(move, w * perWindow));
      floor.push(await window(empty, 0));
    }
    const show = (figures: number[]) =>
      `${median(figures).toFixed(1)} [${Math.min(...figures).toFixed(1)}–${Math.max(...figures).toFixed(1)}]`;
    console.log(`Redis CPU per handshake (2 joins, each moving a socket), µs: median [range] of ${windows} windows`);
    console.log(`  ${pairCount} pairs × ${perWindow} handshakes per window, account bounds ${accountMaxChannels}/${accountMaxPeers}`);
    console.log(`  join script:                     ${show(moves)}`);
    console.log(`  empty function, same arguments:  ${show(floor)}`);
  } finally {
    await client.quit();
    await server.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
