// A lean Socket.IO client: the frames socket.io-client sends with
// `transports: ['websocket']` and `auth: { token }` (Engine.IO 4 over one
// WebSocket, Socket.IO packets as text), without its per-packet machinery,
// so that one load-generator core can drive one server core.
import tls from 'node:tls';
import WebSocket from 'ws';

export interface WireOptions {
  /** https://host:port of the server. */
  url: string;
  token: string;
  /** The server's certificate (self-signed). */
  ca: string;
  timeoutMs?: number;
  /** A TLS session to resume (as a browser, or socket.io-client with a shared https.Agent, does on a reconnect). */
  session?: Buffer | undefined;
  /** Called with the session ticket the server sends, and whether this handshake resumed one. */
  onTls?: (tls: { resumed: boolean; session?: Buffer }) => void;
}

export class Wire {
  /** Called with each event's text, `42["message",{...}]`. */
  onEvent: (text: string) => void = () => {};
  onClose: () => void = () => {};
  constructor(private readonly ws: WebSocket) {}

  emit(event: string, ...args: unknown[]) {
    this.ws.send(`42${JSON.stringify([event, ...args])}`);
  }

  /** Sends an event already serialised as `["event",...]`. */
  sendRaw(packet: string) {
    this.ws.send(`42${packet}`);
  }

  get open() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  close() {
    this.ws.terminate();
  }
}

/** Opens one connection and resolves once the server accepted the token. */
export function openWire({ url, token, ca, timeoutMs = 15_000, session, onTls }: WireOptions): Promise<Wire> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`, {
      skipUTF8Validation: true,
      ca,
      perMessageDeflate: false,
      handshakeTimeout: timeoutMs,
      ...(onTls && {
        // ws's own wss connection is tls.connect too; its typings only know net's.
        createConnection: ((options: tls.ConnectionOptions) => {
          const socket = tls.connect({ ...options, ...(session && { session }) });
          socket.once('secureConnect', () => onTls({ resumed: socket.isSessionReused() }));
          socket.on('session', (ticket: Buffer) => onTls({ resumed: socket.isSessionReused(), session: ticket }));
          return socket;
        }) as unknown as typeof import('node:net').createConnection,
      }),
    });
    const wire = new Wire(ws);
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ws.terminate();
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error('connect timed out')), timeoutMs);
    ws.on('error', fail);
    ws.on('close', () => {
      if (!settled) fail(new Error('closed while connecting'));
      else wire.onClose();
    });
    ws.on('message', (data: Buffer) => {
      const text = data.toString();
      switch (text.charCodeAt(0)) {
        case 0x34: // '4': a Socket.IO packet
          if (text.charCodeAt(1) === 0x32) wire.onEvent(text);
          else if (text.charCodeAt(1) === 0x30 && !settled) {
            settled = true;
            clearTimeout(timer);
            resolve(wire);
          } else if (text.charCodeAt(1) === 0x34) fail(new Error((JSON.parse(text.slice(2)) as { message: string }).message));
          break;
        case 0x32: // '2': ping
          ws.send('3');
          break;
        case 0x30: // '0': Engine.IO open; connect to the default namespace
          ws.send(`40${JSON.stringify({ token })}`);
          break;
      }
    });
  });
}

/** Opens `count` connections, `concurrency` at a time; connection i with `options(i)` when it is a function, in that order. */
export async function openMany(
  count: number,
  concurrency: number,
  options: WireOptions | ((i: number) => WireOptions),
  deadline: number,
): Promise<Wire[]> {
  const wires: Wire[] = [];
  let next = 0;
  let opened = 0;
  const worker = async () => {
    while (next < count) {
      if (performance.now() > deadline) throw new Error(`only ${opened} of ${count} connections before the deadline`);
      const i = next++;
      wires[i] = await openWire(typeof options === 'function' ? options(i) : options);
      opened++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return wires;
}

/** The `type` of a `message` event (`offer`, `peers`, ...), `close` for a close notice. */
export function messageType(text: string): string {
  const at = text.indexOf('"type":"');
  if (at < 0) return text.includes('"action":"close"') ? 'close' : '';
  const start = at + 8;
  return text.slice(start, text.indexOf('"', start));
}

/** The value of a numeric field, found from the end of the text. */
export function numberField(text: string, field: string): number {
  const at = text.lastIndexOf(`"${field}":`);
  if (at < 0) return Number.NaN;
  const start = at + field.length + 3;
  let end = start;
  while (end < text.length && '0123456789.-e'.includes(text[end] as string)) end++;
  return Number(text.slice(start, end));
}
