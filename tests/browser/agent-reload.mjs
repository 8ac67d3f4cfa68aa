// Headless Chromium (Debian's) as a nurse whose console reloads mid-call: she accepts the call
// that rings, talks, reloads the page (the caller hears hold music meanwhile) and is back on
// the same call by herself; she puts the caller on hold and reloads again: back, still holding
// (the Resume button says so); she resumes, talks, hangs up and wraps up. Screenshots of each
// step go to OUT_DIR; a summary goes to stdout as JSON. tests/webrtc.rs runs it against a
// server with a phone caller waiting in a queue.
//
// Usage: node agent-reload.mjs BASE_URL OUT_DIR USER PASSWORD MIC_WAV
import { launch, signIn } from './chromium.mjs';

const [base, out, user, password, mic] = process.argv.slice(2);
const browser = await launch(mic);
const summary = {};
const text = (page, id, t) =>
  page.waitForFunction(([i, v]) => document.getElementById(i).textContent === v, [id, t], { timeout: 30000 });
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 640 } });
  page.on('console', (m) => console.error('page:', m.text()));
  await signIn(page, base, user, password, '/agent');
  await page.waitForSelector('#desk:not([hidden])');
  await page.selectOption('#availability', 'available');
  await page.waitForSelector('#ringing:not([hidden])', { timeout: 30000 });
  await page.click('#accept');
  await text(page, 'status', 'Talking with the caller.');
  summary.call = await page.textContent('#call');
  await page.waitForTimeout(1500);

  await page.reload();
  await page.waitForSelector('#desk:not([hidden])');
  await text(page, 'status', 'Talking with the caller.');
  await text(page, 'agent-state', 'On a call');
  summary.call_after_reload = await page.textContent('#call');
  summary.controls_after_reload = await page.isVisible('#controls');
  await page.screenshot({ path: `${out}/1-back-after-reload.png` });
  await page.waitForTimeout(1500);

  await page.click('#hold');
  await text(page, 'status', 'The caller is on hold.');
  await page.reload();
  await page.waitForSelector('#desk:not([hidden])');
  await text(page, 'status', 'The caller is on hold.');
  summary.hold_button_after_reload = await page.textContent('#hold');
  await page.screenshot({ path: `${out}/2-still-holding-after-reload.png` });
  await page.click('#hold');
  await text(page, 'status', 'Talking with the caller.');
  summary.reconnected_at = Date.now();
  await page.waitForTimeout(3500);

  await page.click('#hangup');
  await page.waitForSelector('#wrapup:not([hidden])', { timeout: 30000 });
  await page.selectOption('#wrapup-code', 'advice-given');
  await page.click('#done');
  await text(page, 'agent-state', 'Available: waiting for a call');
  // A reload now finds no call to take back.
  await page.reload();
  await page.waitForSelector('#desk:not([hidden])');
  await page.waitForTimeout(1000);
  summary.controls_after_the_call = await page.isVisible('#controls');
  summary.status_after_the_call = await page.textContent('#status');
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
