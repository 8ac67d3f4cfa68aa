//! Media streaming: a flow starts streaming the call's audio to a WebSocket endpoint; the
//! endpoint hears both directions, and a dead endpoint does not disturb the call.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use careline::media::codec::Codec;
use futures_util::StreamExt;
use support::audio::wait_for_prompt;
use support::rtp::RtpPeer;
use support::server::{Options, TestServer};
use support::sip::{Call, Ua, answered_call, sdp_media_addr, sdp_offer};
use tokio_tungstenite::tungstenite::Message;

/// What the endpoint received: text messages and binary frames.
type Received = (Vec<String>, Vec<Vec<u8>>);

fn flow() -> String {
    serde_json::json!({"Version": "2019-10-30", "StartAction": "stream", "Actions": [
        {"Identifier": "stream", "Type": "UpdateContactMediaStreamingBehavior",
         "Parameters": {"MediaStreamingState": "Enabled", "MediaStreamType": "Audio",
                        "Participants": [{"ParticipantType": "Customer", "MediaDirections": ["To", "From"]}]},
         "Transitions": {"NextAction": "say", "Errors": [{"NextAction": "say", "ErrorType": "NoMatchingError"}]}},
        {"Identifier": "say", "Type": "MessageParticipant", "Parameters": {"PromptId": "welcome"},
         "Transitions": {"NextAction": "stop"}},
        {"Identifier": "stop", "Type": "StopMediaStreaming", "Parameters": {}, "Transitions": {"NextAction": "bye"}},
        {"Identifier": "bye", "Type": "MessageParticipant", "Parameters": {"PromptId": "goodbye"}, "Transitions": {"NextAction": "end"}},
        {"Identifier": "end", "Type": "DisconnectParticipant", "Parameters": {}, "Transitions": {}}
    ]})
    .to_string()
}

/// The welcome prompt's length plus `ms`.
fn server_with(url: &str) -> (TestServer, tempfile::TempDir) {
    let flows = tempfile::tempdir().unwrap();
    std::fs::write(flows.path().join("stream.json"), flow()).unwrap();
    let server = TestServer::start_with(Options {
        toml: format!(
            "[flows]\ndir = \"{}\"\ndefault = \"stream\"\n[media_streaming]\nurl = \"{url}\"\n",
            flows.path().display()
        ),
        ..Options::default()
    });
    (server, flows)
}

fn call(server: &TestServer) -> (RtpPeer, Ua, Call) {
    let peer = RtpPeer::new(Codec::Pcmu, 0, None);
    let mut ua = Ua::udp(server.sip);
    let mut call = Call::new("300");
    let ok = answered_call(
        &mut ua,
        &mut call,
        &sdp_offer(peer.port, "0", &["a=rtpmap:0 PCMU/8000"]),
    );
    peer.set_remote(sdp_media_addr(&ok.body_str()).unwrap());
    (peer, ua, call)
}

#[test]
fn the_endpoint_hears_both_directions_until_the_flow_stops_streaming() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let got: Arc<Mutex<Received>> = Default::default();
    let g = got.clone();
    rt.spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        while let Some(Ok(m)) = ws.next().await {
            match m {
                Message::Text(t) => g.lock().unwrap().0.push(t.to_string()),
                Message::Binary(b) => g.lock().unwrap().1.push(b.to_vec()),
                _ => {}
            }
        }
    });
    let (server, _flows) = server_with(&format!("ws://{addr}/audio"));
    let (peer, _ua, _call) = call(&server);
    peer.send_audio(vec![4000i16; 8000]); // a second of loud caller audio
    wait_for_prompt(&peer, Codec::Pcmu, "en", "welcome", 0, Some(2000));
    // The flow stops streaming after the welcome: wait for the endpoint to be told so.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (texts, frames) = loop {
        let (texts, frames) = got.lock().unwrap().clone();
        if texts.iter().any(|t| t.contains("\"stop\"")) {
            break (texts, frames);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the flow never stopped streaming: {texts:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(texts[0].contains("\"event\":\"start\""), "{texts:?}");
    assert!(frames.iter().all(|f| f.len() == 321));
    let to_caller: Vec<i16> = frames
        .iter()
        .filter(|f| f[0] == 1)
        .flat_map(|f| f[1..].chunks(2).map(|c| i16::from_le_bytes([c[0], c[1]])))
        .collect();
    let from_caller = frames.iter().filter(|f| f[0] == 0).count();
    assert!(
        from_caller > 20,
        "caller audio streamed: {from_caller} frames"
    );
    let welcome = support::server::prompt_pcm("en", "welcome");
    let m = careline::media::recognize::find(&to_caller, &welcome[..16000]).unwrap();
    assert!(
        m.waveform_score > 0.99,
        "the stream carries the prompt: {m:?}"
    );
}

#[test]
fn a_dead_endpoint_does_not_disturb_the_call() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // closed again: nothing listens there
    let (server, _flows) = server_with(&format!("ws://127.0.0.1:{port}/audio"));
    let (peer, _ua, _call) = call(&server);
    wait_for_prompt(&peer, Codec::Pcmu, "en", "welcome", 0, None);
    let w = support::server::prompt_pcm("en", "welcome").len() as u64 / 8;
    wait_for_prompt(&peer, Codec::Pcmu, "en", "goodbye", w, Some(1000));
}
