// The supervisor's live view: queues (waiting, oldest wait, agents, answered, abandoned,
// average speed of answer, service level) and every agent's state, pushed over the console
// channel (a WebSocket to /api/v1/ws, docs/signaling.md) whenever they change. Nothing here
// shows patient data. "Listen in" joins an agent's call from this browser, heard by nobody
// (POST /api/v1/calls/CALL/monitor with the browser's offer); "Barge in" lets the caller and
// the agent hear the supervisor too.
const $ = (id) => document.getElementById(id);
const STATES = {
  offline: 'Offline', available: 'Available', unavailable: 'Away', offered: 'Ringing',
  on_contact: 'On a call', after_contact_work: 'Wrap-up', missed: 'Missed a call',
};

function minutes(secs) {
  return `${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, '0')}`;
}

function row(cells) {
  const tr = document.createElement('tr');
  for (const text of cells) {
    const td = document.createElement('td');
    td.textContent = text;
    tr.append(td);
  }
  return tr;
}

// The call this supervisor listens in on: {agent, call, session, pc, mic, barged}.
let listening = null;
// The last view shown, drawn again when listening starts or stops (its buttons change).
let lastView = null;

async function listen(agent, call) {
  if (listening) return;
  $('monitor').hidden = false;
  $('monitor-state').textContent = `Joining ${agent}'s call…`;
  try {
    const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
    const pc = new RTCPeerConnection();
    mic.getTracks().forEach((t) => pc.addTrack(t, mic));
    pc.ontrack = (e) => { $('monitor-audio').srcObject = e.streams[0] || new MediaStream([e.track]); };
    listening = { agent, call, session: null, pc, mic, barged: false };
    pc.onconnectionstatechange = () => {
      if (['failed', 'closed'].includes(pc.connectionState)) stop(`${agent}'s call has ended.`);
    };
    await pc.setLocalDescription(await pc.createOffer());
    const r = await fetch(`/api/v1/calls/${encodeURIComponent(call)}/monitor`, {
      method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp,
    });
    if (r.status !== 201) {
      const problem = await r.json().catch(() => ({}));
      stop(problem.detail || 'Could not listen in.');
      return;
    }
    listening.session = r.headers.get('Location');
    await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
    showMonitor();
    if (lastView) show(lastView);
  } catch (e) {
    stop('Could not listen in: ' + e.message);
  }
}

function showMonitor() {
  const { agent, barged } = listening;
  $('monitor-state').textContent = barged
    ? `Speaking into ${agent}'s call: the caller and ${agent} hear you.`
    : `Listening to ${agent}'s call. Nobody hears you.`;
  $('barge').textContent = barged ? 'Back to listening' : 'Barge in';
  $('barge').hidden = false;
  $('leave').hidden = false;
}

async function barge() {
  if (!listening || !listening.session) return;
  const want = !listening.barged;
  const r = await fetch(`${listening.session}/${want ? 'barge' : 'listen'}`, { method: 'POST' });
  if (r.status === 204) { listening.barged = want; showMonitor(); }
}

function stop(text) {
  if (listening) {
    const { session, pc, mic } = listening;
    listening = null;
    if (session) fetch(session, { method: 'DELETE' }).catch(() => {});
    mic.getTracks().forEach((t) => t.stop());
    pc.close();
  }
  $('monitor-state').textContent = text;
  $('barge').hidden = true;
  $('leave').hidden = true;
  $('monitor').hidden = !text;
  if (lastView) show(lastView);
}

$('barge').addEventListener('click', barge);
$('leave').addEventListener('click', () => stop(''));

function show(view) {
  lastView = view;
  $('queues').tBodies[0].replaceChildren(...view.queues.map((q) => {
    const tr = row([
      q.name, String(q.waiting), q.waiting ? minutes(q.oldest_wait_secs) : '',
      `${q.agents_available} / ${q.agents_online} / ${q.agents_staffed}`,
      String(q.answered), String(q.abandoned),
      q.average_speed_of_answer_secs === null ? '' : `${q.average_speed_of_answer_secs} s`,
      q.service_level === null ? '' : `${Math.round(q.service_level * 100)} % in ${q.service_level_secs} s`,
    ]);
    tr.dataset.queue = q.name;
    if (q.over_limit > 0) tr.classList.add('over-limit');
    return tr;
  }));
  // Callers waiting past their queue's alert limit (the urgent line's minute), unanswered.
  const late = view.queues.filter((q) => q.over_limit > 0);
  $('alerts').hidden = late.length === 0;
  $('alerts').replaceChildren(...late.map((q) => {
    const p = document.createElement('p');
    const who = q.over_limit === 1 ? '1 caller has' : `${q.over_limit} callers have`;
    p.textContent = `${who} waited over ${minutes(q.alert_after_secs)} in ${q.name}, unanswered.`;
    return p;
  }));
  const agents = view.agents.filter((a) => a.state !== 'offline');
  $('agents').tBodies[0].replaceChildren(...agents.map((a) => {
    let state = STATES[a.state] || a.state;
    if (a.state === 'unavailable') state = `Away: ${a.reason}`;
    if (a.queue) state += ` (${a.queue})`;
    const tr = row([a.name, state, minutes(a.for_secs)]);
    tr.dataset.agent = a.name;
    const td = document.createElement('td');
    if (a.state === 'on_contact' && a.contact) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'listen';
      b.textContent = listening && listening.call === a.contact ? 'Listening' : 'Listen in';
      b.disabled = Boolean(listening);
      b.setAttribute('aria-label', `Listen in on ${a.name}'s call`);
      b.addEventListener('click', () => listen(a.name, a.contact));
      td.append(b);
    }
    tr.append(td);
    return tr;
  }));
  $('status').textContent = `${agents.length} agent${agents.length === 1 ? '' : 's'} signed in.`;
}

function open() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const channel = new WebSocket(`${scheme}://${location.host}/api/v1/ws`);
  channel.onmessage = (e) => {
    let msg;
    try { msg = JSON.parse(e.data); } catch { return; }
    if (msg.type === 'desk') show(msg);
  };
  channel.onclose = () => { $('status').textContent = 'Reconnecting…'; setTimeout(open, 2000); };
}

const me = await fetch('/api/v1/me');
if (me.status === 401) {
  $('signin').hidden = false;
} else {
  const r = await fetch('/api/v1/desk');
  if (r.status === 403) {
    $('user').textContent = 'This view is for supervisors.';
  } else if (r.ok) {
    const who = await me.json();
    $('user').textContent = `${who.name} (${who.role})`;
    $('view').hidden = false;
    show(await r.json());
    open();
  }
}
