// A site's login URL, as a process of its own: it answers the server's
// user/PIN questions the way a real site would, and the ways a broken one
// does. Each request it gets is written to stdout as one JSON line, so a test
// can see exactly what the server sent.
//
// Users (the PIN is 1234 for each):
//   any name            {"login": true}
//   wrong PIN           {"login": false, "message": "Wrong PIN for <user>"}
//   error500            HTTP 500, text body
//   garbage             HTTP 200, an HTML page
//   huge                HTTP 200, {"login": true} padded to 1 MB
//   banned              HTTP 403, {"login": false, "message": "Banned"}
//   quiet               {"login": false} without a message
//   admin500            HTTP 500 with {"login": true}
//   silent              never answers
// A request naming another site token than SITE_TOKEN is refused ("Unknown site").
import { spawn } from 'node:child_process';
import http from 'node:http';
import type { TestContext } from 'node:test';
import { waitForOutput } from './process';

export const PIN = '1234';

export interface LoginRequestSeen {
  method: string;
  type: string;
  request: Record<string, unknown>;
}

export interface LoginService {
  url: string;
  /** Every request it has received, in order: method, content type and JSON body. */
  requests: LoginRequestSeen[];
  /** Resolves once a request for `user` has arrived. */
  received(user: string): Promise<void>;
}

function serve() {
  const siteToken = process.env.SITE_TOKEN;
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      let request: Record<string, unknown>;
      try {
        request = JSON.parse(body) as Record<string, unknown>;
      } catch {
        request = { unparsed: body };
      }
      process.stdout.write(`${JSON.stringify({ method: req.method, type: req.headers['content-type'], request })}\n`);
      const answer = (status: number, type: string, text: string) => res.writeHead(status, { 'content-type': type }).end(text);
      const { user, pin, token } = request;
      if (user === 'silent') return; // the socket stays open, unanswered
      if (user === 'error500') return answer(500, 'text/plain', 'Internal Server Error');
      if (user === 'garbage') return answer(200, 'text/html', '<html><body>Login</body></html>');
      if (user === 'huge') return answer(200, 'application/json', JSON.stringify({ login: true, padding: 'x'.repeat(1 << 20) }));
      if (user === 'banned') return answer(403, 'application/json', JSON.stringify({ login: false, message: 'Banned' }));
      if (user === 'quiet') return answer(200, 'application/json', JSON.stringify({ login: false }));
      if (user === 'admin500') return answer(500, 'application/json', JSON.stringify({ login: true }));
      if (siteToken && token !== siteToken)
        return answer(200, 'application/json', JSON.stringify({ login: false, message: 'Unknown site' }));
      if (pin !== PIN) return answer(200, 'application/json', JSON.stringify({ login: false, message: `Wrong PIN for ${String(user)}` }));
      answer(200, 'application/json', JSON.stringify({ login: true }));
    });
  });
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : 0}\n`);
  });
}

/** Starts the login service in its own process; killed after the test. */
export async function startLoginService(t: Pick<TestContext, 'after'>, siteToken?: string): Promise<LoginService> {
  const child = spawn(process.execPath, ['--import', 'tsx', __filename], {
    env: { ...process.env, LOGIN_SERVICE: '1', ...(siteToken && { SITE_TOKEN: siteToken }) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => void child.kill('SIGKILL'));
  let output = '';
  const requests: LoginRequestSeen[] = [];
  const waiters: { user: string; done: () => void }[] = [];
  const seen = (user: string) => requests.some((r) => r.request.user === user);
  let partial = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) if (line.startsWith('{')) requests.push(JSON.parse(line) as LoginRequestSeen);
    for (const waiter of waiters.filter((w) => seen(w.user))) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.done();
    }
  });
  await waitForOutput(child, 'login service', /listening \d+/, 20_000);
  // waitForOutput drains stdout from here on; the listener above still sees every line.
  const port = Number(/listening (\d+)/.exec(output)?.[1]);
  return {
    url: `http://127.0.0.1:${port}/login`,
    requests,
    received: (user) => (seen(user) ? Promise.resolve() : new Promise((done) => waiters.push({ user, done }))),
  };
}

if (require.main === module && process.env.LOGIN_SERVICE === '1') serve();
