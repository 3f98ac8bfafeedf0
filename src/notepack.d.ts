// notepack.io (MessagePack, as Socket.IO's Redis adapter uses it) ships no types.
declare module 'notepack.io' {
  export function encode(value: unknown): Buffer;
  export function decode(buffer: Buffer): unknown;
}
