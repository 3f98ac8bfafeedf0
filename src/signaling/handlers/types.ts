// What every signaling handler is: a function of the socket and the event's
// arguments, made by a factory that is given only what it uses (peerjs-server's
// `({ realm }) => (client, message) => ...`), so a test can call one with fakes.
import type { PeerSocket } from '../replies';

/**
 * Handles one client event, at once or by the promise it returns; a throw or
 * a rejection is answered on the event's error event by the caller (events.ts).
 */
export type Handler = (socket: PeerSocket, args: unknown[]) => Promise<void> | void;
