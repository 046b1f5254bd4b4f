//! The contact sheet: one JPEG grid of thumbnails chosen evenly across the
//! video, each labelled with its timestamp in a built-in bitmap font (no
//! font files: digits, `:` and `.` are all a timestamp needs).
//!
//! * [`EvenSample`] keeps an evenly spread handful of a stream of unknown
//!   length;
//! * [`Layout`] places the cells;
//! * [`label`] and [`glyph`] write the timestamps.

use super::thumbnail::{Picture, ThumbnailError};

/// The most thumbnails a sheet shows.
pub const MAX_CELLS: usize = 24;
/// Columns of a full sheet.
const COLUMNS: usize = 6;
/// A cell's picture width.
pub const CELL_WIDTH: u32 = 160;
const GAP: u32 = 4;
/// Pixels per font dot.
const DOT: u32 = 2;
/// The band under each picture that holds its label.
const LABEL_HEIGHT: u32 = GLYPH_HEIGHT * DOT + 2 * GAP;
const BACKGROUND: [u8; 3] = [24, 24, 24];
const INK: [u8; 3] = [235, 235, 235];
const QUALITY: u8 = 80;

const GLYPH_WIDTH: u32 = 3;
const GLYPH_HEIGHT: u32 = 5;

/// The 3×5 glyph of `c`, one row per byte, the top row first, bit 2 the
/// leftmost dot; `None` for a character the font lacks.
pub fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b010, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        ':' => [0b000, 0b010, 0b000, 0b010, 0b000],
        '.' => [0b000, 0b000, 0b000, 0b000, 0b010],
        _ => return None,
    })
}

/// A timestamp as the sheet writes it: `m:ss`, `h:mm:ss` from an hour on,
/// with tenths when the time has them (`1:02.5`).
pub fn label(t: f64) -> String {
    let tenths = (t.max(0.0) * 10.0).round() as u64;
    let (secs, tenth) = (tenths / 10, tenths % 10);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut text = if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    };
    if tenth > 0 {
        text.push_str(&format!(".{tenth}"));
    }
    text
}

/// Writes `text` with its top-left corner at (`x`, `y`); characters the
/// font lacks are skipped.
fn write_text(picture: &mut Picture, text: &str, x: u32, y: u32) {
    let advance = (GLYPH_WIDTH + 1) * DOT;
    for (i, rows) in text.chars().filter_map(glyph).enumerate() {
        let left = x + i as u32 * advance;
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..GLYPH_WIDTH {
                if bits & (0b100 >> col) != 0 {
                    for dy in 0..DOT {
                        for dx in 0..DOT {
                            picture.set(left + col * DOT + dx, y + row as u32 * DOT + dy, INK);
                        }
                    }
                }
            }
        }
    }
}

/// The width `text` takes.
fn text_width(text: &str) -> u32 {
    let n = text.chars().filter(|c| glyph(*c).is_some()).count() as u32;
    (n * (GLYPH_WIDTH + 1)).saturating_sub(1) * DOT
}

/// Where a sheet's cells go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub columns: u32,
    pub rows: u32,
    /// A cell's picture (all thumbnails of a video have one size).
    pub picture_width: u32,
    pub picture_height: u32,
    pub width: u32,
    pub height: u32,
}

impl Layout {
    /// The layout of `cells` thumbnails of `thumb_width`×`thumb_height`.
    pub fn new(cells: usize, thumb_width: u32, thumb_height: u32) -> Layout {
        let cells = cells.clamp(1, MAX_CELLS) as u32;
        let columns = cells.min(COLUMNS as u32);
        let rows = cells.div_ceil(columns);
        let (picture_width, picture_height) =
            super::thumbnail::fit(thumb_width, thumb_height, CELL_WIDTH);
        Layout {
            columns,
            rows,
            picture_width,
            picture_height,
            width: GAP + columns * (picture_width + GAP),
            height: GAP + rows * (picture_height + LABEL_HEIGHT),
        }
    }

    /// The top-left corner of cell `i`'s picture (cells fill rows left to right).
    pub fn origin(&self, i: usize) -> (u32, u32) {
        let (col, row) = (i as u32 % self.columns, i as u32 / self.columns);
        (
            GAP + col * (self.picture_width + GAP),
            GAP + row * (self.picture_height + LABEL_HEIGHT),
        )
    }
}

/// The sheet of `cells` (timestamp and thumbnail, in time order) as a JPEG;
/// `None` without cells.
pub fn contact_sheet(cells: &[(f64, Picture)]) -> Result<Option<Vec<u8>>, ThumbnailError> {
    let Some((_, first)) = cells.first() else {
        return Ok(None);
    };
    let cells = &cells[..cells.len().min(MAX_CELLS)];
    let layout = Layout::new(cells.len(), first.width, first.height);
    let mut sheet = Picture::filled(layout.width, layout.height, BACKGROUND);
    for (i, (t, thumb)) in cells.iter().enumerate() {
        let (x, y) = layout.origin(i);
        sheet.paste(&thumb.shrink_to(layout.picture_width), x, y);
        let text = label(*t);
        let centred = x + layout.picture_width.saturating_sub(text_width(&text)) / 2;
        write_text(&mut sheet, &text, centred, y + layout.picture_height + GAP);
    }
    sheet.to_jpeg(QUALITY).map(Some)
}

/// An evenly spread sample of a stream of unknown length: it keeps the
/// items whose position is a multiple of a stride, and doubles the stride
/// (dropping every other item kept) whenever it holds more than twice
/// `want`. [`Self::finish`] then picks `want` evenly from what it kept.
#[derive(Debug)]
pub struct EvenSample<T> {
    want: usize,
    stride: usize,
    seen: usize,
    kept: Vec<T>,
}

impl<T> EvenSample<T> {
    pub fn new(want: usize) -> Self {
        Self {
            want: want.max(1),
            stride: 1,
            seen: 0,
            kept: Vec::new(),
        }
    }

    /// Whether the next item offered will be kept: a caller can skip
    /// preparing one that will not.
    pub fn wants_next(&self) -> bool {
        self.seen.is_multiple_of(self.stride)
    }

    /// Offers the next item of the stream.
    pub fn offer(&mut self, item: T) {
        if self.wants_next() {
            self.kept.push(item);
        }
        self.seen += 1;
        if self.kept.len() > 2 * self.want {
            let mut i = 0;
            self.kept.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride *= 2;
        }
    }

    /// At most `want` of the items kept, spread evenly, the first always among them.
    pub fn finish(self) -> Vec<T> {
        let n = self.kept.len();
        if n <= self.want {
            return self.kept;
        }
        let picks: Vec<usize> = (0..self.want).map(|k| k * n / self.want).collect();
        self.kept
            .into_iter()
            .enumerate()
            .filter(|(i, _)| picks.contains(i))
            .map(|(_, item)| item)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_character_of_a_timestamp_has_a_glyph_of_three_dots_wide() {
        for c in "0123456789:.".chars() {
            let rows = glyph(c).unwrap();
            assert!(rows.iter().all(|r| *r < 8), "{c}");
            assert!(rows.iter().any(|r| *r != 0), "{c} is blank");
        }
        // the digits are told apart
        let digits: Vec<_> = ('0'..='9').map(|c| glyph(c).unwrap()).collect();
        for (i, a) in digits.iter().enumerate() {
            assert!(!digits[i + 1..].contains(a), "{i}");
        }
        assert_eq!(glyph('x'), None);
        assert_eq!(glyph('8').unwrap(), [7, 5, 7, 5, 7]);
    }

    #[test]
    fn labels() {
        let table = [
            (0.0, "0:00"),
            (5.0, "0:05"),
            (62.5, "1:02.5"),
            (599.96, "10:00"),
            (3600.0, "1:00:00"),
            (3723.4, "1:02:03.4"),
            (-1.0, "0:00"),
        ];
        for (t, text) in table {
            assert_eq!(label(t), text, "{t}");
        }
        assert_eq!(text_width("0:00"), (4 * 4 - 1) * DOT);
    }

    #[test]
    fn text_is_drawn_where_the_glyphs_have_dots() {
        let mut p = Picture::filled(20, 12, BACKGROUND);
        write_text(&mut p, "1", 0, 0);
        let ink = |x, y| p.rgb[((y * 20 + x) * 3) as usize] == INK[0];
        // "1": the top row is the middle dot only
        assert!(!ink(0, 0) && ink(2, 0) && ink(3, 1) && !ink(4, 0));
        // the bottom row is full
        assert!(ink(0, 8) && ink(5, 9));
    }

    #[test]
    fn layouts() {
        let full = Layout::new(24, 320, 180);
        assert_eq!((full.columns, full.rows), (6, 4));
        assert_eq!((full.picture_width, full.picture_height), (160, 90));
        assert_eq!(full.width, 4 + 6 * 164);
        assert_eq!(full.height, 4 + 4 * (90 + LABEL_HEIGHT));
        assert_eq!(full.origin(0), (4, 4));
        assert_eq!(full.origin(7), (4 + 164, 4 + 90 + LABEL_HEIGHT));
        let few = Layout::new(3, 320, 180);
        assert_eq!((few.columns, few.rows), (3, 1));
        let some = Layout::new(7, 180, 320);
        assert_eq!((some.columns, some.rows), (6, 2));
        assert_eq!((some.picture_width, some.picture_height), (90, 160));
        assert_eq!(Layout::new(500, 320, 180), full, "capped");
        // every cell lies inside the sheet
        for i in 0..24 {
            let (x, y) = full.origin(i);
            assert!(x + full.picture_width <= full.width);
            assert!(y + full.picture_height + LABEL_HEIGHT <= full.height);
        }
    }

    #[test]
    fn an_even_sample_spreads_over_the_whole_stream() {
        for (len, want) in [
            (0, 24),
            (5, 24),
            (24, 24),
            (25, 24),
            (1000, 24),
            (10_000, 24),
            (7, 1),
        ] {
            let mut s = EvenSample::new(want);
            for i in 0..len {
                s.offer(i);
            }
            let got = s.finish();
            assert_eq!(got.len(), len.min(want), "{len}");
            if len == 0 {
                continue;
            }
            assert_eq!(got[0], 0);
            assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
            // spread: the last pick is in the last part of the stream, and
            // no gap is far over the even gap
            let even = len as f64 / got.len() as f64;
            let last = *got.last().unwrap() as f64;
            assert!(last >= len as f64 - 2.5 * even, "{len}: {got:?}");
            assert!(
                got.windows(2).all(|w| (w[1] - w[0]) as f64 <= 2.5 * even),
                "{len}: {got:?}"
            );
        }
    }

    #[test]
    fn a_sheet_is_a_jpeg_of_its_layout() {
        let thumb = Picture::filled(320, 180, [200, 30, 30]);
        let cells: Vec<_> = (0..30).map(|i| (i as f64 * 2.0, thumb.clone())).collect();
        let jpeg = contact_sheet(&cells).unwrap().unwrap();
        let back = image::load_from_memory(&jpeg).unwrap();
        let layout = Layout::new(24, 320, 180);
        assert_eq!((back.width(), back.height()), (layout.width, layout.height));
        assert!(contact_sheet(&[]).unwrap().is_none());
    }
}
