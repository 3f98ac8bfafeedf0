// How the registry's and the rooms' scripts reach Redis: as functions of a
// library each on a Redis that has them (loaded by the first call that misses
// them), and with EVALSHA on one that has not (Redis 6). Replies come from a fake Redis that
// answers as a real one would.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorReply } from 'redis';
import { createScriptRunner, heartbeatScript, registryLibrary } from '../src/channels/redis/scripts';
import { listScript, messageScript, roomsLibrary } from '../src/rooms/redis/scripts';

/** A fake Redis: `answer` replies to each command (or throws its error reply); every command is kept. */
function fakeRedis(answer: (args: string[]) => unknown) {
  const sent: string[][] = [];
  return {
    sent,
    /** Command names, with the function or script they call. */
    names: () => sent.map((args) => (['FCALL', 'FUNCTION'].includes(args[0] as string) ? `${args[0]} ${args[1]}` : (args[0] as string))),
    client: {
      send: async (args: string[]) => {
        sent.push(args);
        return answer(args);
      },
    },
  };
}

const beat = { instance: 'i1', aliveMs: 1000 };
const fn = registryLibrary.functionName(heartbeatScript) as string;

test('a Redis with functions loads the library on the first call that misses it, then answers each call with one FCALL', async () => {
  let loaded = false;
  const redis = fakeRedis((args) => {
    if (args[0] === 'FUNCTION') return void (loaded = true);
    if (args[0] === 'FCALL' && !loaded) throw new ErrorReply('ERR Function not found');
    if (args[0] === 'FCALL') return 1;
    throw new Error(`unexpected ${args[0]}`);
  });
  const runner = createScriptRunner(redis.client, { library: registryLibrary });
  assert.equal(await runner.run(heartbeatScript, 'p:{instances}', beat), true);
  assert.equal(await runner.run(heartbeatScript, 'p:{instances}', beat), true);
  assert.deepEqual(redis.names(), [`FCALL ${fn}`, 'FUNCTION LOAD', `FCALL ${fn}`, `FCALL ${fn}`]);
  assert.equal(redis.sent[1]?.[2], registryLibrary.source);
});

test('Redis 6 (no FCALL): the runner turns to EVALSHA for good, and EVAL when Redis forgot the script', async () => {
  const known = new Set<string>();
  const redis = fakeRedis((args) => {
    if (args[0] === 'FCALL') throw new ErrorReply("ERR unknown command 'FCALL', with args beginning with: ");
    if (args[0] === 'EVALSHA' && !known.has(args[1] as string)) throw new ErrorReply('NOSCRIPT No matching script.');
    if (args[0] === 'EVAL') known.add(heartbeatScript.sha);
    return 1;
  });
  const runner = createScriptRunner(redis.client, { library: registryLibrary });
  assert.equal(await runner.run(heartbeatScript, 'p:{instances}', beat), true);
  assert.equal(await runner.run(heartbeatScript, 'p:{instances}', beat), true);
  assert.deepEqual(redis.names(), [`FCALL ${fn}`, 'EVALSHA', 'EVAL', 'EVALSHA']);
});

test('a library that does not compile is a bug, not a reason to fall back', async () => {
  const redis = fakeRedis((args) => {
    if (args[0] === 'FCALL') throw new ErrorReply('ERR Function not found');
    throw new ErrorReply("ERR Error compiling function: user_function:1: '=' expected near 'x'");
  });
  const runner = createScriptRunner(redis.client, { library: registryLibrary });
  await assert.rejects(runner.run(heartbeatScript, 'p:{instances}', beat), /Error compiling function/);
});

test("the rooms' scripts are a library of their own, loaded on the first call that misses it", async () => {
  assert.match(roomsLibrary.name, /^vw_rooms_[0-9a-f]{16}$/);
  assert.equal(registryLibrary.functionName(listScript), undefined);
  const room = roomsLibrary.functionName(listScript) as string;
  let loaded = false;
  const redis = fakeRedis((args) => {
    if (args[0] === 'FUNCTION') return void (loaded = true);
    if (args[0] === 'FCALL' && !loaded) throw new ErrorReply('ERR Function not found');
    if (args[0] === 'FCALL') return [];
    throw new Error(`unexpected ${args[0]}`);
  });
  const runner = createScriptRunner(redis.client, { library: roomsLibrary });
  assert.deepEqual(await runner.run(listScript, 'p:{0.1}', undefined), []);
  assert.deepEqual(await runner.run(listScript, 'p:{0.1}', undefined), []);
  assert.deepEqual(redis.names(), [`FCALL ${room}`, 'FUNCTION LOAD', `FCALL ${room}`, `FCALL ${room}`]);
  assert.equal(redis.sent[1]?.[2], roomsLibrary.source);
});

test("a Redis user refused functions (NOPERM) gets the rooms' scripts with EVALSHA, each key it touches declared", async () => {
  const redis = fakeRedis((args) => {
    if (args[0] === 'FCALL') throw new ErrorReply("NOPERM User default has no permissions to run the 'fcall' command");
    return 1;
  });
  const runner = createScriptRunner(redis.client, { library: roomsLibrary });
  const chat = { account: 'Site', room: 'lobby', socketId: 's1', message: { text: 'hi', user: 'ann', timestamp: 1 }, keep: 100 };
  assert.equal(await runner.run(messageScript, 'p:{0.1}', chat), 1);
  assert.equal(await runner.run(messageScript, 'p:{0.1}', chat), 1);
  assert.deepEqual(redis.names(), [`FCALL ${roomsLibrary.functionName(messageScript)}`, 'EVALSHA', 'EVALSHA']);
  // The room's seats and messages, under the bucket's base; then the script's ARGV.
  assert.deepEqual(redis.sent[1]?.slice(2, 6), ['3', 'p:{0.1}', 'p:{0.1}rm:"Site""lobby"', 'p:{0.1}rmm:"Site""lobby"']);
});
