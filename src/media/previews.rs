//! Thumbnails and the contact sheet, made beside the frame path: the frames
//! go to a thread of their own through a queue, so ffmpeg's output is never
//! held up by image work (it waits only if the thread falls a whole queue
//! behind). Most frames come with the thumbnail ffmpeg made of them; a
//! frame without one has it made here. The thumbnails are written one
//! after another to a `Write` (the thumbnails object); the sheet's cells
//! are kept as they pass and decoded at the end.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::extract::Frame;
use super::plan::ImageFormat;
use super::sheet::{self, EvenSample};
use super::thumbnail::{self, Thumbnail};

/// Frames that may wait for the thread: enough to ride out a burst of a
/// seek batch, few enough to bound memory (a 1080p JPEG is ~0.3 MB).
const QUEUE: usize = 64;

/// Where one frame's thumbnail went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ThumbEntry {
    /// In the thumbnails object; length 0 when the frame could not be read.
    pub offset: u64,
    pub len: u32,
    pub width: u16,
    pub height: u16,
    /// The frame's own size (0 when it could not be read).
    pub frame_width: u16,
    pub frame_height: u16,
}

/// What the thread made.
pub struct Made<W> {
    /// One entry per frame, in the order sent.
    pub thumbs: Vec<ThumbEntry>,
    /// The contact sheet (JPEG); `None` if no frame could be read.
    pub sheet: Option<Vec<u8>>,
    /// The thumbnails' writer, flushed.
    pub writer: W,
}

/// The thread making a job's previews.
pub struct Previews<W> {
    tx: SyncSender<Frame>,
    thread: JoinHandle<io::Result<Made<W>>>,
}

impl<W: Write + Send + 'static> Previews<W> {
    /// Starts the thread; thumbnails of frames in `format` go to `thumbs`.
    pub fn start(thumbs: W, format: ImageFormat) -> io::Result<Self> {
        let (tx, rx) = sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("previews".into())
            .spawn(move || make(rx, thumbs, format))?;
        Ok(Self { tx, thread })
    }

    /// Hands a frame over (in time order). An error means the thread
    /// stopped: its cause comes from [`Self::finish`].
    pub fn send(&self, frame: Frame) -> io::Result<()> {
        self.tx
            .send(frame)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the previews thread stopped"))
    }

    /// Waits for the thread to finish what it was sent.
    pub fn finish(self) -> io::Result<Made<W>> {
        drop(self.tx);
        self.thread
            .join()
            .map_err(|_| io::Error::other("the previews thread panicked"))?
    }
}

fn make<W: Write>(rx: Receiver<Frame>, mut out: W, format: ImageFormat) -> io::Result<Made<W>> {
    let mut thumbs = Vec::new();
    let mut cells: EvenSample<(f64, Vec<u8>)> = EvenSample::new(sheet::MAX_CELLS);
    let mut offset = 0u64;
    for mut frame in rx {
        let entry = match of_frame(&mut frame, format) {
            Ok(t) => {
                out.write_all(&t.jpeg)?;
                let entry = ThumbEntry {
                    offset,
                    len: t.jpeg.len() as u32,
                    width: t.width as u16,
                    height: t.height as u16,
                    frame_width: t.frame_width as u16,
                    frame_height: t.frame_height as u16,
                };
                offset += t.jpeg.len() as u64;
                cells.offer((frame.timestamp, t.jpeg));
                entry
            }
            // a frame ffmpeg made that we cannot read: it keeps its place
            // in the zip, without a thumbnail
            Err(e) => {
                tracing::warn!(index = frame.index, error = %e, "no thumbnail for a frame");
                ThumbEntry::default()
            }
        };
        thumbs.push(entry);
    }
    out.flush()?;
    let cells = cells
        .finish()
        .into_iter()
        .map(|(t, jpeg)| thumbnail::decode(&jpeg, sheet::CELL_WIDTH).map(|picture| (t, picture)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io::Error::other)?;
    let sheet = sheet::contact_sheet(&cells).map_err(io::Error::other)?;
    Ok(Made {
        thumbs,
        sheet,
        writer: out,
    })
}

/// A frame's thumbnail: ffmpeg's, or else made from the frame.
fn of_frame(
    frame: &mut Frame,
    format: ImageFormat,
) -> Result<Thumbnail, thumbnail::ThumbnailError> {
    if let Some(jpeg) = frame.thumbnail.take() {
        match thumbnail::made_by_ffmpeg(jpeg, &frame.data, format) {
            Ok(t) => return Ok(t),
            Err(e) => {
                tracing::warn!(index = frame.index, error = %e, "ffmpeg's thumbnail unusable")
            }
        }
    }
    thumbnail::thumbnail(&frame.data, format)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::thumbnail::Picture;

    #[test]
    fn thumbnails_follow_each_other_in_the_object_and_a_bad_frame_has_none() {
        let good = Picture::filled(640, 360, [10, 200, 10])
            .to_jpeg(90)
            .unwrap();
        let small = Picture::filled(320, 180, [200, 10, 10])
            .to_jpeg(70)
            .unwrap();
        let previews = Previews::start(Vec::new(), ImageFormat::Jpg).unwrap();
        for i in 0..5u32 {
            let data = if i == 3 {
                b"junk".to_vec()
            } else {
                good.clone()
            };
            previews
                .send(Frame {
                    index: i,
                    timestamp: f64::from(i),
                    data,
                    // the second comes with ffmpeg's thumbnail, the rest without
                    thumbnail: (i == 1).then(|| small.clone()),
                })
                .unwrap();
        }
        let made = previews.finish().unwrap();
        assert_eq!(made.thumbs.len(), 5);
        assert_eq!(made.thumbs[3], ThumbEntry::default());
        let mut at = 0;
        for (i, t) in made.thumbs.iter().enumerate().filter(|(i, _)| *i != 3) {
            assert_eq!(t.offset, at, "{i}");
            assert_eq!((t.width, t.height), (320, 180));
            assert_eq!((t.frame_width, t.frame_height), (640, 360));
            let bytes = &made.writer[t.offset as usize..(t.offset + u64::from(t.len)) as usize];
            let back = image::load_from_memory(bytes).unwrap();
            assert_eq!(back.width(), 320);
            at += u64::from(t.len);
        }
        assert_eq!(made.writer.len() as u64, at);
        let t = made.thumbs[1];
        assert_eq!(
            &made.writer[t.offset as usize..(t.offset + u64::from(t.len)) as usize],
            &small[..],
            "ffmpeg's thumbnail is stored as it came"
        );
        let sheet = image::load_from_memory(&made.sheet.unwrap()).unwrap();
        assert_eq!(sheet.width(), sheet::Layout::new(4, 320, 180).width);
    }
}
