// ENFORCE_SDP on the offers and answers Chromium really writes: each audio and
// video section leaves the server with b=AS and b=TIAS no higher than the
// plan, frame limits where the codec has them, every other line as it was,
// and Chromium still accepts the result. An SDP that is no SDP is refused.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { parse } from 'sdp-transform';
import { capSdp, sdpCaps } from '../src/sdp';
import { parsePlan } from '../src/accounts/account';
import { get } from './helpers/api';
import { CHROMIUM, CHROMIUM_FLAGS } from './helpers/browser';
import { broadcastAndWatch, next } from './helpers/client';
import { API_KEY, startServer, TOKEN } from './helpers/server';
import { requireService } from './helpers/skip';

const PLAN = { connections: 10, totalBitrate: 5000, bitrate: 500, audioBitrate: 32, width: 640, height: 360, framerate: 15 };
const CAPS = sdpCaps(parsePlan(JSON.stringify(PLAN)))!;
// 640x360 in 16x16 macroblocks: 40 x 23.
const MAX_FS = 920;

/** The few RTCPeerConnection members the page scripts use (the test is compiled without the DOM library). */
interface PeerConnection {
  addTransceiver(kind: 'audio' | 'video', init: { direction: string }): unknown;
  createOffer(): Promise<{ type: string; sdp?: string }>;
  createAnswer(): Promise<{ type: string; sdp?: string }>;
  setLocalDescription(description: { type: string; sdp?: string }): Promise<void>;
  setRemoteDescription(description: { type: string; sdp?: string }): Promise<void>;
  signalingState: string;
}
type PageGlobals = { RTCPeerConnection: new () => PeerConnection; sender: PeerConnection };

interface ChromiumSdp {
  offer: string;
  answer: string;
}

let browser: Browser | undefined;
let page: Page | undefined;
let sdps: ChromiumSdp | undefined;
const missing = existsSync(CHROMIUM) ? undefined : `${CHROMIUM} is missing (apt install chromium)`;

before(async () => {
  if (missing) return;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
  page = await browser.newPage();
  // A broadcaster's offer (audio and video, send only) and a viewer's answer, as the demo makes them.
  sdps = await page.evaluate(async () => {
    const { RTCPeerConnection } = globalThis as unknown as PageGlobals;
    const sender = new RTCPeerConnection();
    sender.addTransceiver('audio', { direction: 'sendonly' });
    sender.addTransceiver('video', { direction: 'sendonly' });
    const offer = await sender.createOffer();
    await sender.setLocalDescription(offer);
    const receiver = new RTCPeerConnection();
    await receiver.setRemoteDescription(offer);
    const answer = await receiver.createAnswer();
    await receiver.setLocalDescription(answer);
    (globalThis as unknown as PageGlobals).sender = sender;
    return { offer: offer.sdp ?? '', answer: answer.sdp ?? '' };
  });
});
after(async () => {
  await browser?.close();
});

const needsChromium = (t: TestContext) => requireService(t, 'chromium', missing, ['apt install chromium']);

/** The bandwidth and frame lines of each audio and video section. */
function limitsOf(sdp: string) {
  return parse(sdp)
    .media.filter((m) => m.type === 'audio' || m.type === 'video')
    .map((m) => ({
      type: m.type,
      bandwidth: Object.fromEntries((m.bandwidth ?? []).map((b) => [b.type, Number(b.limit)])),
      fmtp: new Map(m.fmtp.map((f) => [m.rtp.find((r) => r.payload === f.payload)?.codec.toUpperCase() + ':' + f.payload, f.config])),
    }));
}

function assertCapped(sdp: string) {
  const sections = limitsOf(sdp);
  assert.deepEqual(sections.map((s) => s.type).sort(), ['audio', 'video']);
  for (const section of sections) {
    const kbps = section.type === 'video' ? PLAN.bitrate : PLAN.audioBitrate;
    assert.deepEqual(section.bandwidth, { AS: kbps, TIAS: kbps * 1000 }, section.type);
    if (section.type !== 'video') continue;
    let framed = 0;
    for (const [codec, config] of section.fmtp) {
      if (codec.startsWith('VP8:') || codec.startsWith('VP9:')) {
        assert.match(config, new RegExp(`(^|;)max-fs=${MAX_FS}(;|$)`), codec);
        assert.match(config, /(^|;)max-fr=15(;|$)/, codec);
        framed++;
      }
      if (codec.startsWith('H264:')) {
        const level = /profile-level-id=[0-9a-f]{4}([0-9a-f]{2})/i.exec(config)?.[1];
        // Level 2.2 is the smallest that carries 640x360 at 15 fps.
        if (level) assert.ok(Number.parseInt(level, 16) <= 0x16, `${codec} ${config}`);
      }
    }
    assert.ok(framed > 0, 'Chromium offers VP8 or VP9, and each gets max-fs and max-fr');
  }
}

/** Every line of `original` is in `capped`, but for the lines the caps lowered or added to. */
function assertOnlyCapsChanged(original: string, capped: string) {
  const cappedLines = capped.split('\r\n');
  const kept = new Set(cappedLines);
  const framing = /^(max-fs|max-fr|profile-level-id)=/;
  const otherParams = (line: string) =>
    line
      .replace(/^a=fmtp:\d+ /, '')
      .split(';')
      .filter((p) => !framing.test(p));
  for (const line of original.split('\r\n').filter((l) => l && !kept.has(l))) {
    if (/^b=(AS|TIAS):/.test(line)) continue;
    const payload = /^a=fmtp:(\d+) /.exec(line)?.[1];
    assert.ok(payload, `changed: ${line}`);
    const now = cappedLines.find((l) => l.startsWith(`a=fmtp:${payload} `)) ?? '';
    assert.deepEqual(otherParams(now), otherParams(line), `only frame limits change in ${line}`);
  }
  // The same lines in the same order, but for b= and new a=fmtp lines.
  const skeleton = (sdp: string) => sdp.split('\r\n').filter((l) => !/^(b=|a=fmtp:)/.test(l));
  assert.deepEqual(skeleton(capped), skeleton(original));
}

/** A server whose accounts (ACCOUNTS_FILE) have loaded: until then their tokens get `ERROR: Server unavailable`. */
async function withAccounts<T extends { server: { accounts: { reload(): Promise<{ outcome: string }> } } }>(
  starting: Promise<T>,
): Promise<T> {
  const started = await starting;
  assert.equal((await started.server.accounts.reload()).outcome, 'reloaded');
  return started;
}

test("Chromium's offer and answer, capped: bandwidth per section, frame limits per codec, nothing else touched, and Chromium accepts them", async (t) => {
  if (!needsChromium(t) || !sdps || !page) return;
  const capped = { offer: capSdp(sdps.offer, CAPS), answer: capSdp(sdps.answer, CAPS) };
  assert.ok('sdp' in capped.offer && 'sdp' in capped.answer);
  for (const [kind, result] of Object.entries(capped)) {
    const sdp = (result as { sdp: string }).sdp;
    t.diagnostic(
      `${kind}: ${limitsOf(sdp)
        .map((s) => `${s.type} b=AS:${s.bandwidth.AS} b=TIAS:${s.bandwidth.TIAS}`)
        .join(', ')}`,
    );
    if (kind === 'offer') {
      const video = parse(sdp).media.find((m) => m.type === 'video');
      const h264 = video?.fmtp.filter((f) => /profile-level-id/.test(f.config)).map((f) => /profile-level-id=(\w+)/.exec(f.config)?.[1]);
      t.diagnostic(
        `video codecs ${[...new Set(video?.rtp.map((r) => r.codec))].join(' ')}; H.264 profile-level-ids now ${[...new Set(h264)].join(' ')}`,
      );
    }
    assertCapped(sdp);
    assertOnlyCapsChanged(sdps[kind as keyof ChromiumSdp], sdp);
    // Capping twice changes nothing: the lines are already within the plan.
    assert.deepEqual(capSdp(sdp, CAPS), { sdp });
  }
  // A viewer takes the capped offer, and the broadcaster the capped answer.
  const accepted = await page.evaluate(
    async ({ offer, answer }) => {
      const { RTCPeerConnection, sender } = globalThis as unknown as PageGlobals;
      const viewer = new RTCPeerConnection();
      await viewer.setRemoteDescription({ type: 'offer', sdp: offer });
      await viewer.setLocalDescription(await viewer.createAnswer());
      await sender.setRemoteDescription({ type: 'answer', sdp: answer });
      return [viewer.signalingState, sender.signalingState];
    },
    { offer: (capped.offer as { sdp: string }).sdp, answer: (capped.answer as { sdp: string }).sdp },
  );
  assert.deepEqual(accepted, ['stable', 'stable']);
});

test('an offer asking for 8 Mbps and 4K is lowered to the plan; lower values are kept', async (t) => {
  if (!needsChromium(t) || !sdps) return;
  const greedy = sdps.offer.replace(/(m=video [^\r\n]*\r\n(?:c=[^\r\n]*\r\n)?)/, '$1b=AS:8000\r\n');
  assert.notEqual(greedy, sdps.offer);
  const capped = capSdp(greedy, CAPS);
  assert.ok('sdp' in capped);
  assert.equal(limitsOf(capped.sdp).find((s) => s.type === 'video')?.bandwidth.AS, 500);
  const modest = capSdp(sdps.offer.replace(/(m=audio [^\r\n]*\r\n(?:c=[^\r\n]*\r\n)?)/, '$1b=AS:24\r\n'), CAPS);
  assert.ok('sdp' in modest);
  assert.equal(limitsOf(modest.sdp).find((s) => s.type === 'audio')?.bandwidth.AS, 24);
});

function accountsFile(): string {
  const file = join(mkdtempSync(join(tmpdir(), 'vw-sdp-')), 'accounts.json');
  writeFileSync(
    file,
    JSON.stringify({
      plans: [{ id: 1, name: 'Limited', properties: PLAN }],
      accounts: [{ name: 'Site', token: 'site-token', planId: 1, properties: {} }],
    }),
  );
  return file;
}

const STREAM = { width: 640, height: 360, bitrate: 500, frameRate: 15, audioBitrate: 32 };

test('with ENFORCE_SDP, offers and answers relayed on a limited plan arrive capped; an SDP that is none is refused and counted', async (t) => {
  if (!needsChromium(t) || !sdps) return;
  const { url } = await withAccounts(startServer(t, { ACCOUNTS_FILE: accountsFile(), ENFORCE_SDP: 'true' }));
  const { broadcaster, player } = await broadcastAndWatch(t, url, 'site-token', { channel: 'capped', stream: STREAM });
  const offered = next(player, 'message', (m) => m.type === 'offer');
  // Each names itself in `from`, as the shipped client does: a message relayed as it came in must still be capped.
  broadcaster.emit('messagePeer', {
    from: 'Studio',
    target: 'Viewer',
    type: 'offer',
    content: { type: 'offer', sdp: sdps.offer },
    peerConfig: {},
  });
  const offer = await offered;
  assertCapped((offer.content as { sdp: string }).sdp);
  assert.equal((offer.content as { type: string }).type, 'offer');

  const answered = next(broadcaster, 'message', (m) => m.type === 'answer');
  player.emit('messagePeer', { from: 'Viewer', target: 'Studio', type: 'answer', content: { type: 'answer', sdp: sdps.answer } });
  assertCapped(((await answered).content as { sdp: string }).sdp);

  // A broadcast `message` carrying an SDP is capped the same way.
  const broadcast = next(player, 'message', (m) => m.type === 'offer' && m.again === true);
  broadcaster.emit('message', { type: 'offer', again: true, content: { type: 'offer', sdp: sdps.offer } });
  assertCapped(((await broadcast).content as { sdp: string }).sdp);

  for (const sdp of ['not an sdp at all', 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\nnonsense\r\n', 42]) {
    const refused = next<{ message: string }>(broadcaster, 'messageError');
    broadcaster.emit('messagePeer', { target: 'Viewer', type: 'offer', content: { type: 'offer', sdp } });
    assert.match((await refused).message, /^Invalid SDP: /);
  }
  const metrics = (await get(url, `/metrics?apikey=${API_KEY}`)).text;
  assert.match(metrics, /videowhisper_refusals_total\{reason="sdp"\} 3/);
  assert.equal(player.messages.filter((m) => m.type === 'offer').length, 2, 'no refused offer reached the viewer');
});

test('without ENFORCE_SDP, or on an unlimited plan, the SDP is relayed byte for byte', async (t) => {
  if (!needsChromium(t) || !sdps) return;
  for (const env of [{ ACCOUNTS_FILE: accountsFile() }, { ACCOUNTS_FILE: accountsFile(), STATIC_TOKEN: TOKEN, ENFORCE_SDP: 'true' }]) {
    const token = env.ENFORCE_SDP ? TOKEN : 'site-token';
    const { url } = await withAccounts(startServer(t, env));
    const { broadcaster, player } = await broadcastAndWatch(t, url, token, { channel: 'as-is', stream: STREAM });
    const offered = next(player, 'message', (m) => m.type === 'offer');
    broadcaster.emit('messagePeer', { target: 'Viewer', type: 'offer', content: { type: 'offer', sdp: sdps.offer } });
    assert.equal(((await offered).content as { sdp: string }).sdp, sdps.offer);
  }
});
