// Headless Chromium (Debian's) as a nurse at the agent console: opens /agent, signs in through
// Careline's sign-in page, waits until the queue shows a caller, answers, talks (its fake
// microphone plays the WAV it was given), holds, resumes and hangs up. Screenshots of each step
// go to OUT_DIR; a summary goes to stdout as JSON. tests/webrtc.rs runs it against a server
// with a phone caller waiting, and checks what the phone heard.
//
// Usage: node agent-answer.mjs BASE_URL OUT_DIR USER PASSWORD QUEUE MIC_WAV
import { launch } from './chromium.mjs';

const [base, out, user, password, queue, mic] = process.argv.slice(2);
const browser = await launch(mic);
const summary = {};
const status = (page, text) =>
  page.waitForFunction((t) => document.getElementById('status').textContent === t, text, { timeout: 30000 });
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 560 } });
  page.on('console', (m) => console.error('page:', m.text()));
  await page.goto(`${base}/agent`);
  await page.waitForSelector('#signin:not([hidden])');
  await page.screenshot({ path: `${out}/1-sign-in-first.png` });
  await page.click('#signin a');
  await page.fill('#name', user);
  await page.fill('#password', password);
  await Promise.all([page.waitForURL(`${base}/agent`), page.click('button[type=submit]')]);
  await page.waitForSelector('#desk:not([hidden])');
  summary.user = await page.textContent('#user');
  const row = `#queues tr[data-queue="${queue}"]`;
  await page.waitForFunction((r) => document.querySelector(r)?.children[1].textContent === '1', row, { timeout: 30000 });
  await page.screenshot({ path: `${out}/2-a-caller-waits.png` });
  await page.click(`${row} button`);
  await status(page, 'Talking with the caller.');
  summary.call = await page.textContent('#call');
  // The caller left the queue: the table says so.
  await page.waitForFunction((r) => document.querySelector(r)?.children[1].textContent === '0', row, { timeout: 10000 })
    .catch(() => {});
  summary.waiting_while_talking = await page.textContent(`${row} td:nth-child(2)`);
  await page.waitForSelector('#patient:not([hidden])', { timeout: 10000 }).catch(() => {});
  summary.caller = await page.textContent('#patient-name');
  await page.screenshot({ path: `${out}/3-talking.png` });
  await page.waitForTimeout(3500);
  await page.click('#hold');
  await status(page, 'The caller is on hold.');
  summary.hold_button_when_held = await page.textContent('#hold');
  await page.screenshot({ path: `${out}/4-on-hold.png` });
  await page.waitForTimeout(3000);
  await page.click('#hold');
  await status(page, 'Talking with the caller.');
  await page.waitForTimeout(1500);
  await page.click('#hangup');
  await status(page, 'You hung up.');
  await page.screenshot({ path: `${out}/5-hung-up.png` });
  summary.controls_after = await page.isVisible('#controls');
  summary.status = await page.textContent('#status');
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
