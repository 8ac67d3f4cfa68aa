// Headless Chromium (Debian's) as a nurse whom routing offers a call: opens /agent, signs in
// through Careline's sign-in page, makes herself available, hears the call ring (the ringing
// panel), declines it, makes herself ready again, hears it ring again, accepts, talks (its fake microphone plays the WAV it was given), hangs up, wraps up
// and is available again. Screenshots of each step go to OUT_DIR; a summary goes to stdout as
// JSON. tests/webrtc.rs runs it against a server with a phone caller waiting in a queue.
//
// Usage: node agent-offer.mjs BASE_URL OUT_DIR USER PASSWORD MIC_WAV
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
  await text(page, 'agent-state', 'Offline');
  summary.user = await page.textContent('#user');
  await page.screenshot({ path: `${out}/1-offline.png` });
  await page.selectOption('#availability', 'available');
  await page.waitForSelector('#ringing:not([hidden])', { timeout: 30000 });
  summary.ringing = await page.textContent('#ringing-detail');
  summary.state_ringing = await page.textContent('#agent-state');
  await page.screenshot({ path: `${out}/2-ringing.png` });
  // She declines first: missed, the call goes back to its place; Ready for calls brings it
  // back to her (the only nurse).
  await page.click('#decline');
  await text(page, 'agent-state', 'Missed a call');
  summary.ready_when_missed = await page.isVisible('#ready');
  await page.screenshot({ path: `${out}/2b-missed.png` });
  await page.click('#ready');
  await page.waitForSelector('#ringing:not([hidden])', { timeout: 30000 });
  summary.ready_after = await page.isVisible('#ready');
  await page.click('#accept');
  await text(page, 'status', 'Talking with the caller.');
  await text(page, 'agent-state', 'On a call');
  summary.ringing_after_accept = await page.isVisible('#ringing');
  await page.screenshot({ path: `${out}/3-talking.png` });
  await page.waitForTimeout(3500);
  await page.click('#hangup');
  await page.waitForSelector('#wrapup:not([hidden])', { timeout: 30000 });
  summary.state_after_call = await page.textContent('#agent-state');
  summary.wrapup_focus = await page.evaluate(() => document.activeElement?.id);
  // Done without an outcome: she is asked for one, and stays in wrap-up.
  await page.click('#done');
  await text(page, 'wrapup-error', 'Choose how the call ended.');
  summary.wrapup_codes = await page.$$eval('#wrapup-code option', (o) => o.map((x) => x.value).filter(Boolean));
  await page.selectOption('#wrapup-code', 'advice-given');
  await page.fill('#wrapup-notes', 'Chest pain resolved; advised to rest and call back if it returns.');
  await page.screenshot({ path: `${out}/4-wrap-up.png` });
  await page.click('#done');
  await text(page, 'agent-state', 'Available: waiting for a call');
  summary.status_after_done = await page.textContent('#status');
  summary.wrapup_after_done = await page.isVisible('#wrapup');
  await page.screenshot({ path: `${out}/5-available-again.png` });
  summary.state = await page.textContent('#agent-state');
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
