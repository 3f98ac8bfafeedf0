// Relaying a peer's message as the JSON text it came in. An offer or answer
// is mostly SDP, whose every line end JSON escapes; encoding the decoded
// object again was about a fifth of the instructions per relayed message. A
// `messagePeer` whose object goes on unchanged (its `from` already the
// sender's registered name, its SDP not rewritten) is sent as the client's
// own text: the peer decodes the same object from it.
import { Decoder as BaseDecoder, Encoder as BaseEncoder, PacketType, type Packet } from 'socket.io-parser';

// A `messagePeer` event on the main namespace, without an acknowledgement id,
// its one argument an object: `2["messagePeer",{...}]`.
const RECEIVED_PREFIX = '2["messagePeer",';
const RECEIVED_SUFFIX = '}]';
// What Socket.IO's encoder writes for `emit('message', object)` there.
const SENT_PREFIX = '2["message",';

export interface VerbatimRelay {
  /** Socket.IO's `parser` option: its own encoder and decoder, which know the texts. */
  parser: { Encoder: typeof BaseEncoder; Decoder: typeof BaseDecoder };
  /**
   * Runs `send`, in which an `emit('message', payload)` is written as the
   * text `payload` was decoded from, when there is one. The caller vouches
   * that `payload` is as it was decoded.
   */
  sendAsReceived(payload: object, send: () => void): void;
}

export function createVerbatimRelay(): VerbatimRelay {
  // Each decoded messagePeer object's text, for as long as the object lives.
  const received = new WeakMap<object, string>();
  let sending: { payload: object; text: string } | undefined;

  // Called as a listener of each decoder (`this`), before Socket.IO's own.
  function noteReceived(this: Decoder, packet: Packet) {
    const chunk = this.adding;
    if (chunk === undefined) return;
    const data: unknown = packet.data;
    // The prefix says type, namespace, no id and event; two elements, the second an object, say the rest is its text.
    if (!Array.isArray(data) || data.length !== 2) return;
    const payload: unknown = data[1];
    if (typeof payload === 'object' && payload !== null && !Array.isArray(payload))
      received.set(payload, chunk.slice(RECEIVED_PREFIX.length, -1));
  }

  class Decoder extends BaseDecoder {
    /** The text being decoded, while it looks like a relayable messagePeer. */
    adding: string | undefined = undefined;
    constructor(...args: ConstructorParameters<typeof BaseDecoder>) {
      super(...args);
      this.on('decoded', noteReceived);
    }
    override add(chunk: unknown) {
      if (typeof chunk === 'string' && chunk.startsWith(RECEIVED_PREFIX) && chunk.endsWith(RECEIVED_SUFFIX)) this.adding = chunk;
      try {
        super.add(chunk);
      } finally {
        this.adding = undefined;
      }
    }
  }

  class Encoder extends BaseEncoder {
    override encode(packet: Packet) {
      const verbatim = sending;
      const data: unknown = packet.data;
      if (
        verbatim &&
        Array.isArray(data) &&
        data[1] === verbatim.payload &&
        data.length === 2 &&
        data[0] === 'message' &&
        packet.type === PacketType.EVENT &&
        packet.nsp === '/' &&
        packet.id === undefined
      )
        return [`${SENT_PREFIX}${verbatim.text}]`];
      return super.encode(packet);
    }
  }

  return {
    parser: { Encoder, Decoder },
    sendAsReceived(payload, send) {
      const text = received.get(payload);
      if (text === undefined) return send();
      sending = { payload, text };
      try {
        send();
      } finally {
        sending = undefined;
      }
    },
  };
}
