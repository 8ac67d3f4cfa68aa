// The agent console. The live channel (a WebSocket to /api/v1/ws, docs/signaling.md) carries
// the agent's status and the calls routing offers them: a call rings here with Accept and
// Decline, Accept sends this browser's WHIP offer (RFC 9725) to /api/v1/calls/ID/accept, and
// once its media is up the caller is joined to it; after the call, wrap-up until Done. The
// queue table (refreshed every two seconds) also lets the agent pick the caller who has
// waited longest (POST /api/v1/queues/NAME/answer). Hold, Mute and Hang up act on the session
// the answer returned. The user signs in through Careline's own sign-in page (a session
// cookie); nothing here holds patient data until a call's screen-pop.
//
// A reload does not lose the caller: the session's URL (with the call, its queue and the
// hold and mute buttons' state) is kept in this tab's sessionStorage, and the reloaded page
// sends a new offer to SESSION/reconnect; the caller hears hold music meanwhile, for up to
// [webrtc] reconnect_grace_secs, then goes back to the queue (docs/signaling.md).
import { showSummary } from '/patient-summary.js';

const $ = (id) => document.getElementById(id);
const say = (text) => { $('status').textContent = text; };
let pc = null;
let session = null;
let held = false;
let muted = false;
let consulting = null;
let channel = null;
let ringing = null; // { callId, queue, until }
let ringTimer = null;
let contact = null; // the call being handled or wrapped up
let wrapUpCodes = [];
let current = null; // { callId, queue } of the call this browser talks on
let menuSet = false; // the availability menu shows a state the server sent
const SAVED = 'careline-agent-call';

// What a reloaded page needs to take this call back; nothing of the patient.
function save() {
  if (session && current) {
    sessionStorage.setItem(SAVED, JSON.stringify({ session, ...current, held, muted }));
  } else {
    sessionStorage.removeItem(SAVED);
  }
}

const STATES = {
  offline: 'Offline', available: 'Available: waiting for a call', unavailable: 'Away',
  offered: 'A call is ringing', on_contact: 'On a call', after_contact_work: 'Wrap-up',
  missed: 'Missed a call',
};

function minutes(secs) {
  return `${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, '0')}`;
}

async function whoami() {
  const r = await fetch('/api/v1/me');
  if (r.status === 401) {
    $('signin').hidden = false;
    return false;
  }
  const me = await r.json();
  $('user').textContent = `${me.name} (${me.role})`;
  $('desk').hidden = false;
  return true;
}

async function refresh() {
  const r = await fetch('/api/v1/queues');
  if (r.status === 401) { location.reload(); return; }
  if (r.status === 403) { say('Your role does not answer calls.'); return; }
  if (!r.ok) return;
  const { queues } = await r.json();
  const chosen = $('transfer-to').value;
  $('transfer-to').replaceChildren(...queues.map((q) => new Option(q.name, q.name)));
  if (chosen) $('transfer-to').value = chosen;
  const body = $('queues').tBodies[0];
  body.replaceChildren(...queues.map((q) => {
    const row = document.createElement('tr');
    row.dataset.queue = q.name;
    const cells = [q.name, String(q.waiting), q.waiting ? minutes(q.oldest_wait_secs) : '',
      String(q.agents_available ?? '')];
    for (const text of cells) {
      const cell = document.createElement('td');
      cell.textContent = text;
      row.append(cell);
    }
    const cell = document.createElement('td');
    const answer = document.createElement('button');
    answer.type = 'button';
    answer.textContent = 'Answer';
    answer.disabled = q.waiting === 0 || pc !== null;
    answer.addEventListener('click', () => take(q.name));
    cell.append(answer);
    row.append(cell);
    return row;
  }));
}

async function take(queue) {
  await connect(`/api/v1/queues/${encodeURIComponent(queue)}/answer`, queue);
}

// Sends this browser's offer to `path` (a queue's answer, or an offered call's accept) and
// joins the caller once the media is up. `resume`: what save() kept before a reload; the
// offer goes to that session's reconnect instead.
async function connect(path, queue, resume = null) {
  say(resume ? `Reconnecting to your caller from ${queue}…` : `Answering a caller from ${queue}…`);
  try {
    const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
    pc = new RTCPeerConnection();
    mic.getTracks().forEach((t) => pc.addTrack(t, mic));
    pc.ontrack = (e) => { $('remote').srcObject = e.streams[0] || new MediaStream([e.track]); };
    pc.onconnectionstatechange = () => {
      if (!pc) return;
      if (pc.connectionState === 'connected') {
        say(held ? 'The caller is on hold.' : 'Talking with the caller.');
        $('controls').hidden = false;
        refresh();
      }
      if (['failed', 'closed', 'disconnected'].includes(pc.connectionState)) end('The call has ended.');
    };
    refresh();
    await pc.setLocalDescription(await pc.createOffer());
    const r = await fetch(resume ? `${resume.session}/reconnect` : path, {
      method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp,
    });
    if (r.status !== (resume ? 200 : 201)) {
      const problem = await r.json().catch(() => ({}));
      if (resume) {
        sessionStorage.removeItem(SAVED);
        end(r.status === 404 ? 'The call ended while the page reloaded.'
          : (problem.detail || 'The call could not be taken back.'));
      } else {
        end(r.status === 409 ? 'That caller is no longer waiting for you.' : (problem.detail || 'The call could not be answered.'));
      }
      return;
    }
    session = resume ? resume.session : r.headers.get('Location');
    const callId = resume ? resume.callId : r.headers.get('Careline-Call-Id');
    current = { callId, queue };
    if (resume) {
      onHold(resume.held);
      muted = resume.muted;
      $('mute').textContent = muted ? 'Unmute' : 'Mute';
    }
    save();
    $('call').textContent = `Call ${callId} from ${queue}`;
    showCaller(callId).catch(() => {});
    await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
  } catch (e) {
    end('The call could not be answered: ' + e.message);
  }
}

// The screen-pop: who the caller is, as the IVR identified them. The call's link makes this
// user the one handling it, so the summary opens to them (and the read is audited).
async function showCaller(callId) {
  const box = $('patient');
  const link = await fetch(`/api/v1/calls/${encodeURIComponent(callId)}/contact`);
  if (link.status !== 200) {
    $('patient-name').textContent = 'Caller not identified';
    $('patient-facts').textContent = 'The IVR did not find this caller in the patient records.';
    $('patient-alerts').replaceChildren();
    $('patient-lists').replaceChildren();
    box.hidden = false;
    return;
  }
  const { patient_id: id } = await link.json();
  if (!(await showSummary(id))) return;
  box.hidden = false;
}

async function control(action) {
  if (!session) return false;
  const r = await fetch(`${session}/${action}`, { method: 'POST' });
  return r.status === 204;
}

function end(text) {
  consulting = null;
  $('consulting').hidden = true;
  $('consult').disabled = false;
  if (session) { fetch(session, { method: 'DELETE' }).catch(() => {}); session = null; }
  if (pc) { pc.getSenders().forEach((s) => s.track && s.track.stop()); pc.close(); pc = null; }
  current = null;
  sessionStorage.removeItem(SAVED);
  held = false; muted = false;
  $('hold').textContent = 'Hold'; $('mute').textContent = 'Mute';
  $('controls').hidden = true;
  $('patient').hidden = true;
  say(text);
  refresh();
}

$('hold').addEventListener('click', async () => {
  if (await control(held ? 'resume' : 'hold')) {
    onHold(!held);
    say(held ? 'The caller is on hold.' : 'Talking with the caller.');
  }
});
$('mute').addEventListener('click', async () => {
  if (await control(muted ? 'unmute' : 'mute')) {
    muted = !muted;
    $('mute').textContent = muted ? 'Unmute' : 'Mute';
    save();
  }
});
$('hangup').addEventListener('click', () => end('You hung up.'));
// A blind transfer: the caller waits in the chosen queue for the next agent, or (a number
// typed) is put through to that number by the trunk; this browser's part of the call is
// over (the server ends the session, so no hang-up is sent).
$('transfer').addEventListener('click', async () => {
  const number = $('transfer-number').value.trim();
  const agent = $('transfer-agent').value.trim();
  const queue = $('transfer-to').value;
  if (!session || (!queue && !number && !agent)) return;
  const target = number ? `to=${encodeURIComponent(number)}`
    : agent ? `agent=${encodeURIComponent(agent)}` : `queue=${encodeURIComponent(queue)}`;
  const r = await fetch(`${session}/transfer?${target}`, { method: 'POST' });
  if (r.status === 204) {
    session = null;
    $('transfer-number').value = '';
    $('transfer-agent').value = '';
    end(`You transferred the caller to ${number || agent || queue}.`);
  } else {
    const problem = await r.json().catch(() => ({}));
    say(problem.detail || 'The caller could not be transferred.');
  }
});

// Consult, then transfer: the number typed in "or number" is called while the caller waits
// on hold; once it answers the agent talks with it, then brings the caller in, hands the
// caller over (and leaves), or drops it (docs/signaling.md). `consulting`: the number.
function onHold(on) {
  held = on;
  $('hold').textContent = held ? 'Resume' : 'Hold';
  save();
}
$('consult').addEventListener('click', async () => {
  const number = $('transfer-number').value.trim();
  if (!session || consulting) return;
  if (!number) { say('Type the number to consult in "or number" first.'); return; }
  const r = await fetch(`${session}/consult?to=${encodeURIComponent(number)}`, { method: 'POST' });
  if (r.status !== 204) {
    const problem = await r.json().catch(() => ({}));
    say(problem.detail || 'The number could not be called.');
    return;
  }
  consulting = number;
  onHold(true);
  $('consult-state').textContent = `Calling ${number}; the caller is on hold.`;
  $('consult-join').hidden = false;
  $('consult').disabled = true;
  $('consulting').hidden = false;
  say('The caller is on hold.');
});
$('consult-join').addEventListener('click', async () => {
  // One request at a time: a second click while the first is answered does nothing.
  $('consult-join').disabled = true;
  const joined = await control('conference');
  $('consult-join').disabled = false;
  if (joined) {
    onHold(false);
    $('consult-state').textContent = `You, the caller and ${consulting} are talking together.`;
    $('consult-join').hidden = true;
    say(`Talking with the caller and ${consulting}.`);
  } else {
    say(`${consulting} has not answered.`);
  }
});
$('consult-complete').addEventListener('click', async () => {
  const number = consulting;
  if (await control('complete')) {
    session = null;
    $('transfer-number').value = '';
    end(`You handed the caller over to ${number}.`);
  } else {
    say(`${number} has not answered.`);
  }
});
$('consult-cancel').addEventListener('click', async () => {
  // Over already (busy, no answer, hung up): the caller is still on hold.
  if (!(await control('cancel'))) await control('resume');
  consulting = null;
  $('consulting').hidden = true;
  $('consult').disabled = false;
  onHold(false);
  say('Talking with the caller.');
});

// The live channel: the agent's status and the calls that ring for them.
function openChannel() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  channel = new WebSocket(`${scheme}://${location.host}/api/v1/ws`);
  channel.onmessage = (e) => {
    let msg;
    try { msg = JSON.parse(e.data); } catch { return; }
    if (msg.type === 'hello') showCodes(msg.wrap_up_codes || []);
    if (msg.type === 'state') showState(msg);
    if (msg.type === 'offer') ring(msg);
    if (msg.type === 'offer_withdrawn') stopRinging(msg.why === 'contact_left' ? 'The caller hung up.'
      : msg.why === 'timed_out' ? 'You missed a call.' : null);
    if (msg.type === 'error') say(msg.reason);
  };
  // A dropped channel comes back; the desk keeps this agent as they were meanwhile.
  channel.onclose = () => { channel = null; setTimeout(openChannel, 2000); };
}

function send(msg) {
  if (channel && channel.readyState === WebSocket.OPEN) channel.send(JSON.stringify(msg));
}

// The wrap-up codes, as words: `advice-given` reads "Advice given".
function showCodes(codes) {
  wrapUpCodes = codes;
  const label = (c) => c.charAt(0).toUpperCase() + c.slice(1).replace(/[-_]/g, ' ');
  $('wrapup-code').replaceChildren(new Option('Choose the outcome', ''),
    ...codes.map((c) => new Option(label(c), c)));
}

function showState(msg) {
  const wrapping = msg.state === 'after_contact_work';
  if (msg.state === 'on_contact' || wrapping) {
    if (msg.contact !== contact) {
      contact = msg.contact;
      $('wrapup-code').value = '';
      $('wrapup-notes').value = '';
      $('wrapup-error').textContent = '';
    }
  }
  $('agent-state').textContent = msg.state === 'unavailable' ? `Away: ${msg.reason}` : STATES[msg.state] || msg.state;
  // On a call the menu keeps the agent's last choice; a page (re)loaded mid-call has none
  // yet and shows what took the call (available) rather than its blank default (offline).
  const busy = ['offered', 'on_contact', 'after_contact_work'].includes(msg.state);
  const choice = msg.state === 'unavailable' ? `unavailable:${msg.reason}`
    : ['available', 'offline'].includes(msg.state) ? msg.state
      : busy && !menuSet ? 'available' : null;
  menuSet = true;
  if (choice && [...$('availability').options].some((o) => o.value === choice)) $('availability').value = choice;
  const opening = wrapping && $('wrapup').hidden;
  $('wrapup').hidden = !wrapping;
  if (opening) $('wrapup-code').focus();
  // Missed: the menu may still say Available, so choosing it again would change nothing.
  $('ready').hidden = msg.state !== 'missed';
  if (msg.state !== 'offered') stopRinging(null);
}

function ring(offer) {
  ringing = { callId: offer.call_id, queue: offer.queue, until: Date.now() + offer.rings_for_secs * 1000 };
  const tick = () => {
    const left = Math.max(0, Math.round((ringing.until - Date.now()) / 1000));
    $('ringing-detail').textContent = offer.callback
      ? `A callback in ${offer.queue}, asked for ${minutes(offer.waited_secs)} ago: accepting calls the patient. Rings for ${left} s more.`
      : `A caller in ${offer.queue}, waiting ${minutes(offer.waited_secs)}. Rings for ${left} s more.`;
  };
  tick();
  clearInterval(ringTimer);
  ringTimer = setInterval(tick, 1000);
  $('ringing').hidden = false;
  $('accept').disabled = pc !== null;
  $('accept').focus();
}

function stopRinging(text) {
  if (!ringing) return;
  ringing = null;
  clearInterval(ringTimer);
  $('ringing').hidden = true;
  if (text) say(text);
}

$('accept').addEventListener('click', () => {
  if (!ringing) return;
  const { callId, queue } = ringing;
  stopRinging(null);
  connect(`/api/v1/calls/${encodeURIComponent(callId)}/accept`, queue);
});
$('decline').addEventListener('click', () => {
  if (!ringing) return;
  send({ type: 'decline', call_id: ringing.callId });
  stopRinging('You declined the call.');
});
$('wrapup-code').addEventListener('change', () => { $('wrapup-error').textContent = ''; });
// Save the outcome and notes (POST /api/v1/calls/ID/wrap-up), then leave wrap-up.
$('done').addEventListener('click', async () => {
  const code = $('wrapup-code').value;
  if (wrapUpCodes.length && !code) {
    $('wrapup-error').textContent = 'Choose how the call ended.';
    $('wrapup-code').focus();
    return;
  }
  if (code && contact) {
    $('done').disabled = true;
    const r = await fetch(`/api/v1/calls/${encodeURIComponent(contact)}/wrap-up`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ code, notes: $('wrapup-notes').value }),
    }).catch(() => null);
    $('done').disabled = false;
    // 409: saved already (a second click); anything else keeps the notes on screen.
    if (!r || (!r.ok && r.status !== 409)) {
      const body = r ? await r.json().catch(() => ({})) : {};
      const why = body.detail || body.error;
      $('wrapup-error').textContent = `Not saved: ${why || 'the server did not answer'}. Try again.`;
      return;
    }
  }
  $('wrapup-error').textContent = '';
  say('Wrap-up saved.');
  send({ type: 'done' });
});
$('ready').addEventListener('click', () => send({ type: 'state', state: 'available' }));
$('availability').addEventListener('change', () => {
  const [state, reason] = $('availability').value.split(':');
  send(reason ? { type: 'state', state, reason } : { type: 'state', state });
});

if (await whoami()) {
  openChannel();
  const saved = JSON.parse(sessionStorage.getItem(SAVED) || 'null');
  if (saved && saved.session) connect(null, saved.queue, saved);
  await refresh();
  setInterval(refresh, 2000);
}
