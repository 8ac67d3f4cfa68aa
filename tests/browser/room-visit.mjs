// Headless Chromium (Debian's) as a clinician hosting a telehealth visit: signs in, opens
// /room/ROOM, joins (the first clinician hosts), waits until the patient PATIENT is in the
// waiting room, lets them in, hears them (the remote track's audio energy grows), mutes and
// unmutes them, reloads the page (and is back, still hosting), ends the visit for everyone
// and writes the visit's notes. The patient's summary shows while she is in the visit. Its fake microphone plays MIC_WAV (which the
// patient then hears). Screenshots of each step go to OUT_DIR; a summary goes to stdout as
// JSON.
//
// Usage: node room-visit.mjs BASE_URL OUT_DIR USER PASSWORD ROOM PATIENT MIC_WAV
import { launch, signIn, watchAudio } from './chromium.mjs';

const [base, out, user, password, room, patient, mic] = process.argv.slice(2);
const browser = await launch(mic);
const summary = {};
const status = (page, t) => page.waitForFunction(
  (v) => (document.getElementById('status').textContent || '').startsWith(v), t, { timeout: 30000 });
const row = (page) => page.locator('#participants li', { hasText: patient }).locator('.who');
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 760 } });
  page.on('console', (m) => console.error('page:', m.text()));
  const energy = await watchAudio(page);
  // Not signed in: the page says how to get in.
  await page.goto(`${base}/room/${room}`);
  await page.click('#join');
  await page.waitForSelector('#signin:not([hidden])');
  summary.signed_out = await page.textContent('#status');
  await page.screenshot({ path: `${out}/0-signed-out.png` });

  await signIn(page, base, user, password, `/room/${room}`);
  await page.click('#join');
  await status(page, 'You are hosting');
  summary.hosting = await page.textContent('#status');
  // The visit's patient: their summary, opened because the clinician is in the visit.
  await page.waitForSelector('#patient:not([hidden])', { timeout: 30000 });
  summary.patient_name = await page.textContent('#patient-name');
  await page.screenshot({ path: `${out}/1-hosting.png` });

  const letIn = `button[aria-label="Let in: ${patient}"]`;
  await page.waitForSelector(letIn, { timeout: 30000 });
  summary.waiting_row = (await row(page).textContent()).trim();
  await page.screenshot({ path: `${out}/2-patient-waiting.png` });
  await page.click(letIn);
  await page.waitForSelector(`button[aria-label="Mute: ${patient}"]`, { timeout: 30000 });
  // She talks the whole time: the talker indicator shows it.
  await page.waitForSelector('#participants li.talking', { timeout: 30000 });
  summary.in_row = (await row(page).textContent()).trim();
  const before = await energy();
  await page.waitForTimeout(3000);
  summary.heard_energy = (await energy()) - before;
  await page.screenshot({ path: `${out}/3-in-the-visit.png`, fullPage: true });

  await page.click(`button[aria-label="Mute: ${patient}"]`);
  await page.waitForSelector(`button[aria-label="Unmute: ${patient}"]`, { timeout: 30000 });
  summary.muted_row = (await row(page).textContent()).trim();
  await page.screenshot({ path: `${out}/4-patient-muted.png` });
  await page.click(`button[aria-label="Unmute: ${patient}"]`);
  await page.waitForSelector(`button[aria-label="Mute: ${patient}"]`, { timeout: 30000 });

  // Recording: everyone is shown it; stopped, the notice goes.
  await page.click('#record');
  await page.waitForSelector('#recording:not([hidden])', { timeout: 30000 });
  summary.recording = await page.textContent('#recording');
  summary.record_button = await page.textContent('#record');
  await page.screenshot({ path: `${out}/4b-recording.png` });
  await page.click('#record');
  await page.waitForSelector('#recording', { state: 'hidden', timeout: 30000 });

  // A reload keeps the visit: the page joins again by itself, still the host.
  await page.reload();
  await status(page, 'You are hosting');
  await page.waitForSelector(`button[aria-label="Mute: ${patient}"]`, { timeout: 30000 });
  summary.after_reload = await page.textContent('#status');
  await page.screenshot({ path: `${out}/5-after-reload.png` });

  await page.click('#end');
  await status(page, 'You ended the visit.');
  // The notes, just after the visit (the wrap-up time).
  await page.fill('#notes-text', 'Seen by video visit; doing well.');
  await page.click('#save-notes');
  await page.waitForFunction(() => document.getElementById('notes-state').textContent !== '');
  summary.notes = await page.textContent('#notes-state');
  summary.ended = await page.textContent('#status');
  summary.join_shown = await page.isVisible('#join');
  await page.screenshot({ path: `${out}/6-ended.png` });
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
