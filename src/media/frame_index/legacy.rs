//! The frame index of a zip written before indexes were: read from the
//! zip's own end (its central directory) and its `manifest.json`, with no
//! thumbnails. Pure: the caller reads the byte ranges asked for.
//!
//! 1. [`directory_range`] finds the central directory in the zip's tail;
//! 2. [`entries`] lists its entries;
//! 3. [`records`] joins the frames with the manifest's timestamps.

use std::ops::Range;

use serde::Deserialize;

use super::FrameRecord;

/// How much of a zip's end holds its end records (the end record, its
/// comment of at most 64 KiB, the zip64 locator and record).
pub const TAIL: u64 = 22 + 65_535 + 20 + 56;
/// The largest central directory read: 10 000 frames take about 0.6 MB.
pub const MAX_DIRECTORY: u64 = 32 << 20;
/// The largest manifest read.
pub const MAX_MANIFEST: u64 = 64 << 20;

const END: u32 = 0x0605_4b50;
const END64_LOCATOR: u32 = 0x0706_4b50;
const END64: u32 = 0x0606_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const LOCAL: u32 = 0x0403_4b50;

#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq)]
#[error("the zip's directory cannot be read: {0}")]
pub struct LegacyError(&'static str);

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?))
}

/// Where the central directory lies, from `tail`, the last bytes of a zip
/// of `size` bytes.
pub fn directory_range(tail: &[u8], size: u64) -> Result<Range<u64>, LegacyError> {
    let bad = LegacyError("no end record");
    let end = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(tail, i) == Some(END))
        .ok_or(bad)?;
    let tail_start = size - tail.len() as u64;
    let (mut len, mut offset) = (
        u64::from(u32_at(tail, end + 12).ok_or(bad)?),
        u64::from(u32_at(tail, end + 16).ok_or(bad)?),
    );
    if (len == 0xFFFF_FFFF || offset == 0xFFFF_FFFF) && end >= 20 {
        let locator = end - 20;
        if u32_at(tail, locator) != Some(END64_LOCATOR) {
            return Err(LegacyError("no zip64 locator"));
        }
        let record = u64_at(tail, locator + 8).ok_or(bad)?;
        let at = record
            .checked_sub(tail_start)
            .ok_or(LegacyError("zip64 end record outside the tail"))? as usize;
        if u32_at(tail, at) != Some(END64) {
            return Err(LegacyError("no zip64 end record"));
        }
        len = u64_at(tail, at + 40).ok_or(bad)?;
        offset = u64_at(tail, at + 48).ok_or(bad)?;
    }
    if len > MAX_DIRECTORY || offset.saturating_add(len) > size {
        return Err(LegacyError("directory out of bounds"));
    }
    Ok(offset..offset + len)
}

/// One entry of the central directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    /// Its local header.
    pub header: u64,
    /// The length of its extra field in the directory (the local header's
    /// is the same for entries written alike: see [`local_extra_delta`]).
    pub extra_len: u16,
}

/// The entries of a central directory.
pub fn entries(directory: &[u8]) -> Result<Vec<Entry>, LegacyError> {
    let bad = LegacyError("damaged directory");
    let mut out = Vec::new();
    let mut i = 0;
    while i < directory.len() {
        if u32_at(directory, i) != Some(CENTRAL) {
            return Err(bad);
        }
        let mut size = u64::from(u32_at(directory, i + 24).ok_or(bad)?);
        let name_len = usize::from(u16_at(directory, i + 28).ok_or(bad)?);
        let extra_len = u16_at(directory, i + 30).ok_or(bad)?;
        let comment_len = usize::from(u16_at(directory, i + 32).ok_or(bad)?);
        let mut header = u64::from(u32_at(directory, i + 42).ok_or(bad)?);
        let name = directory.get(i + 46..i + 46 + name_len).ok_or(bad)?;
        let extra_at = i + 46 + name_len;
        let extra = directory
            .get(extra_at..extra_at + usize::from(extra_len))
            .ok_or(bad)?;
        // zip64: the values too big for 32 bits, in order, in extra field 1
        let mut j = 0;
        while j + 4 <= extra.len() {
            let (id, len) = (
                u16_at(extra, j).ok_or(bad)?,
                usize::from(u16_at(extra, j + 2).ok_or(bad)?),
            );
            if id == 1 {
                let mut k = j + 4;
                if size == 0xFFFF_FFFF {
                    size = u64_at(extra, k).ok_or(bad)?;
                    k += 8;
                }
                // the compressed size comes next: stored, it is the same
                if u32_at(directory, i + 20) == Some(0xFFFF_FFFF) {
                    k += 8;
                }
                if header == 0xFFFF_FFFF {
                    header = u64_at(extra, k).ok_or(bad)?;
                }
            }
            j += 4 + len;
        }
        out.push(Entry {
            name: String::from_utf8_lossy(name).into_owned(),
            size,
            header,
            extra_len,
        });
        i = extra_at + usize::from(extra_len) + comment_len;
    }
    Ok(out)
}

/// The local header of an entry, as far as its fixed part goes.
pub const LOCAL_HEADER: u64 = 30;

/// How much longer the local extra field is than the directory's, from the
/// fixed part of `entry`'s local header: every frame of a zip is written
/// alike, so one header tells for all.
pub fn local_extra_delta(entry: &Entry, local: &[u8]) -> Result<i64, LegacyError> {
    if u32_at(local, 0) != Some(LOCAL) {
        return Err(LegacyError("no local header"));
    }
    let name_len = u16_at(local, 26).ok_or(LegacyError("short local header"))?;
    let extra_len = u16_at(local, 28).ok_or(LegacyError("short local header"))?;
    if usize::from(name_len) != entry.name.len() {
        return Err(LegacyError("the local name differs"));
    }
    Ok(i64::from(extra_len) - i64::from(entry.extra_len))
}

#[derive(Deserialize)]
struct Manifest {
    frames: Vec<ManifestFrame>,
}

#[derive(Deserialize)]
struct ManifestFrame {
    file: String,
    timestamp: f64,
}

/// The frame records of a zip's `entries`: its frames in the manifest's
/// order with their timestamps, each `(width, height)`, no thumbnails.
pub fn records(
    entries: &[Entry],
    manifest: &[u8],
    delta: i64,
    size: (u16, u16),
) -> Result<Vec<FrameRecord>, LegacyError> {
    let manifest: Manifest =
        serde_json::from_slice(manifest).map_err(|_| LegacyError("unreadable manifest"))?;
    manifest
        .frames
        .iter()
        .map(|frame| {
            let entry = entries
                .iter()
                .find(|e| e.name == frame.file)
                .ok_or(LegacyError("a frame of the manifest is not in the zip"))?;
            let data = entry.header as i64
                + LOCAL_HEADER as i64
                + entry.name.len() as i64
                + i64::from(entry.extra_len)
                + delta;
            Ok(FrameRecord {
                data_offset: data.max(0) as u64,
                data_len: entry.size as u32,
                width: size.0,
                height: size.1,
                t: frame.timestamp,
                thumb_offset: 0,
                thumb_len: 0,
                thumb_width: 0,
                thumb_height: 0,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::super::FrameZip;
    use super::super::super::extract::Frame;
    use super::super::super::plan::{ImageFormat, Strategy};
    use super::super::super::probe::{MediaInfo, VideoStream};
    use super::*;

    fn zip_of(n: u32) -> (Vec<u8>, Vec<Range<u64>>) {
        let mut z = FrameZip::new(Vec::new(), ImageFormat::Jpg, n as usize);
        for i in 0..n {
            z.add(&Frame {
                index: i,
                timestamp: f64::from(i) * 0.5,
                data: vec![i as u8; 300 + i as usize],
                thumbnail: None,
            })
            .unwrap();
        }
        let ranges = z.ranges().to_vec();
        let info = MediaInfo {
            duration_secs: 10.0,
            format_name: "mp4".into(),
            size_bytes: None,
            bit_rate: None,
            video: VideoStream {
                codec: "h264".into(),
                width: 320,
                height: 240,
                frame_rate: None,
                frames: None,
                duration_secs: None,
            },
            has_audio: false,
        };
        let bytes = z
            .finish(&info, &serde_json::json!({}), Strategy::SinglePass)
            .unwrap();
        (bytes, ranges)
    }

    #[test]
    fn a_zip_without_an_index_gives_the_same_ranges_from_its_directory() {
        let (zip, ranges) = zip_of(12);
        let size = zip.len() as u64;
        let tail_start = size.saturating_sub(TAIL) as usize;
        let dir = directory_range(&zip[tail_start..], size).unwrap();
        let all = entries(&zip[dir.start as usize..dir.end as usize]).unwrap();
        assert_eq!(all.len(), 13);
        assert_eq!(all[12].name, "manifest.json");
        let first = &all[0];
        let local = &zip[first.header as usize..(first.header + LOCAL_HEADER) as usize];
        let delta = local_extra_delta(first, local).unwrap();
        let manifest = &all[12];
        let manifest_at =
            (manifest.header as i64 + 30 + 13 + i64::from(manifest.extra_len) + delta) as usize;
        let manifest_bytes = &zip[manifest_at..manifest_at + manifest.size as usize];
        let records = records(&all, manifest_bytes, delta, (320, 240)).unwrap();
        assert_eq!(records.len(), 12);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.data(), ranges[i], "{i}");
            assert_eq!(r.t, i as f64 * 0.5);
            assert_eq!(r.thumbnail(), None);
        }
    }

    #[test]
    fn damaged_zips_are_errors() {
        let (zip, _) = zip_of(2);
        let size = zip.len() as u64;
        assert!(directory_range(b"nothing here at all, not a zip", 30).is_err());
        let dir = directory_range(&zip, size).unwrap();
        let mut broken = zip[dir.start as usize..dir.end as usize].to_vec();
        broken[0] = 0;
        assert!(entries(&broken).is_err());
        assert!(entries(&zip[dir.start as usize..dir.end as usize - 5]).is_err());
        assert!(
            records(
                &[],
                b"{\"frames\":[{\"file\":\"x\",\"timestamp\":0}]}",
                0,
                (1, 1)
            )
            .is_err()
        );
    }
}
