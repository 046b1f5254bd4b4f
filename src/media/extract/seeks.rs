//! Sparse plans: the seeks, batched into ffmpeg runs ([`super::args::seek_batch`]),
//! run on as many cores as the job's share allows, their frames emitted in
//! time order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};

use super::pair::Image;
use super::{CancelFlag, ExtractRequest, POLL, args, pump};
use crate::media::MediaError;

/// At most this many seeks share one ffmpeg run: enough to spread its
/// start-up (~70 ms, mostly loading libraries) over several frames.
const MAX_SEEKS_PER_RUN: usize = 8;
/// A run opens a decoder per seek, all at once; their pictures may take
/// about this many bytes per pixel (reference frames, threads' copies).
const DECODER_BYTES_PER_PIXEL: u64 = 24;
/// What the decoders of one batched run may take together.
const SEEK_RUN_MEMORY: u64 = 256 << 20;

/// Seeks per run for `timestamps` seeks spread over `workers` cores.
fn seeks_per_run(timestamps: usize, workers: usize, picture: Option<(u32, u32)>) -> usize {
    let pixels = picture.map_or(1920 * 1080, |(w, h)| u64::from(w) * u64::from(h));
    let by_memory = SEEK_RUN_MEMORY / (pixels * DECODER_BYTES_PER_PIXEL).max(1);
    timestamps
        .div_ceil(workers.max(1))
        .min(MAX_SEEKS_PER_RUN)
        .min(by_memory as usize)
        .max(1)
}

/// The frames of one batch of seeks, with their timestamps. A seek past the
/// end yields nothing, and then the batch cannot tell which frame is whose:
/// its seeks are run again one by one.
fn seek_batch(req: &ExtractRequest, timestamps: &[f64]) -> Result<Vec<(f64, Image)>, MediaError> {
    let mut images = Vec::with_capacity(timestamps.len());
    pump::run(req, &args::seek_batch(req, timestamps), &mut |image| {
        images.push(image);
        Ok(())
    })?;
    if images.len() == timestamps.len() {
        return Ok(timestamps.iter().copied().zip(images).collect());
    }
    if timestamps.len() == 1 {
        tracing::debug!(timestamp = timestamps[0], "seek produced no frame; skipped");
        return Ok(Vec::new());
    }
    let mut frames = Vec::new();
    for t in timestamps {
        frames.extend(seek_batch(req, std::slice::from_ref(t))?);
    }
    Ok(frames)
}

/// Runs the seeks in batches on as many cores as the job's share allows and
/// emits the frames in time order. A worker beyond the share (other jobs
/// started meanwhile) stops after its batch: it gives its core back.
pub(super) fn seek_each(
    req: &ExtractRequest,
    emit: &mut dyn FnMut(f64, Image) -> Result<(), MediaError>,
) -> Result<(), MediaError> {
    let workers = req.cores.share();
    let size = seeks_per_run(req.plan.timestamps.len(), workers, req.picture);
    let batches: Vec<&[f64]> = req.plan.timestamps.chunks(size).collect();
    let workers = workers.min(batches.len());
    // stops the other workers' runs when one fails or the job is cancelled
    let stop = CancelFlag::new();
    let inner = ExtractRequest {
        cancel: &stop,
        ..*req
    };
    let next = AtomicUsize::new(0);
    type Done = (usize, Result<Vec<(f64, Image)>, MediaError>);
    let (tx, rx) = sync_channel::<Done>(workers);
    std::thread::scope(|scope| {
        for worker in 0..workers {
            let (tx, inner, next, batches) = (tx.clone(), &inner, &next, &batches);
            scope.spawn(move || {
                while !inner.cancel.is_cancelled() && (worker == 0 || worker < inner.cores.share())
                {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(batch) = batches.get(i) else { break };
                    let result = seek_batch(inner, batch);
                    let failed = result.is_err();
                    if tx.send((i, result)).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // however this side leaves (a panicking sink too), the workers' runs
        // stop and their sends fail, so the scope's join does not wait on them
        let rx = rx;
        let _stop = StopOnDrop(&stop);
        let mut outcome = Ok(());
        let fail = |outcome: &mut Result<(), MediaError>, e: MediaError| {
            stop.cancel();
            if outcome.is_ok() {
                *outcome = Err(e);
            }
        };
        let mut waiting: BTreeMap<usize, Vec<(f64, Image)>> = BTreeMap::new();
        let mut emitted = 0;
        loop {
            if req.cancel.is_cancelled() {
                fail(&mut outcome, MediaError::Cancelled);
            }
            match rx.recv_timeout(POLL) {
                Ok((i, Ok(frames))) => {
                    waiting.insert(i, frames);
                    while let Some(frames) = waiting.remove(&emitted) {
                        emitted += 1;
                        for (t, data) in frames {
                            if outcome.is_err() {
                                break;
                            }
                            if let Err(e) = emit(t, data) {
                                fail(&mut outcome, e);
                            } else if req.cancel.is_cancelled() {
                                fail(&mut outcome, MediaError::Cancelled);
                            }
                        }
                    }
                }
                Ok((_, Err(e))) => fail(&mut outcome, e),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return outcome,
            }
        }
    })
}

/// Cancels its flag when dropped.
struct StopOnDrop<'a>(&'a CancelFlag);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeks_are_batched_by_cores_and_memory() {
        type Picture = Option<(u32, u32)>;
        // (timestamps, workers, picture, seeks per run)
        let cases: &[(usize, usize, Picture, usize)] = &[
            (30, 2, Some((640, 360)), MAX_SEEKS_PER_RUN),
            (6, 2, Some((640, 360)), 3),
            (1, 4, None, 1),
            // 1080p decoders are big: fewer at once
            (30, 2, Some((1920, 1080)), 5),
            (30, 2, None, 5),
            // 8K: one at a time, never none
            (30, 2, Some((7680, 4320)), 1),
            (3, 0, Some((320, 240)), 3),
        ];
        for &(n, workers, picture, expected) in cases {
            assert_eq!(
                seeks_per_run(n, workers, picture),
                expected,
                "{n} {workers} {picture:?}"
            );
        }
    }
}
