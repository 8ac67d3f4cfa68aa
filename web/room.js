// A telehealth visit in the browser (issue 24). A patient or guest opens the link the clinic
// sent (/room/ID?t=TOKEN); a clinician opens /room/ID signed in. Joining sends a WHIP offer
// to POST /api/v1/rooms/ID/join; the session URL it answers is polled for where this
// participant stands (the waiting room, the visit) and who else is there. The host lets
// people in, mutes and takes them out, and ends the visit (docs/rooms.md).
//
// A reload does not lose the visit: this tab remembers it was in this room
// (sessionStorage) and the reloaded page joins again at once, which Careline answers with
// the same place in the room (no second wait in the waiting room).
//
// A patient or guest whose browser cannot join (no microphone, a network that blocks the
// media, a connection lost) is offered "we will call your phone": their number goes to
// POST /api/v1/rooms/ID/call-me with their link's token, and Careline calls them into the
// same visit by phone.
//
// A clinician in a visit about a patient sees the patient's summary (it opens because they
// are in the visit with them; each read is audited) and writes the visit's notes into the
// patient's contact history (channel telehealth), during the visit or just after it.
import { showSummary } from '/patient-summary.js';

const $ = (id) => document.getElementById(id);
const say = (text) => { $('status').textContent = text; };
const room = location.pathname.split('/').filter(Boolean)[1] || '';
const token = new URLSearchParams(location.search).get('t');
let pc = null;
let session = null;
let timer = null;
let wasIn = false;
// The visit's patient and title, once a clinician is in (for the summary and the notes).
let visit = null;
const SAVED = 'careline.room';
// Set while the page unloads (a reload): the place is kept for the reloaded page.
let leaving = false;
addEventListener('pagehide', () => { leaving = true; });

async function join() {
  $('join').disabled = true;
  say('Connecting…');
  try {
    const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
    pc = new RTCPeerConnection();
    mic.getTracks().forEach((t) => pc.addTrack(t, mic));
    pc.ontrack = (e) => { $('remote').srcObject = e.streams[0] || new MediaStream([e.track]); };
    pc.onconnectionstatechange = () => {
      if (pc && !leaving && pc.connectionState === 'failed') finish('Your connection to the visit was lost. Press Join to come back.', true);
    };
    await pc.setLocalDescription(await pc.createOffer());
    const url = `/api/v1/rooms/${room}/join` + (token ? `?t=${encodeURIComponent(token)}` : '');
    const r = await fetch(url, {
      method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp,
    });
    if (r.status !== 201) {
      const problem = await r.json().catch(() => ({}));
      const signedOut = r.status === 401;
      // Refused (a bad link, turned away, over): a phone would be refused too.
      const refused = [401, 403, 409, 410].includes(r.status);
      finish(signedOut ? 'Please open the link the clinic sent you.' : (problem.detail || 'The visit cannot be joined now.'), !refused);
      $('signin').hidden = !signedOut;
      return;
    }
    session = r.headers.get('Location');
    sessionStorage.setItem(SAVED, room);
    await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
    $('join').hidden = true;
    $('leave').hidden = false;
    await refresh();
    timer = setInterval(refresh, 1000);
  } catch (e) {
    const mic = ['NotFoundError', 'NotAllowedError', 'NotReadableError'].includes(e.name);
    finish(mic ? 'The visit could not be joined: this browser has no microphone it may use.'
      : 'The visit could not be joined: ' + e.message, true);
  }
}

// Where this participant stands, and (for the host) the controls for everyone else.
async function refresh() {
  if (!session) return;
  const r = await fetch(session).catch(() => null);
  if (!r) return;
  if (r.status === 404) {
    session = null;
    finish(wasIn ? 'The visit has ended.' : 'You were not let in to this visit.');
    return;
  }
  const me = await r.json();
  if (me.presence === 'waiting') {
    say('You are in the waiting room. The clinician will let you in shortly.');
  } else {
    wasIn = true;
    say(me.host ? 'You are hosting this visit.' : (me.muted ? 'You are in the visit (muted by the host).' : 'You are in the visit.'));
  }
  $('end').hidden = !me.host;
  // Everyone is told the visit is recorded; the host starts and stops it.
  $('recording').hidden = !me.recording;
  $('record').hidden = !me.host;
  $('call-out').hidden = !me.host;
  $('record').textContent = me.recording ? 'Stop recording' : 'Record the visit';
  $('record').dataset.recording = me.recording ? 'yes' : '';
  if (me.patient_id && !visit) {
    visit = { patient: me.patient_id, title: me.title, started: Date.now() };
    $('patient').hidden = !(await showSummary(me.patient_id));
    $('notes').hidden = false;
  }
  $('people').hidden = false;
  const list = $('participants');
  list.replaceChildren(...me.participants.map((p) => person(p, me)));
}

function person(p, me) {
  const li = document.createElement('li');
  const talking = (me.talking || []).includes(p.id);
  const what = p.presence === 'waiting' ? 'waiting' : (p.presence === 'away' ? 'reconnecting'
    : (p.muted ? 'muted' : (talking ? 'talking' : 'in the visit')));
  if (talking) li.className = 'talking';
  const role = p.id === me.host_participant ? 'host' : p.role;
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = `${p.label} (${role}, ${p.channel}): ${what}${p.id === me.participant ? ' (you)' : ''}`;
  li.append(who);
  if (me.host && p.id !== me.participant) {
    const actions = p.presence === 'waiting' ? [['admit', 'Let in'], ['deny', 'Turn away']]
      : [[p.muted ? 'unmute' : 'mute', p.muted ? 'Unmute' : 'Mute'], ['remove', 'Remove']];
    if (p.role === 'clinician' && p.presence === 'present') actions.push(['host', 'Make host']);
    for (const [action, label] of actions) {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = label;
      b.setAttribute('aria-label', `${label}: ${p.label}`);
      b.addEventListener('click', () => control(p.id, action));
      li.append(b);
    }
  }
  return li;
}

async function control(pid, action) {
  await fetch(`/api/v1/rooms/${room}/participants/${pid}/${action}`, { method: 'POST' }).catch(() => {});
  refresh();
}

// `trouble`: the browser could not join; an invitee is offered a phone call instead.
function finish(text, trouble = false) {
  $('call-me').hidden = !(trouble && token);
  sessionStorage.removeItem(SAVED);
  if (timer) { clearInterval(timer); timer = null; }
  if (session) { fetch(session, { method: 'DELETE' }).catch(() => {}); session = null; }
  if (pc) { pc.getSenders().forEach((s) => s.track && s.track.stop()); pc.close(); pc = null; }
  $('leave').hidden = true; $('end').hidden = true;
  $('record').hidden = true; $('recording').hidden = true; $('call-out').hidden = true;
  $('join').hidden = false; $('join').disabled = false;
  say(text);
}

$('call-me').addEventListener('submit', async (e) => {
  e.preventDefault();
  const number = $('call-me-number').value.trim();
  $('call-me-state').textContent = 'Calling…';
  const r = await fetch(`/api/v1/rooms/${room}/call-me?t=${encodeURIComponent(token)}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ number }),
  }).catch(() => null);
  if (r && r.status === 202) {
    $('call-me-state').textContent = `We are calling ${number} now. Answer it to join the visit.`;
    return;
  }
  const problem = r ? await r.json().catch(() => ({})) : {};
  $('call-me-state').textContent = r && r.status === 422 ? 'Please check the number: digits, and + for a country code.'
    : (problem.detail || 'We could not call you. Please call the clinic.');
});

// The notes go into the patient's contact history; after the visit, within the wrap-up
// time, too.
$('save-notes').addEventListener('click', async () => {
  if (!visit) return;
  const notes = $('notes-text').value.trim();
  if (!notes) return;
  const r = await fetch(`/api/v1/patients/${encodeURIComponent(visit.patient)}/contacts`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
      channel: 'telehealth', reason: visit.title, notes,
      duration_secs: Math.round((Date.now() - visit.started) / 1000),
    }),
  }).catch(() => null);
  $('notes-state').textContent = r && r.status === 201 ? 'Notes saved to the contact history.'
    : 'The notes could not be saved.';
});
$('record').addEventListener('click', async () => {
  const action = $('record').dataset.recording ? 'stop' : 'start';
  await fetch(`/api/v1/rooms/${room}/recording/${action}`, { method: 'POST' }).catch(() => {});
  refresh();
});
// The host calls a number into the visit (through the clinic's trunk); it shows in the
// list once answered.
$('call-out').addEventListener('submit', async (e) => {
  e.preventDefault();
  const r = await fetch(`/api/v1/rooms/${room}/participants`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ number: $('call-number').value.trim(), label: $('call-label').value.trim(), role: $('call-role').value }),
  }).catch(() => null);
  const problem = r && r.status !== 202 ? await r.json().catch(() => ({})) : {};
  $('call-state').textContent = r && r.status === 202 ? 'Calling… they join the visit when they answer.'
    : (problem.detail || 'The call could not be placed.');
});
$('signin').href = `/login?next=/room/${room}`;
$('join').addEventListener('click', join);
if (sessionStorage.getItem(SAVED) === room) join();
$('leave').addEventListener('click', () => finish('You left the visit.'));
$('end').addEventListener('click', async () => {
  await fetch(`/api/v1/rooms/${room}/end`, { method: 'POST' }).catch(() => {});
  finish('You ended the visit.');
});
