// Headless Chromium (Debian's) as a nurse at the agent console who consults an outside number
// before handing the caller over (a warm transfer): signs in, answers the caller waiting in
// QUEUE, types NUMBER in "or number" and presses Consult (the caller goes on hold), brings
// the caller in once the number answered (the page says so), then hands the caller over and
// leaves. Screenshots of each step go to OUT_DIR; a summary goes to stdout as JSON.
//
// Usage: node agent-consult.mjs BASE_URL OUT_DIR USER PASSWORD QUEUE NUMBER MIC_WAV
import { launch, signIn } from './chromium.mjs';

const [base, out, user, password, queue, number, mic] = process.argv.slice(2);
const browser = await launch(mic);
const summary = {};
const status = (page, text) =>
  page.waitForFunction((t) => document.getElementById('status').textContent === t, text, { timeout: 30000 });
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 640 } });
  page.on('console', (m) => console.error('page:', m.text()));
  await signIn(page, base, user, password, '/agent');
  await page.waitForSelector('#desk:not([hidden])');
  const row = `#queues tr[data-queue="${queue}"]`;
  await page.waitForFunction((r) => document.querySelector(r)?.children[1].textContent === '1', row, { timeout: 30000 });
  await page.click(`${row} button`);
  await status(page, 'Talking with the caller.');
  await page.fill('#transfer-number', number);
  await page.click('#consult');
  await status(page, 'The caller is on hold.');
  summary.consulting = await page.textContent('#consult-state');
  summary.hold_button = await page.textContent('#hold');
  await page.screenshot({ path: `${out}/1-consulting.png` });
  // Until the number answers, bringing the caller in is refused (and the page says so).
  const deadline = Date.now() + 30000;
  while (!(await page.textContent('#consult-state')).startsWith('You, the caller')) {
    if (Date.now() > deadline) throw new Error('the consulted number never answered');
    await page.waitForTimeout(500);
    // The button hides once the caller is in: a click that finds it gone is no failure.
    await page.click('#consult-join', { timeout: 2000 }).catch(() => {});
  }
  summary.three_way = await page.textContent('#consult-state');
  await page.screenshot({ path: `${out}/2-three-way.png` });
  await page.waitForTimeout(3000);
  await page.click('#consult-complete');
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('You handed'), null,
    { timeout: 10000 });
  summary.status = await page.textContent('#status');
  summary.controls_after = await page.isVisible('#controls');
  await page.screenshot({ path: `${out}/3-handed-over.png` });
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
