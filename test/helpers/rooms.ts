// Room participants as a site's page makes them: signed in with an access
// token the site minted for the user, then roomJoin.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { mintToken } from '../../src/auth/tokens';
import { connect, next, type Client } from './client';

export const SITE_A = { name: 'Site A', token: 'token-of-site-a' };
export const SITE_B = { name: 'Site B', token: 'token-of-site-b' };
/** Site A's plan: streams up to 500 kbps. */
export const PLAN_BITRATE = 500;

/** An accounts file with two sites on one plan. */
export function roomAccountsFile(): string {
  const file = join(mkdtempSync(join(tmpdir(), 'vw-rooms-')), 'accounts.json');
  writeFileSync(
    file,
    JSON.stringify({
      plans: [{ id: 1, name: 'Rooms', properties: { bitrate: PLAN_BITRATE } }],
      accounts: [
        { name: SITE_A.name, token: SITE_A.token, properties: {}, planId: 1 },
        { name: SITE_B.name, token: SITE_B.token, properties: {}, planId: 1 },
      ],
    }),
  );
  return file;
}

export type Update = Record<string, unknown>;

/** A signed-in socket that keeps every roomUpdate it gets. */
export type Participant = Client & { updates: Update[]; user: string };

export async function signIn(t: TestContext | undefined, url: string, user: string, site = SITE_A): Promise<Participant> {
  const token = await mintToken({ account: site, user, ttlSeconds: 3600 });
  const socket = (await connect(t, url, token)) as Participant;
  socket.user = user;
  socket.updates = [];
  socket.on('roomUpdate', (u: Update) => socket.updates.push(u));
  return socket;
}

/** The next roomUpdate that matches (a key it has, or a predicate). */
export function nextUpdate(socket: Client, match: string | ((u: Update) => boolean), ms?: number): Promise<Update> {
  const accepts = typeof match === 'string' ? (u: Update) => match in u : match;
  return next<Update>(socket, 'roomUpdate', accepts, ms);
}

/** Joins and resolves with the joiner's snapshot; an error update fails it. */
export async function joinRoom(socket: Client, room: string, ms?: number): Promise<Update> {
  const reply = nextUpdate(socket, (u) => u.room === room && (u.type === 'roomJoin' || 'error' in u), ms);
  socket.emit('roomJoin', { room });
  const update = await reply;
  if ('error' in update) throw new Error(`roomJoin refused: ${String(update.error)}`);
  return update;
}

/** The error a room event gets. */
export async function roomError(socket: Client, event: string, payload: unknown): Promise<Update> {
  const reply = nextUpdate(socket, 'error');
  socket.emit(event, payload);
  return reply;
}

/** A roomUpdate or message the socket got already, or the next one that matches. */
export function seen(socket: Participant, event: 'roomUpdate' | 'message', match: (u: Update) => boolean, ms?: number): Promise<Update> {
  const earlier = (event === 'roomUpdate' ? socket.updates : socket.messages).find(match);
  return earlier ? Promise.resolve(earlier) : next<Update>(socket, event, match, ms);
}
