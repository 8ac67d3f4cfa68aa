// The agent console: the queues and who waits in them, refreshed every two seconds; Answer
// takes the caller who has waited longest (WHIP, RFC 9725: this browser's offer goes to
// POST /api/v1/queues/NAME/answer) and joins them to this browser once its media is up;
// Hold, Mute and Hang up act on the session that answer returned. The user signs in through
// Careline's own sign-in page (a session cookie); nothing here holds patient data.
const $ = (id) => document.getElementById(id);
const say = (text) => { $('status').textContent = text; };
let pc = null;
let session = null;
let held = false;
let muted = false;

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
  const body = $('queues').tBodies[0];
  body.replaceChildren(...queues.map((q) => {
    const row = document.createElement('tr');
    row.dataset.queue = q.name;
    for (const text of [q.name, String(q.waiting), q.waiting ? minutes(q.oldest_wait_secs) : '']) {
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
  say(`Answering the next caller in ${queue}…`);
  try {
    const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
    pc = new RTCPeerConnection();
    mic.getTracks().forEach((t) => pc.addTrack(t, mic));
    pc.ontrack = (e) => { $('remote').srcObject = e.streams[0] || new MediaStream([e.track]); };
    pc.onconnectionstatechange = () => {
      if (!pc) return;
      if (pc.connectionState === 'connected') {
        say('Talking with the caller.');
        $('controls').hidden = false;
        refresh();
      }
      if (['failed', 'closed', 'disconnected'].includes(pc.connectionState)) end('The call has ended.');
    };
    refresh();
    await pc.setLocalDescription(await pc.createOffer());
    const r = await fetch(`/api/v1/queues/${encodeURIComponent(queue)}/answer`, {
      method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp,
    });
    if (r.status !== 201) {
      const problem = await r.json().catch(() => ({}));
      end(r.status === 409 ? 'Nobody is waiting there any more.' : (problem.detail || 'The call could not be answered.'));
      return;
    }
    session = r.headers.get('Location');
    const callId = r.headers.get('Careline-Call-Id');
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
  const r = await fetch(`/api/v1/patients/${encodeURIComponent(id)}/summary`);
  if (r.status !== 200) return;
  const p = await r.json();
  const d = p.demographics;
  $('patient-name').textContent = d.name;
  $('patient-facts').textContent = [
    d.birth_date && `born ${d.birth_date}`, d.mrn && `MRN ${d.mrn}`,
    d.preferred_language && `speaks ${d.preferred_language}`,
  ].filter(Boolean).join(' · ');
  $('patient-alerts').replaceChildren(...p.alerts.map((a) => {
    const li = document.createElement('li');
    li.textContent = `${a.severity}: ${a.message}`;
    return li;
  }));
  const lists = [['Allergies', p.allergies], ['Medications', p.medications], ['Conditions', p.conditions],
    ['Appointments', p.upcoming_appointments]];
  $('patient-lists').replaceChildren(...lists.flatMap(([title, items]) => {
    const dt = document.createElement('dt');
    dt.textContent = title;
    const dd = document.createElement('dd');
    dd.textContent = items.length ? items.map((i) => i.display).join(', ') : 'none recorded';
    return [dt, dd];
  }));
  box.hidden = false;
}

async function control(action) {
  if (!session) return false;
  const r = await fetch(`${session}/${action}`, { method: 'POST' });
  return r.status === 204;
}

function end(text) {
  if (session) { fetch(session, { method: 'DELETE' }).catch(() => {}); session = null; }
  if (pc) { pc.getSenders().forEach((s) => s.track && s.track.stop()); pc.close(); pc = null; }
  held = false; muted = false;
  $('hold').textContent = 'Hold'; $('mute').textContent = 'Mute';
  $('controls').hidden = true;
  $('patient').hidden = true;
  say(text);
  refresh();
}

$('hold').addEventListener('click', async () => {
  if (await control(held ? 'resume' : 'hold')) {
    held = !held;
    $('hold').textContent = held ? 'Resume' : 'Hold';
    say(held ? 'The caller is on hold.' : 'Talking with the caller.');
  }
});
$('mute').addEventListener('click', async () => {
  if (await control(muted ? 'unmute' : 'mute')) {
    muted = !muted;
    $('mute').textContent = muted ? 'Unmute' : 'Mute';
  }
});
$('hangup').addEventListener('click', () => end('You hung up.'));

if (await whoami()) {
  await refresh();
  setInterval(refresh, 2000);
}
