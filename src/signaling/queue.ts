// Per-socket order: one socket's events run one after another while the
// registry answers, so an offer is never overtaken by its own candidates, and
// a socket has only so many waiting.
import type { SocketData } from './session';

/** What the queue needs of a socket: its data, where the queue lives. */
export interface QueuedSocket {
  data: Pick<SocketData, 'pending' | 'queue'>;
}

/**
 * Events one socket may have waiting while the registry answers: everything
 * its rate limit lets through in one second (a full bucket plus one second of
 * refill), so a burst the limit allows (a browser's ICE candidates) is never
 * cut short, and a flood cannot hold more than that.
 */
export const maxPendingEvents = (eventsPerSecond: number) => 2 * eventsPerSecond;

/** A task either finishes at once or returns the promise of its end. */
type Task<S, A> = (socket: S, arg: A) => Promise<void> | void;
/** Told of a task that threw, with the argument it was given (the event's arguments, to answer them). */
export type OnError<S, A> = (socket: S, err: unknown, arg: A) => void;

/**
 * Runs `task(socket, arg)` after the socket's earlier events; false when
 * `limit` events are already waiting. Task and error handler are shared
 * functions, so an event allocates no closure unless it has to wait. A task
 * that finishes at once (a message relayed without asking Redis) leaves no
 * promise behind.
 */
export function enqueue<S extends QueuedSocket, A>(
  socket: S,
  task: Task<S, A>,
  arg: A,
  onError: OnError<S, A>,
  limit = Number.POSITIVE_INFINITY,
): boolean {
  const data = socket.data;
  if (data.pending >= limit) return false;
  if (data.pending > 0 && data.queue) {
    data.pending++;
    data.queue = data.queue.then(() => run(socket, task, arg, onError));
    return true;
  }
  let running: Promise<void> | void;
  try {
    running = task(socket, arg);
  } catch (err) {
    onError(socket, err, arg);
    return true;
  }
  if (running) {
    data.pending++;
    data.queue = settle(socket, running, arg, onError);
  }
  return true;
}

function run<S extends QueuedSocket, A>(socket: S, task: Task<S, A>, arg: A, onError: OnError<S, A>): Promise<void> {
  let running: Promise<void> | void;
  try {
    running = task(socket, arg);
  } catch (err) {
    running = Promise.reject(err);
  }
  return settle(socket, running, arg, onError);
}

async function settle<S extends QueuedSocket, A>(socket: S, running: Promise<void> | void, arg: A, onError: OnError<S, A>): Promise<void> {
  try {
    await running;
  } catch (err) {
    onError(socket, err, arg);
  } finally {
    // An idle socket keeps no promise: the queue is dropped once it runs dry.
    if (--socket.data.pending === 0) socket.data.queue = undefined;
  }
}
