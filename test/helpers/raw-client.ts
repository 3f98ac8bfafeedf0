// A Socket.IO client written by hand, for tests that must choose the exact
// text it sends or read the exact text it receives.
import WebSocket from 'ws';
import { testCertificate } from './tls';

/**
 * A Socket.IO client written by hand over a raw WebSocket (Engine.IO v4
 * framing), so the test decides when it reads and what it answers.
 */
export async function rawWebSocket(url: string, token: string, headers: Record<string, string> = {}) {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`, { ca: testCertificate().ca, headers });
  const frames: string[] = [];
  ws.on('message', (data) => frames.push(String(data)));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.send(`40${JSON.stringify({ token })}`);
  await until(() => frames.some((f) => f.startsWith('40{')), 'the Socket.IO connect acknowledgement');
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  return { ws, frames, closed, emit: (...args: unknown[]) => ws.send(`42${JSON.stringify(args)}`) };
}

/** Waits for `check` on each tick of incoming data; the caller's event source drives it. */
export async function until(check: () => boolean, what: string, ms = 10_000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}
