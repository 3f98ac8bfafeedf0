// Room state (who is in, what they publish, the chat history) behind one
// interface: kept in memory for one process, in Redis for several. Rooms
// belong to an account: two accounts' rooms of one name never meet.

/** A participant as the room shows it (upstream's shape). */
export interface RoomParticipant {
  name: string;
  joinedAt: number;
}

/** A published stream as the room shows it: the client's parameters, then who and where. */
export interface RoomStream extends Record<string, unknown> {
  type: 'webrtc';
  streamId: string;
  socketId: string;
  user: string;
  channel: string;
  publishedAt: number;
}

/** A chat line as the room keeps it: the client's fields, `user` and `timestamp` stamped by the server. */
export type RoomMessage = Record<string, unknown> & { user: string; timestamp: number };

/** What a joiner is sent. `participants` is keyed by socket id, as upstream's clients read it. */
export interface RoomView {
  participants: Record<string, RoomParticipant>;
  streams: Record<string, RoomStream>;
  messages: RoomMessage[];
  meta: Record<string, unknown>;
}

export interface RoomJoinRequest {
  account: string;
  room: string;
  socketId: string;
  participant: RoomParticipant;
  /** Rooms the account may hold, participants a room may hold (0: no bound). */
  maxRooms: number;
  maxParticipants: number;
  /** How many of the latest messages the joiner gets. */
  history: number;
}

export type RoomRefusal = 'rooms' | 'participants' | 'user' | 'already';

export type RoomJoinResult = { ok: true; view: RoomView } | { ok: false; refusal: RoomRefusal };

/** A participant that left, with the streams that went with it. */
export interface RoomDeparture {
  account: string;
  room: string;
  socketId: string;
  participant: RoomParticipant;
  streams: RoomStream[];
}

/** What a restore changed besides putting seats back. */
export interface RoomRestore {
  /** Seats Redis held for this instance that no socket here holds: their rooms hear them leave. */
  departures: RoomDeparture[];
  /** Streams Redis held for a seat here that its socket does not publish: their rooms hear them go. */
  streamsGone: { account: string; room: string; streams: RoomStream[] }[];
  /** Seats not put back: another socket of the user took a seat in the room meanwhile. */
  seatsLost: { account: string; room: string; socketId: string }[];
  /** Streams not put back: another participant published one of that name meanwhile. */
  streamsLost: { account: string; room: string; socketId: string; streamId: string }[];
  /**
   * Seats put back that a sweep had taken (this instance was taken for dead,
   * and their rooms heard them leave), with the streams put back with them.
   */
  rejoined: RoomDeparture[];
}

export interface RoomSummary {
  account: string;
  room: string;
  participants: number;
  streams: number;
}

export type AddStreamResult = 'ok' | 'exists' | 'absent' | 'tooMany';

export interface RoomStore {
  join(request: RoomJoinRequest): Promise<RoomJoinResult>;
  /** Removes the socket's participant and its streams; null when it was not in the room. */
  leave(account: string, room: string, socketId: string): Promise<RoomDeparture | null>;
  /** Adds a stream of a participant; at most `maxPerParticipant` each. */
  addStream(account: string, room: string, stream: RoomStream, maxPerParticipant: number): Promise<AddStreamResult>;
  /** Removes a stream the socket published; null when it has none of that name. */
  removeStream(account: string, room: string, streamId: string, socketId: string): Promise<RoomStream | null>;
  /** Keeps a message of a participant, the latest `keep` only; false when the socket is not in the room. */
  addMessage(account: string, room: string, socketId: string, message: RoomMessage, keep: number): Promise<boolean>;
  /** Every room, by account then name. */
  list(): Promise<RoomSummary[]>;
  close(): Promise<void>;
}

/** Whether two summaries are in the order /rooms lists them. */
export const bySummary = (a: RoomSummary, b: RoomSummary) =>
  a.account < b.account ? -1 : a.account > b.account ? 1 : a.room < b.room ? -1 : a.room > b.room ? 1 : 0;
