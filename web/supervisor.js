// The supervisor's live view: queues (waiting, oldest wait, agents, answered, abandoned,
// average speed of answer, service level) and every agent's state, pushed over the console
// channel (a WebSocket to /api/v1/ws, docs/signaling.md) whenever they change. Nothing here
// shows patient data.
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

function show(view) {
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
