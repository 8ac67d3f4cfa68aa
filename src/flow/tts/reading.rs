//! Japanese reading: kanji to how they are said, before espeak-ng (which reads kanji as
//! "Chinese letter"). Uses MeCab with IPADIC (Debian `mecab` + `mecab-ipadic-utf8`) and takes
//! the pronunciation field, not the reading, so the particles は and へ come out as wa and e.
//!
//! Why MeCab's CLI and not the `lindera` crate: lindera's embedded IPADIC is downloaded by its
//! build script (no registry package carries it), so it cannot build offline, and it adds the
//! whole dictionary (tens of MB) to every binary; MeCab is one apt package and a short-lived
//! process per text, and only Japanese texts pay for it.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug)]
pub enum Reading {
    /// Texts go to the engine as written.
    Off,
    /// Run this MeCab program.
    Mecab { program: String, warned: AtomicBool },
}

impl Reading {
    pub fn mecab(program: impl Into<String>) -> Reading {
        Reading::Mecab {
            program: program.into(),
            warned: AtomicBool::new(false),
        }
    }

    /// The text as pronounced (katakana), or the text itself when MeCab is unavailable.
    pub async fn pronounce(&self, text: &str) -> String {
        let Reading::Mecab { program, warned } = self else {
            return text.to_string();
        };
        match run(program, text).await {
            Ok(out) => pronunciation(&out),
            Err(e) => {
                if !warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "Japanese reading unavailable (install mecab and mecab-ipadic-utf8); kanji will be read badly");
                }
                text.to_string()
            }
        }
    }
}

async fn run(program: &str, text: &str) -> std::io::Result<String> {
    let mut child = tokio::process::Command::new(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        // One line per input line; MeCab answers each with an EOS.
        let mut input = text.replace(['\r', '\n'], " ");
        input.push('\n');
        stdin.write_all(input.as_bytes()).await?;
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut out).await?;
    }
    let status = child.wait().await?;
    if !status.success() {
        return Err(std::io::Error::other(format!("mecab exited with {status}")));
    }
    Ok(out)
}

/// MeCab IPADIC output (`surface\tPOS,...,base,reading,pronunciation`) to the pronunciation;
/// words without one (numbers, Latin letters, unknown words) stay as written.
pub fn pronunciation(mecab_output: &str) -> String {
    let mut out = String::new();
    for line in mecab_output.lines() {
        if line == "EOS" {
            continue;
        }
        let Some((surface, features)) = line.split_once('\t') else {
            continue;
        };
        let pron = features
            .split(',')
            .nth(8)
            .filter(|p| !p.is_empty() && *p != "*");
        out.push_str(pron.unwrap_or(surface));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_pronunciation_so_particles_read_wa_and_e() {
        let out = "医療\t名詞,一般,*,*,*,*,医療,イリョウ,イリョー\n\
                   へ\t助詞,格助詞,一般,*,*,*,へ,ヘ,エ\n\
                   は\t助詞,係助詞,*,*,*,*,は,ハ,ワ\n\
                   4\t名詞,数,*,*,*,*,*\n\
                   EOS\n";
        assert_eq!(pronunciation(out), "イリョーエワ4");
    }
}
