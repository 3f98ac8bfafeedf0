// The wire contract with the VideoWhisper HTML5 Videochat client, declared once.
// Socket.IO checks every `emit` and `on` against these maps; the zod schemas
// check what a client actually sent before anything else looks at it.
import { z } from 'zod';
import type { PeerConfig } from './ice';

export const DEFAULT_CHANNEL = 'VideoWhisper';

/** The exact `connect_error` messages the client shows to the user. */
export const HandshakeError = {
  authentication: 'ERROR: Authentication error',
  suspended: 'ERROR: Suspended account',
  connections: 'ERROR: Connection limit exceeded',
  totalBitrate: 'ERROR: Bitrate limit exceeded',
  unavailable: 'ERROR: Server unavailable',
  tooManyAttempts: 'ERROR: Too many failed attempts',
  origin: 'ERROR: Origin not allowed',
} as const;

/**
 * Refusals of user/PIN sign-in and signed access tokens (`connect_error`).
 * With EXTRA_SECURITY in production each of them is `failed` instead.
 */
export const SignInError = {
  failed: 'ERROR: Authentication failed',
  accountNotFound: 'ERROR: Account not found',
  noLogin: 'ERROR: This account does not support user/pin authentication',
  /** Shown after `ERROR: ` when the login URL refuses without a message. */
  userRefusedText: 'User authentication failed',
  loginUnavailable: 'ERROR: Login service unavailable',
  tokenExpired: 'ERROR: Token expired',
  tokenNotYetValid: 'ERROR: Token not yet valid',
  tokenLifetime: 'ERROR: Token lifetime too long',
  tokenInvalid: 'ERROR: Invalid token',
} as const;

export type PeerRole = 'broadcaster' | 'player';

export interface Peer {
  socketId: string;
  peerID: string;
  type: PeerRole;
  account: string;
}

/** Shared limits, so a name can never become a memory sink. */
export interface NameLimits {
  maxNameLength: number;
}

/** A number or a numeric string (forms often hand strings over), never NaN, negative or over `max`. */
export const numeric = (max: number) =>
  z.preprocess((value) => (typeof value === 'string' && value.trim() !== '' ? Number(value) : value), z.number().finite().min(0).max(max));

/**
 * The numbers a publish states about its stream (pixels, frames per second,
 * kbps), in the order the REST API shows them. Streams and plans both take
 * their fields from this list.
 */
export const STREAM_FIELDS = ['width', 'height', 'bitrate', 'frameRate', 'audioBitrate'] as const;
export type StreamField = (typeof STREAM_FIELDS)[number];

/** A zod shape with `field` for every stream field, and for `framerate`, the original client's spelling of `frameRate`. */
export function streamShape<T extends z.ZodType>(field: T): Record<StreamField | 'framerate', T> {
  const shape = { framerate: field } as Record<StreamField | 'framerate', T>;
  for (const name of STREAM_FIELDS) shape[name] = field;
  return shape;
}

/** The stream fields of `given` alone, each 0 when absent; `framerate` stands in for a missing `frameRate`. */
export function streamFields(given: Partial<Record<StreamField | 'framerate', number>>): Record<StreamField, number> {
  const stream = {} as Record<StreamField, number>;
  for (const name of STREAM_FIELDS) stream[name] = given[name] ?? 0;
  stream.frameRate = given.frameRate ?? given.framerate ?? 0;
  return stream;
}

const streamSchema = z.looseObject(streamShape(numeric(1e9).optional())).transform(streamFields);

/** A published stream as the server keeps it: every field a number, 0 when the publish left it out. */
export type Stream = z.output<typeof streamSchema>;

export const ZERO_STREAM: Stream = streamSchema.parse({});

/** A relayed message's `type` (offer, answer, candidate, or the peers' own) is short. */
const MAX_TYPE_LENGTH = 64;

/** A field that is blank or not what it should be counts as absent: the others still decide. */
const blankIsAbsent = <T extends z.ZodType>(schema: T) =>
  z.preprocess((v) => (v === '' || v === null ? undefined : v), schema.optional()).catch(undefined);

/**
 * Whether `text` has from `min` to `max` characters, counted in code points
 * as zod's `.min`/`.max` count them (an emoji is one character, not two
 * UTF-16 units), so every check of a name agrees with the schema.
 */
export function lengthWithin(text: string, min: number, max: number): boolean {
  // A code point is one or two UTF-16 units: most strings need no counting.
  if (text.length < min || text.length > 2 * max) return false;
  if (text.length <= max && text.length >= 2 * min) return true;
  let count = 0;
  for (let i = 0; i < text.length; i++) {
    // A high surrogate followed by a low one is one code point (as string iteration counts it).
    const unit = text.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const low = text.charCodeAt(i + 1);
      if (low >= 0xdc00 && low <= 0xdfff) i++;
    }
    if (++count > max) return false;
  }
  return count >= min;
}

/** `text` cut to at most `max` code points, for echoing client input back. */
export function truncateName(text: string, max: number): string {
  if (text.length <= max) return text;
  let cut = 0;
  let count = 0;
  for (const char of text) {
    if (count++ === max) break;
    cut += char.length;
  }
  return text.slice(0, cut);
}

/** Schemas for the client events; built per server so limits come from config. */
export function eventSchemas({ maxNameLength }: NameLimits) {
  const name = z.string().min(1).max(maxNameLength);
  return {
    // An account token, a signed access token, or account + user + pin.
    auth: z.looseObject({
      token: blankIsAbsent(z.string().max(4096)),
      account: blankIsAbsent(z.string().max(255)),
      user: blankIsAbsent(name),
      pin: blankIsAbsent(z.string().max(1024)),
    }),
    publish: z.tuple([name, name, z.union([streamSchema, z.null(), z.undefined()]).optional()]).rest(z.unknown()),
    subscribe: z.tuple([name, z.union([name, z.literal(''), z.null(), z.undefined()]).optional()]).rest(z.unknown()),
    // A relayed message keeps every field the peers put in it; only what the
    // server routes on is checked.
    messagePeer: z
      .tuple([z.looseObject({ target: name, type: z.string().max(MAX_TYPE_LENGTH).optional() }).brand<'FromPeer'>()])
      .rest(z.unknown()),
    message: z.tuple([z.looseObject({}).brand<'FromPeer'>()]).rest(z.unknown()),
    /**
     * `messagePeer` checked by hand, to the same rules: it runs for every
     * offer, answer and candidate, and hands back the client's own object
     * (the schema copies it). The schema describes what a refused one lacks.
     */
    peerMessage(args: unknown[]): PeerMessage | undefined {
      const message = args[0];
      if (typeof message !== 'object' || message === null || Array.isArray(message)) return undefined;
      const { target, type } = message as Record<string, unknown>;
      if (typeof target !== 'string' || !lengthWithin(target, 1, maxNameLength)) return undefined;
      if (type !== undefined && (typeof type !== 'string' || !lengthWithin(type, 0, MAX_TYPE_LENGTH))) return undefined;
      return message as PeerMessage;
    },
  };
}
export type EventSchemas = ReturnType<typeof eventSchemas>;

/**
 * A message a peer wrote, checked by `eventSchemas` (the brand says so): it
 * keeps every field the peers put in it and goes out on `message` with `from`
 * set by the server.
 */
export type FromPeer = Record<string, unknown> & { from?: string; type?: string } & z.$brand<'FromPeer'>;
/** A `messagePeer`: a message for one peer, `target`. */
export type PeerMessage = FromPeer & { target: string };

/** To a broadcaster after its publish: who is in the channel, and the ICE servers to reach them. */
export interface PeersMessage {
  type: 'peers';
  from: '_channel_';
  target: string;
  peers: Peer[];
  peerConfig: PeerConfig;
}

/** To a channel's broadcaster: the player `peerID` subscribed. */
export interface PeerJoinedMessage {
  type: 'peer';
  from: string;
  target: string;
  peerID: string;
}

/** To the peers left in a channel: `from` left it. */
export interface CloseMessage {
  from: string;
  target: 'all';
  payload: { action: 'close'; message: string };
}

/** Everything the server sends on `message` (docs/PROTOCOL.md, "Server to client"). */
export type ServerMessage = PeersMessage | PeerJoinedMessage | CloseMessage | FromPeer;

export interface ErrorPayload {
  from: '_server_';
  to: string;
  message: string;
}

export interface ClientToServerEvents {
  publish: (...args: unknown[]) => void;
  subscribe: (...args: unknown[]) => void;
  messagePeer: (...args: unknown[]) => void;
  message: (...args: unknown[]) => void;
  roomJoin: (...args: unknown[]) => void;
  roomLeave: (...args: unknown[]) => void;
  roomPublish: (...args: unknown[]) => void;
  roomUnpublish: (...args: unknown[]) => void;
  roomMessage: (...args: unknown[]) => void;
}

export interface ServerToClientEvents {
  message: (message: ServerMessage) => void;
  publishError: (error: ErrorPayload) => void;
  subscribeError: (error: ErrorPayload) => void;
  uniquenessError: (error: ErrorPayload) => void;
  /** Added here: a `messagePeer` or `message` the server would not relay (rate limit). */
  messageError: (error: ErrorPayload) => void;
  /** Rooms (docs/ROOMS.md): the joiner's snapshot, changes, and errors, each with `room`. */
  roomUpdate: (update: Record<string, unknown>) => void;
  /** A room stream was removed: its publisher stops sending it. */
  unpublish: (peerID: string, channel: string) => void;
}

/** What instances tell each other about rooms through the adapter. */
export interface InterServerEvents {
  roomStream: (change: { account: string; room: string; channel: string; publisher: string; gone: boolean }) => void;
}

export const RATE_LIMITED = 'ERROR: Too many events, slow down';
/** An event within the rate that found the socket's queue full (the registry is a second behind). */
export const EVENT_DROPPED = 'ERROR: Too many events waiting, event dropped';

/** Message types only the server sends (`_channel_` to a broadcaster); peers may not relay them. */
export const SERVER_MESSAGE_TYPES: ReadonlySet<string> = new Set<(PeersMessage | PeerJoinedMessage)['type']>(['peers', 'peer']);

export function closeMessage(peerID: string, channel: string): CloseMessage {
  return { from: peerID, target: 'all', payload: { action: 'close', message: `${peerID} left @${channel}` } };
}

export function unfitMessage(issues: readonly string[]): string {
  return `Unfit: ${issues.join(', ')}.`;
}

export function uniquenessMessage(peerID: string, channel: string): string {
  return `${peerID} is already connected to @${channel}.`;
}
