//! Audio encoders for recordings: Ogg Opus (RFC 7845) and WAV (16-bit PCM), both fed
//! interleaved stereo 20 ms frames (left = the caller, right = what the caller heard).
//!
//! Both write to a byte buffer the sealer encrypts; nothing here touches a file.

use std::borrow::Cow;

use ogg::writing::{PacketWriteEndInfo, PacketWriter};

use super::format::AudioFormat;
use crate::media::codec::Law;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
    #[error("ogg: {0}")]
    Ogg(#[from] std::io::Error),
    #[error("ogg: {0}")]
    OggRead(#[from] ogg::reading::OggReadError),
    #[error("ogg: {0}")]
    Stream(String),
    #[error("a {0} Hz recording cannot be Opus (8, 12, 16, 24 or 48 kHz)")]
    Rate(u32),
}

pub enum AudioEncoder {
    Opus(Box<OggOpus>),
    Wav,
    /// WAV of G.711 bytes ([`AudioFormat::Mulaw`], [`AudioFormat::Alaw`]): the writer hands
    /// the call's bytes to the sealer itself; linear frames given here are companded.
    WavLaw(Law),
}

/// One 20 ms frame's samples per channel at `rate`.
pub fn frame_samples(rate: u32) -> usize {
    (rate / 50) as usize
}

impl AudioEncoder {
    /// Writes the stream's headers to `out`. `ogg_serial` is the Ogg stream's serial number
    /// (RFC 3533 §6 asks for a random one; the caller draws it, so the same inputs encode to
    /// the same bytes); only Opus uses it.
    pub fn new(
        format: AudioFormat,
        rate: u32,
        complexity: i32,
        ogg_serial: u32,
        out: &mut Vec<u8>,
    ) -> Result<AudioEncoder, EncodeError> {
        match format {
            AudioFormat::Opus => Ok(AudioEncoder::Opus(Box::new(OggOpus::new(
                rate, complexity, ogg_serial, out,
            )?))),
            AudioFormat::Wav => {
                wav_header(rate, 2, u32::MAX, out);
                Ok(AudioEncoder::Wav)
            }
            AudioFormat::Mulaw | AudioFormat::Alaw => {
                wav_header_of(format, rate, 2, u32::MAX, out);
                Ok(AudioEncoder::WavLaw(format.law().unwrap_or(Law::Mu)))
            }
        }
    }

    /// The G.711 law of a companded WAV.
    pub fn law(&self) -> Option<Law> {
        match self {
            AudioEncoder::WavLaw(law) => Some(*law),
            _ => None,
        }
    }

    /// Encodes consecutive interleaved stereo frames of `frame_len` samples each.
    pub fn push_frames(
        &mut self,
        interleaved: &[i16],
        frame_len: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        match self {
            AudioEncoder::Opus(_) => {
                for frame in interleaved.chunks_exact(frame_len.max(1)) {
                    self.push(frame, out)?;
                }
                Ok(())
            }
            // PCM has no frames: the whole run converts in one loop.
            AudioEncoder::Wav | AudioEncoder::WavLaw(_) => self.push(interleaved, out),
        }
    }

    /// Encodes one interleaved stereo frame.
    pub fn push(&mut self, interleaved: &[i16], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            AudioEncoder::Opus(o) => o.push(interleaved, out),
            AudioEncoder::Wav => {
                // Sized first, then filled pairwise: a loop the compiler vectorizes (a push
                // per sample showed in the recording profile).
                let start = out.len();
                out.resize(start + interleaved.len() * 2, 0);
                for (o, s) in out[start..].chunks_exact_mut(2).zip(interleaved) {
                    o.copy_from_slice(&s.to_le_bytes());
                }
                Ok(())
            }
            AudioEncoder::WavLaw(law) => {
                law.encode(interleaved, out);
                Ok(())
            }
        }
    }

    /// Ends the current Ogg page so what was encoded so far can be sealed.
    pub fn flush(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            AudioEncoder::Opus(o) => o.end_page(out),
            AudioEncoder::Wav | AudioEncoder::WavLaw(_) => Ok(()),
        }
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            AudioEncoder::Opus(o) => o.finish(out),
            AudioEncoder::Wav | AudioEncoder::WavLaw(_) => Ok(()),
        }
    }
}

/// RIFF/WAVE header for 16-bit PCM. `data_len = u32::MAX` marks a stream of unknown length
/// (what the recorder writes; `export` fills in the real sizes).
pub fn wav_header(rate: u32, channels: u16, data_len: u32, out: &mut Vec<u8>) {
    wav_header_of(AudioFormat::Wav, rate, channels, data_len, out)
}

/// RIFF/WAVE header for a WAV `format`: 16-bit PCM (tag 1), or 8-bit G.711 µ-law (tag 7) or
/// A-law (tag 6). Always the 44-byte canonical layout (no `fact` chunk: readers of G.711 WAV
/// take its length from `data`).
pub fn wav_header_of(
    format: AudioFormat,
    rate: u32,
    channels: u16,
    data_len: u32,
    out: &mut Vec<u8>,
) {
    let (tag, bits): (u16, u16) = match format {
        AudioFormat::Mulaw => (7, 8),
        AudioFormat::Alaw => (6, 8),
        AudioFormat::Wav | AudioFormat::Opus => (1, 16),
    };
    let block = channels * bits / 8;
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&data_len.saturating_add(36).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * block as u32).to_le_bytes());
    out.extend_from_slice(&block.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
}

pub const WAV_HEADER_LEN: usize = 44;

/// Ogg Opus, stereo, one 20 ms packet per frame, a page about every second.
pub struct OggOpus {
    enc: opus::Encoder,
    ogg: PacketWriter<'static, Vec<u8>>,
    serial: u32,
    packet: Vec<u8>,
    /// Granule position: 48 kHz samples encoded, pre-skip included (RFC 7845 §4).
    granule: u64,
    per_frame_48k: u64,
    in_page: u32,
    /// The last packet, held back so the stream can end on it (EndStream needs a packet).
    held: Option<Vec<u8>>,
}

/// Packets per Ogg page: about one second of audio.
const PACKETS_PER_PAGE: u32 = 50;

impl OggOpus {
    fn new(
        rate: u32,
        complexity: i32,
        serial: u32,
        out: &mut Vec<u8>,
    ) -> Result<OggOpus, EncodeError> {
        if ![8000, 12000, 16000, 24000, 48000].contains(&rate) {
            return Err(EncodeError::Rate(rate));
        }
        let mut enc = opus::Encoder::new(rate, opus::Channels::Stereo, opus::Application::Voip)?;
        // Speech at telephone bandwidth: 12 kb/s per channel keeps it clear and small.
        enc.set_bitrate(opus::Bitrate::Bits(if rate <= 8000 {
            20000
        } else {
            28000
        }))?;
        enc.set_complexity(complexity.clamp(0, 10))?;
        let lookahead = enc.get_lookahead()? as u64 * (48000 / rate as u64);
        let mut ogg = PacketWriter::new(Vec::new());
        // RFC 7845 §5.1 identification header.
        let mut head = b"OpusHead".to_vec();
        head.push(1);
        head.push(2);
        head.extend_from_slice(&(lookahead as u16).to_le_bytes());
        head.extend_from_slice(&rate.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes());
        head.push(0);
        ogg.write_packet(head, serial, PacketWriteEndInfo::EndPage, 0)?;
        // §5.2 comment header: the vendor only (no metadata: the index holds it).
        let vendor = b"careline";
        let mut tags = b"OpusTags".to_vec();
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&0u32.to_le_bytes());
        ogg.write_packet(tags, serial, PacketWriteEndInfo::EndPage, 0)?;
        out.append(ogg.inner_mut());
        Ok(OggOpus {
            enc,
            ogg,
            serial,
            packet: vec![0; 1500],
            granule: 0,
            per_frame_48k: 960,
            in_page: 0,
            held: None,
        })
    }

    fn push(&mut self, interleaved: &[i16], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let n = self.enc.encode(interleaved, &mut self.packet)?;
        let packet = self.packet[..n].to_vec();
        if let Some(prev) = self.held.replace(packet) {
            self.write(prev, false, out)?;
        }
        Ok(())
    }

    fn write(&mut self, packet: Vec<u8>, last: bool, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.granule += self.per_frame_48k;
        self.in_page += 1;
        let info = if last {
            PacketWriteEndInfo::EndStream
        } else if self.in_page >= PACKETS_PER_PAGE {
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        if info != PacketWriteEndInfo::NormalPacket {
            self.in_page = 0;
        }
        self.ogg
            .write_packet(Cow::Owned(packet), self.serial, info, self.granule)?;
        out.append(self.ogg.inner_mut());
        Ok(())
    }

    fn end_page(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if let Some(prev) = self.held.take() {
            self.in_page = PACKETS_PER_PAGE; // forces the page out with this packet
            self.write(prev, false, out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let last = match self.held.take() {
            Some(p) => p,
            // Nothing held: end the stream on one frame of silence.
            None => {
                let silence = vec![0i16; 2 * (self.enc.get_sample_rate()? as usize / 50)];
                let n = self.enc.encode(&silence, &mut self.packet)?;
                self.packet[..n].to_vec()
            }
        };
        self.write(last, true, out)
    }
}

/// Decodes an Ogg Opus stream (as the recorder wrote it) to interleaved stereo PCM at `rate`.
/// A stream cut short (a crashed recording's last page) gives what came before the cut.
pub fn decode_ogg_opus(data: &[u8], rate: u32) -> Result<Vec<i16>, EncodeError> {
    let mut dec = OggOpusDecoder::new(rate)?;
    let mut pcm = Vec::new();
    dec.push(data, &mut pcm)?;
    Ok(pcm)
}

/// Decodes an Ogg Opus stream handed over in pieces of any size (as a recording is
/// decrypted) to interleaved stereo PCM: each page is parsed once all of it is there (the
/// `ogg` crate's page parser and packet reader, which are fed bytes rather than reading a
/// file), so what is held is one page, however long the recording.
pub struct OggOpusDecoder {
    /// Bytes of the page not yet complete.
    pending: Vec<u8>,
    packets: ogg::reading::BasePacketReader,
    dec: opus::Decoder,
    buf: Vec<i16>,
    rate: u32,
    packets_seen: u64,
    /// Samples per channel still to drop: the encoder's pre-skip (RFC 7845 §4.2).
    skip: usize,
}

/// The fixed part of an Ogg page header (RFC 3533 §6); the segment table follows.
const OGG_HEADER_LEN: usize = 27;

impl OggOpusDecoder {
    pub fn new(rate: u32) -> Result<OggOpusDecoder, EncodeError> {
        Ok(OggOpusDecoder {
            pending: Vec::new(),
            packets: ogg::reading::BasePacketReader::new(),
            dec: opus::Decoder::new(rate, opus::Channels::Stereo)?,
            // The longest Opus packet: 120 ms.
            buf: vec![0i16; 2 * rate as usize * 120 / 1000],
            rate,
            packets_seen: 0,
            skip: 0,
        })
    }

    /// Appends the audio of every page `bytes` completes to `pcm`.
    pub fn push(&mut self, bytes: &[u8], pcm: &mut Vec<i16>) -> Result<(), EncodeError> {
        use ogg::reading::PageParser;
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        while let Some(header) = self.pending.get(at..at + OGG_HEADER_LEN) {
            if !header.starts_with(b"OggS") {
                return Err(EncodeError::Stream(format!(
                    "no Ogg page where one should start ({} bytes into what was given)",
                    at
                )));
            }
            let header: [u8; OGG_HEADER_LEN] = header.try_into().unwrap_or([0; OGG_HEADER_LEN]);
            let (mut page, segments) = PageParser::new(header)?;
            let table = at + OGG_HEADER_LEN;
            let Some(segment_table) = self.pending.get(table..table + segments) else {
                break;
            };
            let body = page.parse_segments(segment_table.to_vec());
            let start = table + segments;
            let Some(data) = self.pending.get(start..start + body) else {
                break;
            };
            self.packets
                .push_page(page.parse_packet_data(data.to_vec())?)?;
            at = start + body;
            while let Some(packet) = self.packets.read_packet() {
                self.packet(&packet.data, pcm)?;
            }
        }
        self.pending.drain(..at);
        Ok(())
    }

    fn packet(&mut self, data: &[u8], pcm: &mut Vec<i16>) -> Result<(), EncodeError> {
        self.packets_seen += 1;
        match self.packets_seen {
            1 => {
                if data.len() >= 12 && data.starts_with(b"OpusHead") {
                    let pre_skip = u16::from_le_bytes([data[10], data[11]]) as usize;
                    self.skip = pre_skip * self.rate as usize / 48000;
                }
                Ok(())
            }
            2 => Ok(()), // OpusTags
            _ => {
                let n = self.dec.decode(data, &mut self.buf, false)?;
                let drop = self.skip.min(n);
                self.skip -= drop;
                pcm.extend_from_slice(&self.buf[2 * drop..2 * n]);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, ms: u32, hz: f32) -> Vec<i16> {
        (0..rate * ms / 1000)
            .map(|i| ((i as f32 * hz * std::f32::consts::TAU / rate as f32).sin() * 8000.0) as i16)
            .collect()
    }

    #[test]
    fn ogg_opus_round_trips_both_channels() {
        let rate = 8000;
        let left = tone(rate, 2500, 440.0);
        let right = tone(rate, 2500, 1000.0);
        let mut out = Vec::new();
        let mut enc = AudioEncoder::new(AudioFormat::Opus, rate, 5, 0x0c11_e11e, &mut out).unwrap();
        assert!(out.starts_with(b"OggS"));
        let n = frame_samples(rate);
        for f in 0..left.len() / n {
            let frame: Vec<i16> = (0..n)
                .flat_map(|i| [left[f * n + i], right[f * n + i]])
                .collect();
            enc.push(&frame, &mut out).unwrap();
        }
        enc.finish(&mut out).unwrap();
        let pcm = decode_ogg_opus(&out, rate).unwrap();
        assert!(
            (pcm.len() / 2) as i64 - left.len() as i64 <= n as i64,
            "{} samples for {}",
            pcm.len() / 2,
            left.len()
        );
        let l: Vec<i16> = pcm.iter().step_by(2).copied().collect();
        let r: Vec<i16> = pcm.iter().skip(1).step_by(2).copied().collect();
        let rms = |x: &[i16]| {
            (x.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
        };
        assert!(rms(&l[800..]) > 3000.0 && rms(&r[800..]) > 3000.0);

        // Fed in pieces of any size, the stream decodes to the same samples; a piece that
        // cuts a page holds it back until the rest comes, and a cut at the end is left out.
        for piece in [1, 7, 27, 28, 1000, 4096] {
            let mut dec = OggOpusDecoder::new(rate).unwrap();
            let mut got = Vec::new();
            for p in out.chunks(piece) {
                dec.push(p, &mut got).unwrap();
            }
            assert_eq!(got, pcm, "pieces of {piece} bytes");
        }
        let cut = decode_ogg_opus(&out[..out.len() - 10], rate).unwrap();
        assert!(!cut.is_empty() && cut.len() < pcm.len());
        assert_eq!(cut[..], pcm[..cut.len()], "what came before the cut");
        // Bytes that are not an Ogg page are an error, not silence.
        let mut bad = out.clone();
        bad[out.len() / 2..out.len() / 2 + 4].copy_from_slice(b"junk");
        assert!(decode_ogg_opus(&bad, rate).is_err());
    }
}
