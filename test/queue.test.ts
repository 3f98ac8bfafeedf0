// The per-socket event queue (src/signaling/queue.ts): events of one socket
// run in order, a task that finishes at once leaves nothing behind, and every
// failure reaches the error handler.
import assert from 'node:assert/strict';
import test from 'node:test';
import { enqueue, type OnError } from '../src/signaling/queue';

const newSocket = () => ({ data: { pending: 0, queue: undefined as Promise<void> | undefined } });
type QueueSocket = ReturnType<typeof newSocket>;
/** What the socket holds of its queue: how many events wait or run, and whether a promise is kept. */
const held = (socket: QueueSocket) => ({ pending: socket.data.pending, promise: socket.data.queue !== undefined });

function deferred() {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((ok, fail) => ((resolve = ok), (reject = fail)));
  return { promise, resolve, reject };
}

const noErrors: OnError<QueueSocket, string> = (_socket, err) => assert.fail(`unexpected error: ${String(err)}`);

test('a task that finishes at once runs at once and leaves no queue', () => {
  const socket = newSocket();
  const ran: string[] = [];
  assert.equal(
    enqueue(socket, (_s, name: string) => void ran.push(name), 'first', noErrors),
    true,
  );
  assert.deepEqual(ran, ['first']);
  assert.deepEqual(held(socket), { pending: 0, promise: false });
});

test('events after one that waits run after it, in order, also those that would finish at once', async () => {
  const socket = newSocket();
  const ran: string[] = [];
  const lookup = deferred();
  enqueue(
    socket,
    async (_s, name: string) => {
      await lookup.promise;
      ran.push(name);
    },
    'offer',
    noErrors,
  );
  enqueue(socket, (_s, name: string) => void ran.push(name), 'candidate 1', noErrors);
  enqueue(socket, (_s, name: string) => void ran.push(name), 'candidate 2', noErrors);
  assert.equal(ran.length, 0, 'nothing overtakes the offer');
  assert.deepEqual(held(socket), { pending: 3, promise: true });
  lookup.resolve();
  await socket.data.queue;
  assert.deepEqual(ran, ['offer', 'candidate 1', 'candidate 2']);
  assert.deepEqual(held(socket), { pending: 0, promise: false }, 'the queue is dropped once it runs dry');
  enqueue(socket, (_s, name: string) => void ran.push(name), 'later', noErrors);
  assert.deepEqual(ran.at(-1), 'later', 'an idle socket runs its next event at once');
});

test('a task that throws at once, or rejects later, reaches the error handler with its argument', async () => {
  const socket = newSocket();
  const errors: [string, string][] = [];
  const onError: OnError<QueueSocket, string> = (_s, err, arg) => void errors.push([(err as Error).message, arg]);
  enqueue(
    socket,
    () => {
      throw new Error('at once');
    },
    'first',
    onError,
  );
  assert.deepEqual(errors, [['at once', 'first']]);
  assert.deepEqual(held(socket), { pending: 0, promise: false });

  const lookup = deferred();
  enqueue(socket, () => lookup.promise, 'second', onError);
  enqueue(
    socket,
    () => {
      throw new Error('while queued');
    },
    'third',
    onError,
  );
  lookup.reject(new Error('later'));
  await socket.data.queue;
  assert.deepEqual(errors, [
    ['at once', 'first'],
    ['later', 'second'],
    ['while queued', 'third'],
  ]);
  assert.deepEqual(held(socket), { pending: 0, promise: false });
});

test('no more than the limit of events wait; one that finishes at once never counts', async () => {
  const socket = newSocket();
  for (let i = 0; i < 5; i++)
    assert.equal(
      enqueue(socket, () => undefined, 'quick', noErrors, 1),
      true,
    );
  const lookup = deferred();
  assert.equal(
    enqueue(socket, () => lookup.promise, 'waits', noErrors, 2),
    true,
  );
  assert.equal(
    enqueue(socket, () => undefined, 'behind it', noErrors, 2),
    true,
  );
  assert.equal(
    enqueue(socket, () => undefined, 'one too many', noErrors, 2),
    false,
  );
  lookup.resolve();
  await socket.data.queue;
  assert.deepEqual(held(socket), { pending: 0, promise: false });
});
