//! The index of a finished video's frames, stored beside its zip: where
//! each frame's bytes lie in the zip (entries are stored, so a frame is one
//! byte range), its timestamp and size, and where its thumbnail lies in the
//! thumbnails object. Records have a fixed size, so a page of frames is one
//! byte range of the index: paging through 10 000 frames reads no more
//! than the page.
//!
//! Layout (little-endian): a [`HEADER_LEN`]-byte header (`MAGIC`, the
//! record count as u32, the image format as u8, three zero bytes), then one
//! [`RECORD_LEN`]-byte record per frame in time order.

pub mod legacy;

use std::ops::Range;

use super::plan::ImageFormat;

const MAGIC: &[u8; 8] = b"VPFRIDX1";
pub const HEADER_LEN: u64 = 16;
pub const RECORD_LEN: u64 = 40;

/// One frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameRecord {
    /// The frame's bytes in the zip.
    pub data_offset: u64,
    pub data_len: u32,
    /// The frame's picture size.
    pub width: u16,
    pub height: u16,
    /// Seconds from the start of the video.
    pub t: f64,
    /// The thumbnail's bytes in the thumbnails object (length 0: none).
    pub thumb_offset: u64,
    pub thumb_len: u32,
    pub thumb_width: u16,
    pub thumb_height: u16,
}

impl FrameRecord {
    pub fn data(&self) -> Range<u64> {
        self.data_offset..self.data_offset + u64::from(self.data_len)
    }

    /// The thumbnail's range, if the frame has one.
    pub fn thumbnail(&self) -> Option<Range<u64>> {
        (self.thumb_len > 0)
            .then(|| self.thumb_offset..self.thumb_offset + u64::from(self.thumb_len))
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.data_offset.to_le_bytes());
        out.extend_from_slice(&self.data_len.to_le_bytes());
        out.extend_from_slice(&self.width.to_le_bytes());
        out.extend_from_slice(&self.height.to_le_bytes());
        out.extend_from_slice(&self.t.to_le_bytes());
        out.extend_from_slice(&self.thumb_offset.to_le_bytes());
        out.extend_from_slice(&self.thumb_len.to_le_bytes());
        out.extend_from_slice(&self.thumb_width.to_le_bytes());
        out.extend_from_slice(&self.thumb_height.to_le_bytes());
    }

    fn read(b: &[u8]) -> Self {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let u16_at = |i: usize| u16::from_le_bytes(b[i..i + 2].try_into().unwrap());
        FrameRecord {
            data_offset: u64_at(0),
            data_len: u32_at(8),
            width: u16_at(12),
            height: u16_at(14),
            t: f64::from_bits(u64_at(16)),
            thumb_offset: u64_at(24),
            thumb_len: u32_at(32),
            thumb_width: u16_at(36),
            thumb_height: u16_at(38),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IndexError {
    #[error("not a frame index")]
    NotAnIndex,
    #[error("the frame index is cut short")]
    Truncated,
}

/// The whole index of `records`.
pub fn encode(format: ImageFormat, records: &[FrameRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN as usize + records.len() * RECORD_LEN as usize);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    out.push(match format {
        ImageFormat::Jpg => 0,
        ImageFormat::Png => 1,
    });
    out.extend_from_slice(&[0; 3]);
    for r in records {
        r.write(&mut out);
    }
    out
}

/// The header's record count and format.
pub fn decode_header(b: &[u8]) -> Result<(u32, ImageFormat), IndexError> {
    if b.len() < HEADER_LEN as usize {
        return Err(IndexError::Truncated);
    }
    if &b[..8] != MAGIC {
        return Err(IndexError::NotAnIndex);
    }
    let count = u32::from_le_bytes(b[8..12].try_into().unwrap());
    let format = match b[12] {
        0 => ImageFormat::Jpg,
        1 => ImageFormat::Png,
        _ => return Err(IndexError::NotAnIndex),
    };
    Ok((count, format))
}

/// Where records `first..first + n` lie in the index.
pub fn records_range(first: u32, n: u32) -> Range<u64> {
    let start = HEADER_LEN + u64::from(first) * RECORD_LEN;
    start..start + u64::from(n) * RECORD_LEN
}

/// Records read from a range of whole records.
pub fn decode_records(b: &[u8]) -> Result<Vec<FrameRecord>, IndexError> {
    if !(b.len() as u64).is_multiple_of(RECORD_LEN) {
        return Err(IndexError::Truncated);
    }
    Ok(b.chunks_exact(RECORD_LEN as usize)
        .map(FrameRecord::read)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u32) -> FrameRecord {
        FrameRecord {
            data_offset: 5_000_000_000 + u64::from(i) * 1000,
            data_len: 900 + i,
            width: 1920,
            height: 1080,
            t: f64::from(i) * 0.04,
            thumb_offset: u64::from(i) * 4000,
            thumb_len: if i == 2 { 0 } else { 3000 + i },
            thumb_width: 320,
            thumb_height: 180,
        }
    }

    #[test]
    fn an_index_round_trips_and_a_page_is_one_range() {
        let records: Vec<_> = (0..5).map(record).collect();
        let bytes = encode(ImageFormat::Png, &records);
        assert_eq!(bytes.len() as u64, HEADER_LEN + 5 * RECORD_LEN);
        assert_eq!(decode_header(&bytes).unwrap(), (5, ImageFormat::Png));
        let page = records_range(1, 3);
        let got = decode_records(&bytes[page.start as usize..page.end as usize]).unwrap();
        assert_eq!(got, records[1..4]);
        assert_eq!(got[0].data(), 5_000_001_000..5_000_001_901);
        assert_eq!(got[1].thumbnail(), None, "no thumbnail");
        assert_eq!(got[2].thumbnail(), Some(12_000..15_003));
        assert_eq!(decode_records(&bytes[16..]).unwrap(), records);
    }

    #[test]
    fn damaged_indexes_are_refused() {
        let bytes = encode(ImageFormat::Jpg, &[record(0)]);
        assert_eq!(decode_header(&bytes[..10]), Err(IndexError::Truncated));
        let mut other = bytes.clone();
        other[0] = b'X';
        assert_eq!(decode_header(&other), Err(IndexError::NotAnIndex));
        other = bytes.clone();
        other[12] = 9;
        assert_eq!(decode_header(&other), Err(IndexError::NotAnIndex));
        assert_eq!(decode_records(&bytes[16..50]), Err(IndexError::Truncated));
        assert_eq!(decode_records(&[]), Ok(vec![]));
    }
}
