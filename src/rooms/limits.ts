// The bounds of a room, fixed and configured.

/** Messages a joiner gets from the history, as upstream. */
export const JOIN_HISTORY = 10;
/** Streams one participant may publish in one room. */
export const MAX_STREAMS_PER_PARTICIPANT = 4;
/** Bytes of a stream's `parameters` (kept in the room and sent to every joiner). */
export const MAX_PARAMETERS_BYTES = 2048;

export interface RoomLimits {
  /** ROOM_MAX_PER_ACCOUNT */
  maxRooms: number;
  /** ROOM_MAX_PARTICIPANTS */
  maxParticipants: number;
  /** ROOM_MAX_MESSAGE_BYTES */
  maxMessageBytes: number;
  /** ROOM_CHAT_PER_SECOND */
  chatPerSecond: number;
  /** ROOM_HISTORY */
  history: number;
}

/** A value's size as JSON, as it is stored and sent. */
export const jsonBytes = (value: unknown) => Buffer.byteLength(JSON.stringify(value) ?? '');
