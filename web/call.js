// "Call the clinic": a browser calls Careline by WHIP (RFC 9725). The offer goes to
// POST /api/v1/calls/whip, the answer comes back in the response, and the call runs the
// clinic's contact flow as a phone call does. ?to=NUMBER or ?flow=NAME on this page's URL
// pick the flow (as a dialed number would). Keys are sent as RFC 4733 telephone-events.
//
// A reload does not drop the call: the session's URL is kept in this tab's sessionStorage,
// and the reloaded page sends a new offer to SESSION/reconnect, which Careline answers on
// the same call within [webrtc] reconnect_grace_secs (docs/webrtc.md).
const $ = (id) => document.getElementById(id);
const say = (text) => { $('status').textContent = text; };
const SAVED = 'careline.call';
let pc = null;
let session = null;
// Set while the page unloads (a reload): the call is kept for the reloaded page.
let leaving = false;
addEventListener('pagehide', () => { leaving = true; });

// A new peer connection with the microphone, its offer sent to `url`; the HTTP answer.
async function offer(url) {
  const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
  pc = new RTCPeerConnection();
  mic.getTracks().forEach((t) => pc.addTrack(t, mic));
  pc.ontrack = (e) => { $('remote').srcObject = e.streams[0] || new MediaStream([e.track]); };
  pc.onconnectionstatechange = () => {
    if (leaving || !pc) return;
    if (pc.connectionState === 'connected') { say('Connected.'); $('keypad').hidden = false; }
    if (['failed', 'closed', 'disconnected'].includes(pc.connectionState)) { end('The call ended.'); }
  };
  await pc.setLocalDescription(await pc.createOffer());
  return fetch(url, {
    method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp,
  });
}

async function answered(r) {
  await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
  $('call').hidden = true;
  $('hangup').hidden = false;
}

async function call() {
  $('call').disabled = true;
  say('Connecting…');
  try {
    const r = await offer('/api/v1/calls/whip' + location.search);
    if (r.status === 401 || r.status === 403) {
      end('Calls from this page are not open to the public. Please sign in first, or phone the clinic.');
      return;
    }
    if (r.status !== 201) {
      const problem = await r.json().catch(() => ({}));
      end(problem.detail || 'The clinic cannot take the call now. Please try again later.');
      return;
    }
    session = r.headers.get('Location');
    sessionStorage.setItem(SAVED, session);
    await answered(r);
  } catch (e) {
    end('The call could not start: ' + e.message);
  }
}

// After a reload: back onto the call this tab had.
async function reconnect(saved) {
  session = saved;
  $('call').disabled = true;
  say('Reconnecting to your call…');
  try {
    const r = await offer(saved + '/reconnect');
    if (r.status !== 200) {
      if (r.status === 404) session = null; // over already: nothing to hang up
      end('Your call has ended. Press Call to call the clinic again.');
      return;
    }
    await answered(r);
  } catch (e) {
    end('The call could not be resumed: ' + e.message);
  }
}

function end(text) {
  if (session) { fetch(session, { method: 'DELETE' }).catch(() => {}); session = null; }
  sessionStorage.removeItem(SAVED);
  if (pc) { pc.getSenders().forEach((s) => s.track && s.track.stop()); pc.close(); pc = null; }
  $('keypad').hidden = true; $('hangup').hidden = true;
  $('call').hidden = false; $('call').disabled = false;
  say(text);
}

$('call').addEventListener('click', call);
$('hangup').addEventListener('click', () => end('You hung up.'));
$('keypad').addEventListener('click', (e) => {
  const sender = pc && pc.getSenders().find((s) => s.dtmf);
  if (e.target.tagName === 'BUTTON' && sender) sender.dtmf.insertDTMF(e.target.textContent, 120);
});
const saved = sessionStorage.getItem(SAVED);
if (saved) reconnect(saved);
