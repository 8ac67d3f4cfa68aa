//! Shared test harness: a real server process, a raw SIP phone, an RTP endpoint.
#![allow(dead_code)]

pub mod aiortc;
pub mod audio;
pub mod browser;
pub mod chromium;
pub mod console;
pub mod fixtures;
pub mod http;
pub mod postgres;
pub mod rtp;
pub mod server;
pub mod sip;
pub mod smtp;
pub mod speech;
pub mod tls;

/// Stops a helper process that exits at the end of its input (the SMTP sink, the aiortc
/// peer): closes its stdin, gives it `grace` to finish, then kills it.
pub fn end_child(
    child: &mut std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    grace: std::time::Duration,
) {
    drop(stdin);
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
