// Headless Chromium (Debian's) as a patient whose browser cannot join a telehealth visit (it
// has no microphone): she opens her invitation link, presses Join, is told it could not be
// joined and offered "Trouble joining? We can call your phone"; a number that is none is
// refused with a hint, her own number gets "We are calling ... now". Screenshots of each step
// go to OUT_DIR; a summary goes to stdout as JSON. tests/rooms.rs runs it with a clinician
// in the visit and a phone on the trunk that then rings.
//
// Usage: node room-call-me.mjs BASE_URL OUT_DIR LINK NUMBER
import { launch } from './chromium.mjs';

const [base, out, link, number] = process.argv.slice(2);
const browser = await launch();
const summary = {};
const state = (page, t) => page.waitForFunction(
  (v) => (document.getElementById('call-me-state').textContent || '').startsWith(v), t, { timeout: 30000 });
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 640 } });
  page.on('console', (m) => console.error('page:', m.text()));
  await page.goto(`${base}${link}`);
  summary.call_me_before = await page.isVisible('#call-me');
  await page.click('#join');
  await page.waitForSelector('#call-me:not([hidden])', { timeout: 30000 });
  summary.status = await page.textContent('#status');
  await page.screenshot({ path: `${out}/1-call-me-offered.png` });
  await page.fill('#call-me-number', 'my mobile');
  await page.click('#call-me button[type=submit]');
  await state(page, 'Please check the number');
  summary.bad_number = await page.textContent('#call-me-state');
  await page.fill('#call-me-number', number);
  await page.click('#call-me button[type=submit]');
  await state(page, 'We are calling');
  summary.calling = await page.textContent('#call-me-state');
  await page.screenshot({ path: `${out}/2-calling.png` });
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
