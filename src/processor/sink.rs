//! The bridge from the blocking zip writer to the async media store: a
//! `Write` that hands 64 KiB batches to a bounded channel, so a slow store
//! slows ffmpeg down instead of filling memory.

use std::io::{self, Write};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc::Sender;

const BATCH: usize = 64 * 1024;

pub struct ChannelWriter {
    tx: Sender<Bytes>,
    buf: BytesMut,
}

impl ChannelWriter {
    pub fn new(tx: Sender<Bytes>) -> Self {
        Self {
            tx,
            buf: BytesMut::with_capacity(BATCH),
        }
    }

    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "media store writer stopped"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= BATCH {
            self.send_buffer()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_and_reports_a_closed_channel() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let mut w = ChannelWriter::new(tx);
        w.write_all(&[1u8; 100]).unwrap();
        assert!(rx.try_recv().is_err(), "small writes are batched");
        w.write_all(&vec![2u8; BATCH]).unwrap();
        w.flush().unwrap();
        let total: usize = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|b| b.len())
            .sum();
        assert_eq!(total, 100 + BATCH);
        drop(rx);
        w.write_all(&[3u8; 10]).unwrap();
        assert_eq!(w.flush().unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}
