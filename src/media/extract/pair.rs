//! Frames and their thumbnails come from one ffmpeg run on two pipes, each
//! in order but not in step: [`Pairs`] gives the n-th frame the n-th
//! thumbnail. The thumbnails are a convenience, never a reason to hold up
//! or fail the frames: a frame waits for its thumbnail only so long, and
//! once the thumbnails end (or break) the frames go on without them.

use std::collections::VecDeque;

/// A frame as ffmpeg wrote it, with the thumbnail ffmpeg made of it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Image {
    pub data: Vec<u8>,
    pub thumbnail: Option<Vec<u8>>,
}

/// Frames held for their thumbnails at most (ffmpeg writes a frame and its
/// thumbnail one after the other: more means the thumbnails fell behind).
const MAX_WAITING: usize = 16;

#[derive(Debug, Default)]
pub(super) struct Pairs {
    frames: VecDeque<Vec<u8>>,
    thumbnails: VecDeque<Vec<u8>>,
    /// Thumbnails yet to come of frames that went on without them.
    owed: usize,
    thumbnails_ended: bool,
}

impl Pairs {
    pub fn frame(&mut self, data: Vec<u8>) {
        self.frames.push_back(data);
    }

    pub fn thumbnail(&mut self, data: Vec<u8>) {
        if self.owed > 0 {
            self.owed -= 1;
        } else if !self.thumbnails_ended {
            self.thumbnails.push_back(data);
        }
    }

    /// No more thumbnails will come.
    pub fn thumbnails_ended(&mut self) {
        self.thumbnails_ended = true;
    }

    /// The next frame that need not wait any more.
    pub fn next_ready(&mut self) -> Option<Image> {
        if self.frames.is_empty() {
            return None;
        }
        let thumbnail = match self.thumbnails.pop_front() {
            Some(t) => Some(t),
            None if self.thumbnails_ended => None,
            None if self.frames.len() > MAX_WAITING => {
                self.owed += 1;
                None
            }
            None => return None,
        };
        let data = self.frames.pop_front()?;
        Some(Image { data, thumbnail })
    }

    /// The frames still waiting, at the end of the run: without thumbnails.
    pub fn rest(self) -> impl Iterator<Item = Image> {
        let mut thumbnails = self.thumbnails.into_iter();
        self.frames.into_iter().map(move |data| Image {
            data,
            thumbnail: thumbnails.next(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(pairs: &mut Pairs) -> Vec<(u8, Option<u8>)> {
        std::iter::from_fn(|| pairs.next_ready())
            .map(|i| (i.data[0], i.thumbnail.map(|t| t[0])))
            .collect()
    }

    #[test]
    fn the_nth_frame_gets_the_nth_thumbnail_whichever_comes_first() {
        let mut pairs = Pairs::default();
        pairs.frame(vec![1]);
        assert_eq!(ready(&mut pairs), []);
        pairs.thumbnail(vec![10]);
        pairs.thumbnail(vec![20]);
        assert_eq!(ready(&mut pairs), [(1, Some(10))]);
        pairs.frame(vec![2]);
        pairs.frame(vec![3]);
        assert_eq!(ready(&mut pairs), [(2, Some(20))]);
        pairs.thumbnails_ended();
        assert_eq!(ready(&mut pairs), [(3, None)]);
        pairs.thumbnail(vec![30]);
        pairs.frame(vec![4]);
        assert_eq!(ready(&mut pairs), [(4, None)], "nothing after the end");
    }

    #[test]
    fn frames_wait_only_so_long_and_late_thumbnails_stay_with_their_own_frames() {
        let mut pairs = Pairs::default();
        for i in 0..=MAX_WAITING as u8 {
            pairs.frame(vec![i]);
        }
        // one too many waits: the first goes on without its thumbnail
        assert_eq!(ready(&mut pairs), [(0, None)]);
        // its thumbnail comes late and is dropped; the second frame gets its own
        pairs.thumbnail(vec![100]);
        pairs.thumbnail(vec![101]);
        assert_eq!(ready(&mut pairs), [(1, Some(101))]);
        let rest: Vec<_> = pairs.rest().map(|i| (i.data[0], i.thumbnail)).collect();
        assert_eq!(rest.len(), MAX_WAITING - 1);
        assert!(rest.iter().all(|(_, t)| t.is_none()));
        assert_eq!(rest[0].0, 2);
    }
}
