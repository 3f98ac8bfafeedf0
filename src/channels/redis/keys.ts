// How the Redis registry lays out its keys and encodes names in them.
//
// Names arrive JSON-encoded: a JSON string literal has no raw newline and ends
// at its first unescaped quote, so encoded names can be concatenated into keys
// and newline-joined into values without one name ever colliding with another.
//
// Redis Cluster runs a script on one slot only, so every key one decision
// touches shares a hash tag. Accounts are spread over buckets; a bucket's keys
// all start with `<prefix>{<tag>}` (its base, the script's KEYS[1]), so an
// account's usage, its channels, the bucket's account index and each
// instance's record of what it registered there sit in one slot, and each
// script stays atomic. The bucket tags are picked so that the buckets spread
// evenly over the slots (and so over the shards, as `redis-cli --cluster
// create` assigns them); the REST views read one bucket at a time instead of
// scanning the keyspace. One Redis has one bucket.
//
// Keys of a bucket, after its base; a, c, p, s are the encoded account,
// channel, peer and socket names (encoded names start with `"`, so they never
// collide with the other fields of a hash):
//   accounts            set of the bucket's accounts that have something to show
//   acct:<a>            hash: connections, channels (how many have peers),
//                       bitrate, audioBitrate, players, broadcasters,
//                       refused:<action>, issue:<name>, and for each channel
//                       with peers c -> its stream as JSON, empty while
//                       unpublished (the REST views list them from here)
//   ch:<a><c>           hash: p -> "<role>\n<s>\n<instance>" (with "\n+" for a
//                       socket's extra registration, below); while published
//                       also publisher ("<p>\n<s>"), bitrate, audioBitrate.
//                       Its values stay short, so Redis keeps it small and in
//                       order. The last peer's leave deletes it.
//   synced              set of instances whose state this bucket holds
//   conn:<instance>     hash: a -> connections counted by that instance
//   peers:<instance>    hash: its registrations, "<a>\n<c>\n<p>\n<s>", under s
//                       (a socket's one registration: a move overwrites it),
//                       or under <a><c><p> for the extra ones a socket holds
//                       in rooms
//
// Liveness, under `<prefix>{instances}`:
//   instances           set of live instances; gone: set of dead ones being swept
//   alive:<instance>    heartbeat key with a TTL
import keySlot from 'cluster-key-slot';
import type { Peer, PeerRole } from '../../protocol';
import type { LocatedPeer } from '../registry';

export const encodeName = (name: string) => JSON.stringify(name);
export const decodeName = (encoded: string) => JSON.parse(encoded) as string;

/** Buckets on a Redis Cluster: divisible by 2, 3, 4, 5, 6, 8, 10, 12 and 15 shards. */
export const CLUSTER_BUCKETS = 120;
const SLOTS = 16384;

export interface KeyLayout {
  /** Every bucket's base (`<prefix>{<tag>}`). */
  readonly buckets: readonly string[];
  /** The base of the bucket that holds an (encoded) account. */
  bucketOf(account: string): string;
  /** A channel's peers, in its account's bucket. */
  channel(account: string, channel: string): string;
  /** The base of the liveness keys. */
  readonly liveness: string;
  readonly instances: string;
  alive(instance: string): string;
}

/**
 * A tag per bucket whose slot falls in the middle third of the bucket's share
 * of the slots, so that buckets spread evenly whatever the number of shards
 * that divides the bucket count.
 */
function bucketTags(count: number): string[] {
  const tags: string[] = [];
  for (let bucket = 0; bucket < count; bucket++) {
    const from = (bucket * SLOTS) / count;
    const width = SLOTS / count;
    const [low, high] = [from + width / 3, from + (2 * width) / 3];
    for (let n = 0; ; n++) {
      const tag = `${bucket}.${n}`;
      const slot = keySlot(tag);
      if (count === 1 || (slot >= low && slot < high)) {
        tags.push(tag);
        break;
      }
    }
  }
  return tags;
}

export function keyLayout(prefix: string, bucketCount: number): KeyLayout {
  const buckets = bucketTags(bucketCount).map((tag) => `${prefix}{${tag}}`);
  const bucketOf = (account: string) => buckets[Math.floor((keySlot(account) * bucketCount) / SLOTS)] as string;
  const liveness = `${prefix}{instances}`;
  return {
    buckets,
    bucketOf,
    channel: (account, channel) => bucketOf(account) + bucketKeys.channel(account, channel),
    liveness,
    instances: `${liveness}instances`,
    alive: (instance) => `${liveness}alive:${instance}`,
  };
}

/** The keys of a bucket, after its base (the layout above; KEYS_LUA builds the same names). */
export const bucketKeys = {
  accounts: 'accounts',
  synced: 'synced',
  account: (a: string) => `acct:${a}`,
  channel: (a: string, c: string) => `ch:${a}${c}`,
  connections: (instance: string) => `conn:${instance}`,
  registrations: (instance: string) => `peers:${instance}`,
};

/** A channel's entry for one peer: `<role>\n<encoded socket id>\n<instance>[\n+]`. */
export function peerFromEntry(account: string, encodedPeerID: string, entry: string): Peer {
  const [role, socket] = entry.split('\n');
  const type: PeerRole = role === 'broadcaster' ? 'broadcaster' : 'player';
  return { socketId: decodeName(socket ?? '""'), peerID: decodeName(encodedPeerID), type, account };
}

/** The same, with the instance that holds the socket (for a message sent to it, never for a client). */
export function locatedPeerFromEntry(account: string, encodedPeerID: string, entry: string): LocatedPeer {
  const [role, socket, instance] = entry.split('\n');
  const type: PeerRole = role === 'broadcaster' ? 'broadcaster' : 'player';
  return { socketId: decodeName(socket ?? '""'), peerID: decodeName(encodedPeerID), type, account, instance };
}

/**
 * The key layout above, as Lua functions of the call's base (KEYS[1]), which
 * `begin` (scripts.ts) sets at the start of every call.
 */
export const KEYS_LUA = `
local BASE, ACCOUNTS, SYNCED, INSTANCES, GONE
local function setBase(base)
  BASE = base
  ACCOUNTS, SYNCED, INSTANCES, GONE = base .. 'accounts', base .. 'synced', base .. 'instances', base .. 'gone'
end
local function accountKey(a) return BASE .. 'acct:' .. a end
local function channelKey(a, c) return BASE .. 'ch:' .. a .. c end
local function aliveKey(i) return BASE .. 'alive:' .. i end
local function connKey(i) return BASE .. 'conn:' .. i end
local function peersKey(i) return BASE .. 'peers:' .. i end
`;
