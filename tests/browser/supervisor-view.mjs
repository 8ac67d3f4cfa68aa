// Headless Chromium (Debian's) as a supervisor: signs in through Careline's sign-in page,
// opens /supervisor, waits until agent AGENT's call rings (pushed over the console channel)
// and, once the queue's caller has waited past its alert limit, the alarm shows; takes a
// screenshot. A summary (the agent's row, the queue's row, the alarm) goes to stdout as JSON.
//
// Usage: node supervisor-view.mjs BASE_URL OUT_DIR USER PASSWORD AGENT QUEUE
import { launch, signIn } from './chromium.mjs';

const [base, out, user, password, agent, queue] = process.argv.slice(2);
const browser = await launch();
const summary = {};
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 620 } });
  page.on('console', (m) => console.error('page:', m.text()));
  await signIn(page, base, user, password, '/supervisor');
  await page.waitForSelector('#view:not([hidden])');
  summary.user = await page.textContent('#user');
  const row = `#agents tr[data-agent="${agent}"]`;
  await page.waitForFunction((r) => (document.querySelector(r)?.textContent || '').includes('Ringing'), row,
    { timeout: 30000 });
  summary.agent = await page.textContent(row);
  await page.waitForSelector('#alerts:not([hidden])', { timeout: 30000 });
  summary.alert = await page.textContent('#alerts');
  summary.queue = await page.$$eval(`#queues tr[data-queue="${queue}"] td`, (tds) => tds.map((td) => td.textContent));
  summary.queue_class = await page.getAttribute(`#queues tr[data-queue="${queue}"]`, 'class');
  // The report link downloads CSV with the supervisor's own session.
  const href = await page.getAttribute('#records-day', 'href');
  summary.records_csv = await page.evaluate(async (h) => {
    const r = await fetch(h);
    return `${r.status} ${r.headers.get('content-type')} ${(await r.text()).split('\r\n')[0]}`;
  }, href);
  await page.screenshot({ path: `${out}/1-desk.png` });
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
