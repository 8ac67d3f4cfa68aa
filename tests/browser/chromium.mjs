// What the tests' Chromium scripts share: Debian's headless Chromium (or $CHROMIUM), with a
// fake microphone that plays a WAV file when one is given, and signing in through
// Careline's own sign-in page.
import { chromium } from 'playwright-core';

// Chromium with its microphone playing `mic` (a WAV path), or without a microphone.
export function launch(mic) {
  const media = mic ? [
    '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${mic}`,
    '--autoplay-policy=no-user-gesture-required',
  ] : [];
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [...media, '--no-sandbox'],
  });
}

// Signs `user` in at BASE's sign-in page and lands on `next` (a path such as /agent).
export async function signIn(page, base, user, password, next) {
  await page.goto(`${base}/login?next=${next}`);
  await page.fill('#name', user);
  await page.fill('#password', password);
  await Promise.all([page.waitForURL(`${base}${next}`), page.click('button[type=submit]')]);
}

// Records the peer connections `page` makes; the returned function sums the audio energy
// they have received so far (what the page heard).
export async function watchAudio(page) {
  await page.addInitScript(() => {
    window.__pcs = [];
    const Native = window.RTCPeerConnection;
    window.RTCPeerConnection = function (...args) {
      const pc = new Native(...args);
      window.__pcs.push(pc);
      return pc;
    };
    window.RTCPeerConnection.prototype = Native.prototype;
  });
  return () => page.evaluate(async () => {
    let total = 0;
    for (const pc of window.__pcs) {
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') total += s.totalAudioEnergy || 0;
      });
    }
    return total;
  });
}
