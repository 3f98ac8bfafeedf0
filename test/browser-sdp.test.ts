// The demo page in a real browser with ENFORCE_SDP on, for an account whose
// plan limits the stream: the offer the viewer gets carries the plan's caps,
// the viewer still decodes the broadcast, and the bitrate it receives stays
// under the cap. Server and Chromium run in a loopback-only network namespace
// (see helpers/browser.ts).
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { Page } from 'playwright-core';
import { parse } from 'sdp-transform';
import { buildDemoClient, CHROMIUM, loopbackNetworkUnavailable, startDemoWorld } from './helpers/browser';
import { until } from './helpers/wait';

/** How long a page may take to reach what a test waits for. */
const WAIT_MS = 20_000;

// The demo publishes what its camera gives (1280x720 at 30 fps from Chromium's
// fake camera, about 2,750 kbps declared); the plan allows that and no more.
const PLAN = { connections: 10, bitrate: 3000, audioBitrate: 64, width: 1920, height: 1080, frameRate: 30 };
const TOKEN = 'e2e-limited-token';
const channel = 'e2e-sdp';

interface LinkStats {
  peer: string;
  framesDecoded: number;
  bytesReceived: number;
  at: number;
}
interface DemoWindow {
  demo: { state(): string; stats(): Promise<LinkStats[]> };
}
const demoStats = (page: Page) => page.evaluate(() => (globalThis as unknown as DemoWindow).demo.stats());

/** The viewer's link once it has decoded more than `above` frames. */
const decoded = (page: Page, above: number) =>
  until(
    `the viewer to decode more than ${above} frames`,
    async () => {
      const [link] = await demoStats(page);
      return link && link.framesDecoded > above ? link : undefined;
    },
    WAIT_MS,
    100,
  );

function skipOrFail(t: TestContext, why: string) {
  const message = `browser test NOT RUN: ${why}`;
  if (process.env.CI === 'true') assert.fail(`${message} (CI=true requires it)`);
  console.warn(`\n*** ${message} ***\n`);
  t.skip(message);
}

test(
  'ENFORCE_SDP: a broadcast on a limited plan still streams, with the caps in the SDP and the received bitrate under them',
  { timeout: 90_000 },
  async (t) => {
    if (!existsSync(CHROMIUM)) return skipOrFail(t, `${CHROMIUM} is missing (apt install chromium)`);
    const unavailable = loopbackNetworkUnavailable();
    if (unavailable) return skipOrFail(t, unavailable);

    buildDemoClient();
    const accounts = join(mkdtempSync(join(tmpdir(), 'vw-e2e-sdp-')), 'accounts.json');
    writeFileSync(
      accounts,
      JSON.stringify({
        plans: [{ id: 1, name: 'Limited', properties: PLAN }],
        accounts: [{ name: 'Site', token: TOKEN, planId: 1, properties: {} }],
      }),
    );
    const { server, chromium } = await startDemoWorld(t, { ACCOUNTS_FILE: accounts, ENFORCE_SDP: 'true' });
    const context = await chromium.browser.newContext();
    const open = async (mode: 'broadcast' | 'watch', name: string) => {
      const page = await context.newPage();
      await page.goto(`${server.url}/demo?${new URLSearchParams({ mode, channel, name, token: TOKEN })}`);
      return page;
    };

    const viewer = await open('watch', 'Viewer');
    // The accounts file loads after the server listens: ask for it, as a site plugin would.
    const reload = await viewer.evaluate(async (url) => (await fetch(`${url}/update-accounts?apikey=e2e-api-key`)).json(), server.url);
    assert.equal((reload as { outcome: string }).outcome, 'reloaded');
    // The offer as it reaches the viewer, read off its Socket.IO frames.
    const offers: string[] = [];
    viewer.on('websocket', (ws) =>
      ws.on('framereceived', ({ payload }) => {
        const text = String(payload);
        if (!text.startsWith('42')) return;
        const [, message] = JSON.parse(text.slice(2)) as [string, { type?: string; content?: { sdp?: string } }];
        if (message?.type === 'offer' && message.content?.sdp) offers.push(message.content.sdp);
      }),
    );
    await viewer.getByRole('button', { name: 'Start' }).click();
    await until(
      'the viewer to wait',
      async () => ((await viewer.evaluate(() => (globalThis as unknown as DemoWindow).demo.state())) === 'waiting' ? true : undefined),
      WAIT_MS,
      100,
    );
    const broadcaster = await open('broadcast', 'Studio');
    await broadcaster.getByRole('button', { name: 'Start' }).click();

    const first = await decoded(viewer, 0);
    const [offer] = offers;
    assert.ok(offer, 'the viewer got an offer');
    const video = parse(offer).media.find((m) => m.type === 'video');
    const audio = parse(offer).media.find((m) => m.type === 'audio');
    assert.equal(Number(video?.bandwidth?.find((b) => b.type === 'AS')?.limit), PLAN.bitrate);
    assert.equal(Number(video?.bandwidth?.find((b) => b.type === 'TIAS')?.limit), PLAN.bitrate * 1000);
    assert.equal(Number(audio?.bandwidth?.find((b) => b.type === 'AS')?.limit), PLAN.audioBitrate);
    // 1920x1080 in 16x16 macroblocks: 120 x 68.
    assert.ok(
      video?.fmtp.some((f) => /max-fs=8160/.test(f.config) && /max-fr=30/.test(f.config)),
      'VP8/VP9 carry max-fs and max-fr',
    );

    // The received bitrate over 90 frames (3 s at 30 fps), once video flows.
    const from = await decoded(viewer, first.framesDecoded + 30);
    const to = await decoded(viewer, from.framesDecoded + 90);
    const kbps = ((to.bytesReceived - from.bytesReceived) * 8) / (to.at - from.at);
    t.diagnostic(
      `viewer received ${Math.round(kbps)} kbps of video over ${to.framesDecoded - from.framesDecoded} frames (cap ${PLAN.bitrate} kbps)`,
    );
    assert.ok(kbps > 0, 'video flows');
    assert.ok(kbps < PLAN.bitrate, `${Math.round(kbps)} kbps received, over the plan's ${PLAN.bitrate}`);
  },
);
