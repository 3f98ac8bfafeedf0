// The end-to-end test's world: the signaling server and Debian's Chromium in
// a network namespace of their own, whose only interface is loopback. WebRTC
// can then only pair 127.0.0.1 with 127.0.0.1, and nothing the browser tries
// (the public STUN server of the peerConfig, DNS, mDNS, updates) leaves the
// machine. Playwright drives Chromium over pipes, which the namespace keeps.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { testCertificate } from './tls';
import { STARTUP_MS } from './wait';

export const CHROMIUM = '/usr/bin/chromium';
const root = resolve(__dirname, '..', '..');

/**
 * Every flag Chromium gets (Playwright adds none of its own): a headless
 * browser that fakes camera and permission prompt, gathers loopback
 * candidates as plain addresses, and makes no background connections.
 */
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--no-default-browser-check',
  '--disable-default-apps',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--ignore-certificate-errors',
  // Tabs in the background keep their timers and rendering at full speed.
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
  '--mute-audio',
  '--hide-scrollbars',
  '--force-color-profile=srgb',
  '--password-store=basic',
];

export interface LoopbackNetwork {
  name: string;
  /** The command and arguments that run `command` inside the namespace. */
  wrap(command: string, args: string[]): [string, string[]];
  close(): void;
}

/** Why namespaces cannot be used here, or undefined when they can. */
export function loopbackNetworkUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'creating a network namespace (ip netns add) needs root';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    return 'the ip command (iproute2) is missing';
  }
  return undefined;
}

export function createLoopbackNetwork(): LoopbackNetwork {
  const name = `vw-e2e-${process.pid}`;
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const close = () => {
    // Whatever this test started in the namespace goes with it.
    let pids: string[];
    try {
      const listed = execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      pids = listed.split(/\s+/).filter(Boolean);
    } catch {
      return; // already gone
    }
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
    ip('netns', 'delete', name);
  };
  close(); // a namespace left by an earlier run with the same pid
  ip('netns', 'add', name);
  try {
    ip('netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up');
  } catch (err) {
    close();
    throw err;
  }
  return { name, wrap: (command, args) => ['ip', ['netns', 'exec', name, command, ...args]], close };
}

export interface DemoServer {
  url: string;
  token: string;
  stop(): Promise<void>;
}

/** The server from src/main.ts as a site would run it (production mode, DEMO=true, TLS), inside the namespace; `env` adds settings. */
export async function startDemoServer(net: LoopbackNetwork, env: Record<string, string> = {}): Promise<DemoServer> {
  const token = 'e2e-static-token';
  // A fresh namespace has every port free.
  const port = 8443;
  const [command, args] = net.wrap(process.execPath, ['--import', 'tsx', 'src/main.ts']);
  const child = spawn(command, args, {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      // A developer's .env must not change the server under test.
      DOTENV_CONFIG_PATH: '/dev/null',
      NODE_ENV: 'production',
      DEMO: 'true',
      HOST: '127.0.0.1',
      PORT: String(port),
      CERTIFICATE: testCertificate().prefix,
      STATIC_TOKEN: token,
      API_KEY: 'e2e-api-key',
      LOG_LEVEL: 'warn',
      ...env,
    },
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  // main.ts tells a parent with an IPC channel (pm2, or this test) when it listens.
  await new Promise<void>((resolve, reject) => {
    const fail = (why: string) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${why}:\n${output}`));
    };
    const timer = setTimeout(() => fail(`the server was not ready within ${STARTUP_MS / 1000} s`), STARTUP_MS);
    child.once('exit', (code) => fail(`the server exited (${String(code)}) before it was ready`));
    child.on('message', (message) => {
      if (message !== 'ready') return;
      clearTimeout(timer);
      child.removeAllListeners('exit');
      resolve();
    });
  });
  return {
    url: `https://127.0.0.1:${port}`,
    token,
    stop: () => stopChild(child),
  };
}

async function stopChild(child: ChildProcess) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exit = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exit;
  clearTimeout(timer);
}

export interface Chromium {
  browser: Browser;
  close(): Promise<void>;
}

/** Chromium inside the namespace, with a fresh profile removed on close. */
export async function launchChromium(net: LoopbackNetwork): Promise<Chromium> {
  const dir = mkdtempSync(join(tmpdir(), 'vw-e2e-chromium-'));
  const wrapper = join(dir, 'chromium');
  const [command, args] = net.wrap(CHROMIUM, []);
  writeFileSync(wrapper, `#!/bin/sh\nexec ${[command, ...args].join(' ')} "$@"\n`);
  chmodSync(wrapper, 0o755);
  try {
    const browser = await chromium.launch({
      executablePath: wrapper,
      ignoreDefaultArgs: true,
      args: [...CHROMIUM_FLAGS, `--user-data-dir=${join(dir, 'profile')}`, '--remote-debugging-pipe', '--no-startup-window'],
      timeout: STARTUP_MS,
    });
    return {
      browser,
      close: async () => {
        await browser.close();
        removeProfile(dir);
      },
    };
  } catch (err) {
    removeProfile(dir);
    throw err;
  }
}

// Chromium's helper processes may still be writing as the browser exits.
const removeProfile = (dir: string) => rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });

/** Compiles the page's script into dist/, as `npm run build` does. */
export function buildDemoClient() {
  const tsc = join(dirname(require.resolve('@typescript/native/package.json')), 'bin', 'tsc');
  execFileSync(process.execPath, [tsc, '-p', 'src/demo/tsconfig.json'], { cwd: root, stdio: 'inherit' });
  if (!existsSync(join(root, 'dist', 'demo', 'client', 'demo.js'))) throw new Error('the demo script was not built');
}

/**
 * A browser test's world: a loopback network with the demo server and
 * Chromium in it, closed after the test: the browser first, then the server;
 * the namespace takes anything left with it.
 */
export async function startDemoWorld(t: TestContext, serverEnv: Record<string, string> = {}) {
  const net = createLoopbackNetwork();
  let server: DemoServer | undefined;
  let browser: Chromium | undefined;
  t.after(async () => {
    await browser?.close().catch((err: unknown) => console.error('closing Chromium failed:', err));
    await server?.stop();
    net.close();
  });
  server = await startDemoServer(net, serverEnv);
  browser = await launchChromium(net);
  return { server, chromium: browser };
}
