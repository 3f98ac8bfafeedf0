// Messages to one socket on another instance, straight to that instance. The
// registry's peer entry says which instance holds a socket; the message is
// PUBLISHed (on a Redis Cluster SPUBLISHed) on that instance's own channel,
// `<prefix>direct:<id>`, which only that instance subscribes to, and it emits
// to its local socket. The adapter's path (on one Redis an XADD to the one
// stream that every instance reads; on a Redis Cluster the sharded adapter)
// stays the fallback: PUBLISH answers how many subscribers got the message,
// and 0 (the instance is reconnecting, or gone) sends it the adapter's way,
// so nothing is lost that the adapter would not lose.
//
// Order. Messages from one sender to one target (an offer, then its
// candidates) must arrive in the order sent, and the two paths reach the
// target on different connections, so they must not overtake each other:
// - At most one PUBLISH per target instance is in flight. Messages sent
//   meanwhile wait and go together in the next one (a batch, in order). So
//   the answer of a PUBLISH is known before anything later is published:
//   the target's subscription cannot come back between a message that found
//   none (and falls back) and a later one that would go direct.
// - A PUBLISH that reached no one (or failed) sends its batch, then everything
//   queued behind it, the adapter's way, in order (the adapter XADDs in call
//   order on one connection), and the target instance stays on the adapter's
//   path for FALLBACK_HOLD_MS. The adapter's reader on the target may lag
//   after an outage; the hold gives it time to read what went to the stream
//   before direct messages, which would overtake it, start again. The hold
//   is longer than the reconnection backoff (3 s) of both connections.
// - Direct, then fallback is in order: the direct one was in the target's
//   output buffer before the later one was even sent.
// The `peer` and close notices take this route too (the registry names each
// peer's instance), so they keep their place after earlier messages. Other
// events to the same socket (messages to a whole channel, rooms, the close
// notices of a dead instance's peers) take the adapter's stream, and the two
// paths are not ordered against each other: such an event may overtake a
// message that waits here behind a PUBLISH. Each of those follows a Redis
// call of its own (a script, a read), sent after that PUBLISH on the same
// connection, so in practice it goes out after the batch.
//
// Memory. PUBLISH returns as soon as Redis copied the message into the
// subscriber's output buffer: a slow target instance does not hold messages
// on the sender. Redis bounds that buffer (client-output-buffer-limit pubsub,
// 32 MB hard, 8 MB for 60 s by default) and drops a subscriber over it: what
// was in its buffer is lost (the adapter's stream loses what its MAXLEN trims
// from a reader that lags as far), node-redis reconnects and subscribes
// again, and PUBLISHes that find no subscriber meanwhile fall back. On the
// sender, only messages behind one in-flight PUBLISH wait, bounded per
// target instance by MAX_QUEUED_BYTES (over it they are dropped and counted,
// as Redis itself stalls then and the adapter could not send them either).
import { decode, encode } from 'notepack.io';
import type { Logger } from 'pino';
import type { Clock } from '../../clock';
import type { DirectPubSub } from './connection';

/** How long a target instance stays on the adapter's path after a PUBLISH reached no one. */
export const FALLBACK_HOLD_MS = 10_000;
/** Messages waiting behind one PUBLISH, per target instance. */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;
/** Per-instance states kept before idle ones are forgotten (instances that left). */
const MAX_IDLE_STATES = 64;

export interface DirectRoute {
  /**
   * Delivers `event` with `args` to socket `socketId` on instance `instance`,
   * or calls `fallback` (in order with the others) when that instance cannot
   * be reached directly.
   */
  send(instance: string, socketId: string, event: string, args: unknown[], fallback: () => void): void;
}

export interface DirectLine extends DirectRoute {
  /** Subscribes this instance to its channel; `deliver` emits to a local socket. */
  listen(deliver: (socketId: string, event: string, args: unknown[]) => void): Promise<void>;
}

interface Pending {
  frame: Buffer;
  fallback: () => void;
}

interface TargetState {
  busy: boolean;
  queue: Pending[];
  queuedBytes: number;
  /** Monotonic time until which messages to this instance take the adapter's path. */
  holdUntil: number;
}

export interface DirectOptions {
  pubsub: DirectPubSub;
  prefix: string;
  instanceId: string;
  clock: Clock;
  log: Logger;
}

/**
 * The channel of an instance. Earlier versions used `to:<id>` and
 * V8's serialization: between an instance of each (a rolling reload) a
 * PUBLISH reaches no one, and messages take the adapter, as they should.
 */
export const directChannel = (prefix: string, instanceId: string) => `${prefix}direct:${instanceId}`;

/**
 * A batch on the wire: each message as `[socketId, event, args]` in
 * MessagePack (notepack.io, as Socket.IO's Redis adapter: it keeps binary
 * attachments, which JSON would not, and takes a third to a half of the time
 * of V8's serialization for a candidate), each preceded by its length (4 bytes).
 */
function encodeBatch(frames: Buffer[]): Buffer {
  if (frames.length === 1) return frames[0] as Buffer;
  return Buffer.concat(frames);
}

function* decodeBatch(batch: Buffer): Generator<[string, string, unknown[]]> {
  for (let at = 0; at + 4 <= batch.length;) {
    const length = batch.readUInt32BE(at);
    yield decode(batch.subarray(at + 4, at + 4 + length)) as [string, string, unknown[]];
    at += 4 + length;
  }
}

function frameOf(socketId: string, event: string, args: unknown[]): Buffer {
  const body = encode([socketId, event, args]);
  const length = Buffer.allocUnsafe(4);
  length.writeUInt32BE(body.length);
  return Buffer.concat([length, body]);
}

export function createDirectLine({ pubsub, prefix, instanceId, clock, log }: DirectOptions): DirectLine {
  const targets = new Map<string, TargetState>();
  let dropped = 0;

  function forgetIdle() {
    const now = clock.monotonic();
    for (const [instance, state] of targets)
      if (!state.busy && state.queue.length === 0 && state.holdUntil <= now) targets.delete(instance);
  }

  function stateOf(instance: string): TargetState {
    let state = targets.get(instance);
    if (!state) {
      if (targets.size >= MAX_IDLE_STATES) forgetIdle();
      state = { busy: false, queue: [], queuedBytes: 0, holdUntil: 0 };
      targets.set(instance, state);
    }
    return state;
  }

  /** The adapter's way, in order; one that throws (the server closing) does not stop the rest. */
  function fallBack(batch: Pending[]) {
    for (const pending of batch)
      try {
        pending.fallback();
      } catch (err) {
        log.debug({ err }, 'a message could not take the adapter either');
      }
  }

  function publish(instance: string, state: TargetState, batch: Pending[]) {
    state.busy = true;
    const channel = directChannel(prefix, instance);
    void pubsub
      .publish(channel, encodeBatch(batch.map((pending) => pending.frame)))
      .catch(() => 0)
      .then((receivers) => {
        if (receivers === 0) {
          state.holdUntil = clock.monotonic() + FALLBACK_HOLD_MS;
          fallBack(batch);
        }
        const next = state.queue;
        state.queue = [];
        state.queuedBytes = 0;
        state.busy = false;
        if (next.length === 0) return;
        if (state.holdUntil > clock.monotonic()) fallBack(next);
        else publish(instance, state, next);
      });
  }

  return {
    send(instance, socketId, event, args, fallback) {
      const state = stateOf(instance);
      if (!state.busy && state.holdUntil > clock.monotonic()) return fallback();
      const pending = { frame: frameOf(socketId, event, args), fallback };
      if (!state.busy) return publish(instance, state, [pending]);
      if (state.queuedBytes + pending.frame.length > MAX_QUEUED_BYTES) {
        if (dropped++ % 1000 === 0) log.warn({ instance, dropped }, 'direct messages dropped: Redis is not answering PUBLISH');
        return;
      }
      state.queue.push(pending);
      state.queuedBytes += pending.frame.length;
    },
    async listen(deliver) {
      await pubsub.subscribe(directChannel(prefix, instanceId), (batch) => {
        try {
          for (const [socketId, event, args] of decodeBatch(batch)) deliver(socketId, event, args);
        } catch (err) {
          // Written by another instance of this server: a bug, not a client's doing.
          log.error({ err }, 'a direct message could not be delivered');
        }
      });
    },
  };
}
