// Headless Chromium (Debian's) places a call from Careline's "call the clinic" page: it
// clicks Call, waits for the page to say it is connected, records what it hears (the remote
// track through Web Audio at 8 kHz), presses 7 on the page's keypad (RTCDTMFSender), then
// hangs up. Screenshots of each step and the audio heard (16-bit little-endian PCM) go to
// OUT_DIR; a summary goes to stdout as JSON. tests/webrtc.rs runs it and checks the audio.
// With `reload`, the page is reloaded mid-call before the key (what it heard so far goes to
// heard-before-reload.raw): the reloaded page must get back onto the same call by itself.
//
// Usage: node whip-call.mjs BASE_URL OUT_DIR [reload]
import { chromium } from 'playwright-core';
import { writeFileSync } from 'node:fs';

const [base, out, mode] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream',
    '--autoplay-policy=no-user-gesture-required',
    '--no-sandbox',
  ],
});
const summary = {};
// 16-bit little-endian PCM of what the page heard.
function pcm(heard) {
  const out = Buffer.alloc(heard.length * 2);
  heard.forEach((s, i) => out.writeInt16LE(s, i * 2));
  return out;
}
try {
  const page = await browser.newPage();
  page.on('console', (m) => console.error('page:', m.text()));
  // Record the remote audio as the caller hears it.
  await page.addInitScript(() => {
    window.__heard = [];
    const Native = window.RTCPeerConnection;
    window.RTCPeerConnection = function (...args) {
      const pc = new Native(...args);
      pc.addEventListener('track', (e) => {
        const ctx = new AudioContext({ sampleRate: 8000 });
        const source = ctx.createMediaStreamSource(new MediaStream([e.track]));
        const tap = ctx.createScriptProcessor(1024, 1, 1);
        tap.onaudioprocess = (ev) => {
          for (const x of ev.inputBuffer.getChannelData(0)) {
            window.__heard.push(Math.max(-32768, Math.min(32767, Math.round(x * 32767))));
          }
        };
        source.connect(tap);
        tap.connect(ctx.destination);
        window.__audio = ctx;
      });
      return pc;
    };
    window.RTCPeerConnection.prototype = Native.prototype;
  });
  await page.goto(`${base}/call`);
  await page.screenshot({ path: `${out}/1-ready.png` });
  summary.keypad_before_call = await page.isVisible('#keypad');
  await page.click('#call');
  await page.waitForFunction(() => document.getElementById('status').textContent === 'Connected.', null, { timeout: 30000 });
  await page.screenshot({ path: `${out}/2-connected.png` });
  summary.keypad_in_call = await page.isVisible('#keypad');
  // Four seconds of the welcome, then a key (barge-in), then three seconds of its answer.
  await page.waitForFunction(() => window.__heard.length >= 4 * 8000, null, { timeout: 30000 });
  if (mode === 'reload') {
    writeFileSync(`${out}/heard-before-reload.raw`, pcm(await page.evaluate(() => window.__heard)));
    await page.reload();
    await page.waitForFunction(() => document.getElementById('status').textContent === 'Connected.', null, { timeout: 30000 });
    await page.screenshot({ path: `${out}/2b-reconnected.png` });
    summary.keypad_after_reload = await page.isVisible('#keypad');
    await page.waitForFunction(() => window.__heard.length >= 8000, null, { timeout: 30000 });
  }
  summary.pressed_at_ms = Math.round((await page.evaluate(() => window.__heard.length)) / 8);
  await page.click('#keypad button:text-is("7")');
  await page.waitForFunction((n) => window.__heard.length >= n, (summary.pressed_at_ms + 3000) * 8, { timeout: 30000 });
  await page.click('#hangup');
  await page.waitForFunction(() => document.getElementById('status').textContent === 'You hung up.', null, { timeout: 10000 });
  await page.screenshot({ path: `${out}/3-hung-up.png` });
  summary.keypad_after_call = await page.isVisible('#keypad');
  summary.call_button_after_call = await page.isEnabled('#call');
  const heard = await page.evaluate(() => window.__heard);
  writeFileSync(`${out}/heard.raw`, pcm(heard));
  summary.heard_ms = Math.round(heard.length / 8);
  summary.status = await page.textContent('#status');
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
