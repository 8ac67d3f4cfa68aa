use std::sync::Arc;

use super::queue::interleave;
use super::*;
use crate::media::codec::Law;
use crate::media::codec::g711;

fn tap(
    law: Option<Law>,
    sides: Participants,
    queue_frames: usize,
) -> (
    RecorderTap,
    Arc<FrameQueue>,
    std::sync::mpsc::Receiver<TapControl>,
) {
    let queue = FrameQueue::new(queue_frames);
    let (tx, rx) = std::sync::mpsc::channel();
    let t = RecorderTap::new(
        RecordingId::random(),
        8000,
        law,
        sides,
        queue.clone(),
        Box::new(tx),
    );
    (t, queue, rx)
}

fn taken(queue: &FrameQueue) -> Vec<Block> {
    let mut out = Vec::new();
    queue.take(&mut out, &mut Vec::new());
    out
}

/// A block's frames, interleaved as the writer stores them.
fn linear(b: &Block) -> Vec<i16> {
    let mut out = Vec::new();
    match &b.samples {
        Samples::Linear(v) => interleave_block(v, b.frames, &mut out),
        Samples::Companded(_) => panic!("expected linear samples"),
    }
    out
}

fn companded(b: &Block) -> Vec<u8> {
    let mut out = Vec::new();
    match &b.samples {
        Samples::Companded(v) => interleave_block(v, b.frames, &mut out),
        Samples::Linear(_) => panic!("expected G.711 bytes"),
    }
    out
}

fn ended(rx: &std::sync::mpsc::Receiver<TapControl>) -> (u64, u64) {
    for msg in rx.try_iter() {
        if let TapControl::End {
            frames, dropped, ..
        } = msg
        {
            return (frames, dropped);
        }
    }
    panic!("no End sent");
}

#[test]
fn interleaving_puts_each_side_in_its_place_whatever_the_length() {
    for (nl, nr) in [(160, 160), (0, 0), (5, 5), (17, 17), (33, 33)] {
        let l: Vec<u8> = (0..nl).map(|i| (i % 200) as u8).collect();
        let r: Vec<u8> = (0..nr).map(|i| 255 - (i % 200) as u8).collect();
        let mut frame = vec![0xEEu8; 320];
        interleave(&mut frame, &l, &r);
        for i in 0..160 {
            assert_eq!(
                frame[2 * i],
                l.get(i).copied().unwrap_or(0xEE),
                "left {i} ({nl}, {nr})"
            );
            assert_eq!(
                frame[2 * i + 1],
                r.get(i).copied().unwrap_or(0xEE),
                "right {i} ({nl}, {nr})"
            );
        }
    }
}

#[test]
fn frames_travel_in_half_second_blocks_and_the_rest_goes_at_the_end() {
    let (mut t, queue, rx) = tap(None, Participants::BOTH, 8192);
    for i in 0..60i16 {
        t.push(&[i; 160], &[-i; 160]);
    }
    let blocks = taken(&queue);
    assert_eq!(
        blocks.len(),
        2,
        "two full blocks, the rest still with the leg"
    );
    assert_eq!((blocks[0].first_seq, blocks[1].first_seq), (0, 25));
    let pcm = linear(&blocks[1]);
    assert_eq!(pcm.len(), 25 * 320);
    // Frame 25: caller 25 on the left, what was heard (-25) on the right.
    assert_eq!(&pcm[..4], &[25, -25, 25, -25]);
    t.end();
    let rest = taken(&queue);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].first_seq, 50);
    assert_eq!(linear(&rest[0]).len(), 10 * 320);
    assert_eq!(ended(&rx), (60, 0));
}

#[test]
fn a_pause_hands_over_what_was_recorded_and_stores_nothing_until_resumed() {
    let (mut t, queue, rx) = tap(None, Participants::BOTH, 8192);
    for _ in 0..3 {
        t.push(&[1; 160], &[2; 160]);
    }
    t.pause();
    assert_eq!(linear(&taken(&queue)[0]).len(), 3 * 320);
    for _ in 0..100 {
        t.push(&[9; 160], &[9; 160]);
    }
    assert!(taken(&queue).is_empty(), "nothing recorded while paused");
    t.resume();
    t.push(&[3; 160], &[4; 160]);
    t.end();
    let after = taken(&queue);
    assert_eq!(after[0].first_seq, 3, "a pause leaves no gap to fill");
    assert_eq!(&linear(&after[0])[..2], &[3, 4]);
    assert_eq!(ended(&rx), (4, 0));
}

#[test]
fn g711_bytes_are_stored_as_they_are_and_an_unrecorded_side_is_silence() {
    let caller_only = Participants {
        customer: true,
        agent: false,
    };
    let (mut t, queue, _rx) = tap(Some(Law::Mu), caller_only, 8192);
    t.push_companded(&[0x12; 160], &[0x34; 160]);
    // Short input (a lost packet's worth missing) is padded with µ-law silence.
    t.push_companded(&[0x56; 100], &[]);
    t.end();
    let bytes = companded(&taken(&queue)[0]);
    assert_eq!(bytes.len(), 2 * 320);
    assert_eq!(&bytes[..4], &[0x12, 0xFF, 0x12, 0xFF]);
    assert_eq!(&bytes[320..322], &[0x56, 0xFF]);
    assert_eq!(&bytes[320 + 200..320 + 202], &[0xFF, 0xFF]);
}

#[test]
fn a_recycled_buffer_keeps_nothing_of_its_last_block() {
    let (mut t, queue, _rx) = tap(Some(Law::Mu), Participants::BOTH, 8192);
    for _ in 0..BLOCK_FRAMES {
        t.push_companded(&[0x11; 160], &[0x22; 160]);
    }
    let mut first = Vec::new();
    queue.take(&mut first, &mut Vec::new());
    assert_eq!(first.len(), 1);
    let ptr = |b: &Block| match &b.samples {
        Samples::Companded(v) => v.as_ptr(),
        Samples::Linear(_) => panic!("expected G.711 bytes"),
    };
    let recycled = ptr(&first[0]);
    // The writer gives the buffer back; the tap's next hand-over takes it to fill.
    let mut done: Vec<Samples> = first.into_iter().map(|b| b.samples).collect();
    queue.take(&mut Vec::new(), &mut done);
    for _ in 0..BLOCK_FRAMES {
        t.push_companded(&[0x33; 160], &[0x44; 160]);
    }
    // Filled into the recycled buffer: a short caller frame, then the end.
    t.push_companded(&[0x55; 10], &[0x66; 160]);
    t.push_companded(&[], &[]);
    t.end();
    let blocks = taken(&queue);
    assert_eq!(blocks.len(), 2);
    assert_eq!(
        ptr(&blocks[1]),
        recycled,
        "the last block refilled the first's buffer"
    );
    let last = companded(&blocks[1]);
    assert_eq!(last.len(), 2 * 320, "two frames, not the buffer's 25");
    for (i, pair) in last.chunks(2).enumerate() {
        let want = match i {
            0..10 => [0x55, 0x66],
            10..160 => [0xFF, 0x66],
            _ => [0xFF, 0xFF],
        };
        assert_eq!(pair, want, "sample {i}");
    }
}

#[test]
fn the_callers_bytes_may_come_in_two_pieces_and_only_a_frame_of_them_is_used() {
    let (mut t, queue, _rx) = tap(Some(Law::A), Participants::BOTH, 8192);
    let (a, b) = ([1u8; 100], [2u8; 100]);
    assert_eq!(t.push_companded_parts([&a, &b], &[3; 160]), 160);
    assert_eq!(t.push_companded_parts([&b[..30], &[]], &[3; 160]), 30);
    t.end();
    let bytes = companded(&taken(&queue)[0]);
    let left: Vec<u8> = bytes.iter().step_by(2).copied().collect();
    assert_eq!(&left[..100], &[1; 100]);
    assert_eq!(&left[100..160], &[2; 60]);
    assert_eq!(&left[160..190], &[2; 30]);
    assert!(left[190..].iter().all(|&x| x == Law::A.silence()));

    // A caller not recorded still has a frame's worth taken each tick (nothing piles up).
    let heard_only = Participants {
        customer: false,
        agent: true,
    };
    let (mut t, queue, _rx) = tap(Some(Law::A), heard_only, 8192);
    assert_eq!(t.push_companded_parts([&a, &b], &[3; 160]), 160);
    t.end();
    let bytes = companded(&taken(&queue)[0]);
    assert!(bytes.iter().step_by(2).all(|&x| x == Law::A.silence()));
    assert!(bytes.iter().skip(1).step_by(2).all(|&x| x == 3));
}

#[test]
fn linear_frames_for_a_g711_recording_are_companded() {
    // The call moved to Opus mid-recording: the file keeps its law.
    let (mut t, queue, _rx) = tap(Some(Law::A), Participants::BOTH, 8192);
    t.push(&[1000; 160], &[0; 160]);
    t.end();
    let bytes = companded(&taken(&queue)[0]);
    assert_eq!(bytes[0], g711::linear_to_alaw(1000));
    assert_eq!(bytes[1], Law::A.silence());
    // A-law has no exact zero: its silence code is the smallest step (8 of 32,768).
    assert_eq!(g711::alaw_to_linear(Law::A.silence()), 8);
    assert_eq!(g711::ulaw_to_linear(Law::Mu.silence()), 0);
}

#[test]
fn a_writer_far_behind_loses_whole_blocks_and_they_are_counted() {
    // Room for two blocks at 16 kHz stereo, so four at 8 kHz.
    let (mut t, queue, rx) = tap(None, Participants::BOTH, 2 * BLOCK_FRAMES);
    for _ in 0..(6 * BLOCK_FRAMES) {
        t.push(&[0; 160], &[0; 160]);
    }
    t.end();
    let blocks = taken(&queue);
    assert_eq!(blocks.len(), 4);
    assert_eq!(
        ended(&rx),
        (4 * BLOCK_FRAMES as u64, 2 * BLOCK_FRAMES as u64)
    );
}
