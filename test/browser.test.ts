// The demo page in a real browser: one tab broadcasts the (fake) camera, two
// tabs watch the same channel and decode its video, then the broadcaster
// closes and both viewers see the broadcast end. Server and Chromium run in a
// loopback-only network namespace (see helpers/browser.ts).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { buildDemoClient, CHROMIUM, loopbackNetworkUnavailable, startDemoWorld } from './helpers/browser';
import { until } from './helpers/wait';

/** How long a page may take to reach what a test waits for. */
const WAIT_MS = 15_000;

const artifacts = resolve(__dirname, 'artifacts');
const channel = 'e2e';

/** What the page's `window.demo.stats()` reports per connection. */
interface LinkStats {
  peer: string;
  connection: string;
  framesSent: number;
  framesDecoded: number;
  route?: { type: string; local: string; remote: string };
}
interface DemoWindow {
  demo: { state(): string; stats(): Promise<LinkStats[]> };
}

const demoState = (page: Page) => page.evaluate(() => (globalThis as unknown as DemoWindow).demo.state());
const demoStats = (page: Page) => page.evaluate(() => (globalThis as unknown as DemoWindow).demo.stats());

/** Opens /demo as a person would: fills the form from the link, presses Start. */
async function startDemo(context: BrowserContext, url: string, token: string, mode: 'broadcast' | 'watch', name: string) {
  const page = await context.newPage();
  const query = new URLSearchParams({ mode, channel, name, token });
  await page.goto(`${url}/demo?${query}`);
  await page.getByRole('button', { name: 'Start' }).click();
  return page;
}

/** The viewer's decoded frames, once its connection to the broadcaster carries video. */
async function framesDecoded(page: Page, name: string, above = 0) {
  return until(
    `${name} to decode more than ${above} frames`,
    async () => {
      const [link] = await demoStats(page);
      return link && link.framesDecoded > above ? link : undefined;
    },
    WAIT_MS,
    100,
  );
}

function skipOrFail(t: TestContext, why: string) {
  const message = `browser test NOT RUN: ${why}`;
  if (process.env.CI === 'true') assert.fail(`${message} (CI=true requires it)`);
  console.warn(`\n*** ${message} ***\n`);
  t.skip(message);
}

test('demo page: a broadcast reaches two viewers, who then see it end', async (t) => {
  if (!existsSync(CHROMIUM)) return skipOrFail(t, `${CHROMIUM} is missing (apt install chromium)`);
  const unavailable = loopbackNetworkUnavailable();
  if (unavailable) return skipOrFail(t, unavailable);

  const started = performance.now();
  buildDemoClient();
  const { server, chromium } = await startDemoWorld(t);
  const context = await chromium.browser.newContext({ viewport: { width: 1100, height: 660 } });
  const { url, token } = server;
  const tabs: { name: string; page: Page }[] = [];
  const open = async (mode: 'broadcast' | 'watch', name: string) => {
    const page = await startDemo(context, url, token, mode, name);
    tabs.push({ name, page });
    return page;
  };

  try {
    // One viewer waits before the broadcast (the broadcaster offers from its
    // `peers` list), the other joins during it (the `peer` notice).
    const viewer1 = await open('watch', 'Viewer-1');
    await until(
      'Viewer-1 to wait for a broadcast',
      async () => ((await demoState(viewer1)) === 'waiting' ? true : undefined),
      WAIT_MS,
      100,
    );
    const broadcastStarted = performance.now();
    const broadcaster = await open('broadcast', 'Studio');
    const viewers = [viewer1, await open('watch', 'Viewer-2')];

    const first = await Promise.all(viewers.map((v, i) => framesDecoded(v, `Viewer-${i + 1}`)));
    const videoFlowing = performance.now();
    const later = await Promise.all(viewers.map((v, i) => framesDecoded(v, `Viewer-${i + 1}`, first[i]!.framesDecoded + 30)));
    for (const [i, viewer] of viewers.entries()) {
      assert.equal(await demoState(viewer), 'live');
      assert.match(await viewer.locator('#status').innerText(), /Watching Studio/);
      // The namespace has only loopback: the media went 127.0.0.1 to 127.0.0.1.
      assert.match(later[i]!.route?.local ?? '', /^127\.0\.0\.1:/);
      assert.match(later[i]!.route?.remote ?? '', /^127\.0\.0\.1:/);
      t.diagnostic(
        `Viewer-${i + 1}: framesDecoded ${first[i]!.framesDecoded} -> ${later[i]!.framesDecoded}, ` +
          `route ${later[i]!.route?.type} ${later[i]!.route?.local} <- ${later[i]!.route?.remote}`,
      );
    }
    const sent = await demoStats(broadcaster);
    assert.deepEqual(sent.map((l) => l.peer).sort(), ['Viewer-1', 'Viewer-2']);
    t.diagnostic(`Studio: framesSent ${sent.map((l) => `${l.peer} ${l.framesSent}`).join(', ')}`);
    // The peerConfig's public STUN server cannot be resolved in the namespace; ICE must not wait for it.
    t.diagnostic(`both viewers decoding ${Math.round(videoFlowing - broadcastStarted)} ms after the broadcaster pressed Start`);

    mkdirSync(artifacts, { recursive: true });
    await broadcaster.screenshot({ path: join(artifacts, 'demo.png'), fullPage: true });
    await viewers[0]!.screenshot({ path: join(artifacts, 'demo-viewer.png'), fullPage: true });

    await broadcaster.close();
    tabs.splice(
      tabs.findIndex((tab) => tab.page === broadcaster),
      1,
    );
    for (const viewer of viewers) {
      await until(
        'a viewer to see the broadcast end',
        async () => ((await demoState(viewer)) === 'ended' ? true : undefined),
        WAIT_MS,
        100,
      );
      assert.match(await viewer.locator('#status').innerText(), /The broadcast ended/);
      assert.equal(await viewer.locator('#placeholder').isVisible(), true, 'the video is cleared');
      assert.deepEqual(await demoStats(viewer), []);
    }
    t.diagnostic(`test took ${Math.round(performance.now() - started)} ms`);
  } catch (err) {
    mkdirSync(artifacts, { recursive: true });
    await Promise.allSettled(tabs.map(({ name, page }) => page.screenshot({ path: join(artifacts, `failed-${name}.png`), timeout: 5000 })));
    console.error(`screenshots of ${tabs.map((tab) => tab.name).join(', ')} saved in ${artifacts}`);
    throw err;
  }
});
