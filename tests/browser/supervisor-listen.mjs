// Headless Chromium (Debian's) as a supervisor who listens in on a nurse's call: signs in,
// opens /supervisor, waits until agent AGENT is on a call, presses "Listen in" on their row,
// hears the call (the remote track's audio energy grows), barges in (its fake microphone
// plays MIC_WAV, which the caller then hears), goes back to listening and stops. Screenshots
// of each step go to OUT_DIR; a summary goes to stdout as JSON.
//
// Usage: node supervisor-listen.mjs BASE_URL OUT_DIR USER PASSWORD AGENT MIC_WAV
import { launch, signIn, watchAudio } from './chromium.mjs';

const [base, out, user, password, agent, mic] = process.argv.slice(2);
const browser = await launch(mic);
const summary = {};
const text = (page, id, t) => page.waitForFunction(
  ([i, v]) => (document.getElementById(i).textContent || '').startsWith(v), [id, t], { timeout: 30000 });
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
  page.on('console', (m) => console.error('page:', m.text()));
  // What the page receives.
  const energy = await watchAudio(page);
  await signIn(page, base, user, password, '/supervisor');
  await page.waitForSelector('#view:not([hidden])');
  const listen = `#agents tr[data-agent="${agent}"] button.listen`;
  await page.waitForSelector(listen, { timeout: 30000 });
  summary.button = await page.getAttribute(listen, 'aria-label');
  await page.screenshot({ path: `${out}/1-on-a-call.png` });
  await page.click(listen);
  await text(page, 'monitor-state', 'Listening to');
  summary.listening = await page.textContent('#monitor-state');
  const before = await energy();
  await page.waitForTimeout(3000);
  summary.heard_energy = (await energy()) - before;
  summary.button_while_listening = await page.textContent(listen);
  await page.screenshot({ path: `${out}/2-listening.png` });
  await page.click('#barge');
  await text(page, 'monitor-state', 'Speaking into');
  summary.barged = await page.textContent('#monitor-state');
  await page.screenshot({ path: `${out}/3-barged-in.png` });
  await page.waitForTimeout(3000);
  await page.click('#barge');
  await text(page, 'monitor-state', 'Listening to');
  await page.click('#leave');
  await page.waitForSelector('#monitor', { state: 'hidden' });
  summary.after = await page.textContent(listen);
  await page.screenshot({ path: `${out}/4-stopped.png` });
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
