// How the Redis registry lays out its keys and encodes names in them.
//
// Names arrive JSON-encoded: a JSON string literal has no raw newline and ends
// at its first unescaped quote, so encoded names can be concatenated into keys
// and newline-joined into values without one name ever colliding with another.
//
// Keys, after the prefix (REDIS_PREFIX); a, c, p, s are the encoded account,
// channel, peer and socket names:
//   accounts            set of accounts that have something to show
//   acct:<a>            hash: connections, bitrate, audioBitrate, players,
//                       broadcasters, refused:<action>, issue:<name>
//   chans:<a>           set of the account's channels
//   ch:<a><c>           hash: p -> "<role>\n<s>\n<instance>"
//   st:<a><c>           hash: bitrate, audioBitrate, publisher, stream (the
//                       stream as JSON, for the REST API)
//   instances           set of live instances; gone: set of dead ones being swept
//   alive:<instance>    heartbeat key with a TTL
//   conn:<instance>     hash: a -> connections counted by that instance
//   peers:<instance>    hash: <a><c><p> -> "<a>\n<c>\n<p>\n<s>", its registrations
import type { Peer, PeerRole } from '../../protocol';

export const encodeName = (name: string) => JSON.stringify(name);
export const decodeName = (encoded: string) => JSON.parse(encoded) as string;

/** The keys the TypeScript side reads directly; the scripts build the same ones in Lua (`KEYS_LUA`). */
export function registryKeys(prefix: string) {
  return {
    channel: (account: string, channel: string) => `${prefix}ch:${account}${channel}`,
    instances: `${prefix}instances`,
    alive: (instance: string) => `${prefix}alive:${instance}`,
  };
}

/** A channel's entry for one peer: `<role>\n<encoded socket id>\n<instance>`. */
export function peerFromEntry(account: string, encodedPeerID: string, entry: string): Peer {
  const [role, socket] = entry.split('\n');
  const type: PeerRole = role === 'broadcaster' ? 'broadcaster' : 'player';
  return { socketId: decodeName(socket ?? '""'), peerID: decodeName(encodedPeerID), type, account };
}

/** The key layout above, as Lua functions; the prefix is ARGV[1] of every script. */
export const KEYS_LUA = `
local P = ARGV[1]
local ACCOUNTS = P .. 'accounts'
local INSTANCES = P .. 'instances'
local GONE = P .. 'gone'
local function accountKey(a) return P .. 'acct:' .. a end
local function channelsKey(a) return P .. 'chans:' .. a end
local function channelKey(a, c) return P .. 'ch:' .. a .. c end
local function streamKey(a, c) return P .. 'st:' .. a .. c end
local function aliveKey(i) return P .. 'alive:' .. i end
local function connKey(i) return P .. 'conn:' .. i end
local function peersKey(i) return P .. 'peers:' .. i end
`;
