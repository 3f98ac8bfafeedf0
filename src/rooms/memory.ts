// Rooms of one process.
import { bySummary, type RoomMessage, type RoomParticipant, type RoomStore, type RoomStream, type RoomSummary } from './store';

interface RoomState {
  participants: Map<string, RoomParticipant>;
  /** user -> socket id: one seat per user. */
  users: Map<string, string>;
  streams: Map<string, RoomStream>;
  messages: RoomMessage[];
}

export function createMemoryRoomStore(): RoomStore {
  const accounts = new Map<string, Map<string, RoomState>>();
  const roomOf = (account: string, room: string) => accounts.get(account)?.get(room);

  return {
    async join({ account, room, socketId, participant, maxRooms, maxParticipants, history }) {
      let rooms = accounts.get(account);
      let state = rooms?.get(room);
      if (state?.participants.has(socketId)) return { ok: false, refusal: 'already' };
      if (state?.users.has(participant.name)) return { ok: false, refusal: 'user' };
      if (!state && maxRooms && (rooms?.size ?? 0) >= maxRooms) return { ok: false, refusal: 'rooms' };
      if (state && maxParticipants && state.participants.size >= maxParticipants) return { ok: false, refusal: 'participants' };
      if (!rooms) accounts.set(account, (rooms = new Map()));
      if (!state) rooms.set(room, (state = { participants: new Map(), users: new Map(), streams: new Map(), messages: [] }));
      state.participants.set(socketId, participant);
      state.users.set(participant.name, socketId);
      return {
        ok: true,
        view: {
          participants: Object.fromEntries(state.participants),
          streams: Object.fromEntries(state.streams),
          messages: history > 0 ? state.messages.slice(-history) : [],
          meta: {},
        },
      };
    },

    async leave(account, room, socketId) {
      const rooms = accounts.get(account);
      const state = rooms?.get(room);
      const participant = state?.participants.get(socketId);
      if (!rooms || !state || !participant) return null;
      state.participants.delete(socketId);
      if (state.users.get(participant.name) === socketId) state.users.delete(participant.name);
      const streams = [...state.streams.values()].filter((s) => s.socketId === socketId);
      for (const stream of streams) state.streams.delete(stream.streamId);
      // An empty room is gone, history and all, as upstream's.
      if (state.participants.size === 0) rooms.delete(room);
      if (rooms.size === 0) accounts.delete(account);
      return { account, room, socketId, participant, streams };
    },

    async addStream(account, room, stream, maxPerParticipant) {
      const state = roomOf(account, room);
      if (!state?.participants.has(stream.socketId)) return 'absent';
      if (state.streams.has(stream.streamId)) return 'exists';
      const own = [...state.streams.values()].filter((s) => s.socketId === stream.socketId).length;
      if (maxPerParticipant && own >= maxPerParticipant) return 'tooMany';
      state.streams.set(stream.streamId, stream);
      return 'ok';
    },

    async removeStream(account, room, streamId, socketId) {
      const state = roomOf(account, room);
      const stream = state?.streams.get(streamId);
      if (!state || !stream || stream.socketId !== socketId) return null;
      state.streams.delete(streamId);
      return stream;
    },

    async addMessage(account, room, socketId, message, keep) {
      const state = roomOf(account, room);
      if (!state?.participants.has(socketId)) return false;
      state.messages.push(message);
      if (state.messages.length > keep) state.messages.splice(0, state.messages.length - keep);
      return true;
    },

    async list() {
      const result: RoomSummary[] = [];
      for (const [account, rooms] of accounts)
        for (const [room, state] of rooms)
          result.push({ account, room, participants: state.participants.size, streams: state.streams.size });
      return result.sort(bySummary);
    },

    close: async () => accounts.clear(),
  };
}
