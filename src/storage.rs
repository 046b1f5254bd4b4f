//! The media store: uploaded videos and finished zips, in a place every node
//! can read.
//! - `file:///path` (the default `file://./var/media` is relative to the
//!   working directory): a local or shared directory; writes go to a staging
//!   file that is renamed into place, so readers never see half an object;
//!   ffmpeg reads the files where they lie.
//! - `s3://bucket/prefix`: an S3 bucket (endpoint, region and credentials
//!   from the usual `AWS_*` variables: keys, a web identity, EKS Pod
//!   Identity); an object appears whole when its upload completes; ffmpeg
//!   reads a local copy, spooled in the temporary directory for the job's
//!   duration.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

use uuid::Uuid;

use crate::domain::JobId;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("unsupported media URL `{0}`: use file:///path or s3://bucket/prefix")]
    UnsupportedUrl(String),
    #[error("cannot prepare media directory {0}: {1}")]
    Directory(String, std::io::Error),
    #[error("object not found")]
    NotFound,
    #[error("media store: {0}")]
    Store(#[from] object_store::Error),
    #[error("media store I/O: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Clone)]
pub struct MediaStore {
    store: Arc<dyn ObjectStore>,
    place: Place,
}

/// Where the objects are, for what only a directory can do.
#[derive(Clone)]
enum Place {
    Directory {
        files: Arc<LocalFileSystem>,
        root: PathBuf,
    },
    /// A bucket; local copies for ffmpeg go to `spool`.
    Bucket { spool: PathBuf },
}

/// An object as a local file ffmpeg can read; a spooled copy is removed
/// when this is dropped.
pub struct LocalInput {
    path: PathBuf,
    spooled: bool,
}

impl LocalInput {
    pub fn path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}

impl Drop for LocalInput {
    fn drop(&mut self) {
        if self.spooled {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// An object being written; `finish` makes it visible, dropping it discards it.
pub type ObjectWriter = BufWriter;

impl MediaStore {
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
        if let Some(rest) = url.strip_prefix("s3://") {
            return Self::bucket(url, rest);
        }
        let path = url
            .strip_prefix("file://")
            .filter(|p| !p.is_empty())
            .ok_or_else(|| StorageError::UnsupportedUrl(url.to_owned()))?;
        let dir = PathBuf::from(path);
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::Directory(path.to_owned(), e))?;
        let root = dir
            .canonicalize()
            .map_err(|e| StorageError::Directory(path.to_owned(), e))?;
        // fsync: a 202 promises the upload survives a crash
        let files = Arc::new(
            LocalFileSystem::new_with_prefix(&root)?
                .with_automatic_cleanup(true)
                .with_fsync(true),
        );
        Ok(Self {
            store: files.clone(),
            place: Place::Directory { files, root },
        })
    }

    /// `bucket/prefix` of an `s3://` URL.
    fn bucket(url: &str, rest: &str) -> Result<Self, StorageError> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StorageError::UnsupportedUrl(url.to_owned()));
        }
        let s3 = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()?;
        let prefix = prefix.trim_matches('/');
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(PrefixStore::new(s3, prefix))
        };
        // one spool per process: nodes sharing a machine never touch
        // each other's copies
        let spool = std::env::temp_dir().join(format!("{SPOOL}{}", std::process::id()));
        std::fs::create_dir_all(&spool)
            .map_err(|e| StorageError::Directory(spool.display().to_string(), e))?;
        Ok(Self {
            store,
            place: Place::Bucket { spool },
        })
    }

    pub fn source_key(id: JobId) -> Key {
        Key::from(format!("videos/{id}/source"))
    }

    /// The zip written under the claim `lease_token`: claims never share an
    /// object, so a fenced-out claim cannot overwrite the result.
    pub fn zip_key(id: JobId, lease_token: Uuid) -> Key {
        Key::from(format!("videos/{id}/frames-{}.zip", lease_token.simple()))
    }

    /// The key recorded for a finished job (see [`Self::zip_key`]).
    pub fn key(path: &str) -> Key {
        Key::from(path)
    }

    /// The objects an attempt keeps beside its zip `zip` (a [`Self::zip_key`]):
    /// named after it, so they share its fate (fence, clean-up, retention).
    pub fn attempt_keys(zip: &Key) -> AttemptKeys {
        let path = zip.as_ref();
        let stem = path.strip_suffix(".zip").unwrap_or(path);
        AttemptKeys {
            index: Key::from(format!("{stem}.index")),
            thumbs: Key::from(format!("{stem}.thumbs")),
            sheet: Key::from(format!("{stem}.sheet.jpg")),
        }
    }

    fn job_prefix(id: JobId) -> Key {
        Key::from(format!("videos/{id}"))
    }

    /// A streaming writer for `key` with bounded memory: at most about three
    /// buffers per writer (one filling, two parts in flight), so hundreds of
    /// concurrent uploads stay within a few hundred MiB.
    pub fn writer(&self, key: &Key) -> ObjectWriter {
        // a local file takes parts of any size, and small parts keep memory
        // low; S3 takes no part under 5 MiB but the last
        let buffer = match self.place {
            Place::Directory { .. } => 256 * 1024,
            Place::Bucket { .. } => 5 * 1024 * 1024,
        };
        BufWriter::with_capacity(self.store.clone(), key.clone(), buffer).with_max_concurrency(2)
    }

    /// The object as a file ffmpeg can read: the file itself in a
    /// directory, a local copy of a bucket's object (gone when dropped).
    pub async fn local_input(&self, key: &Key) -> Result<LocalInput, StorageError> {
        match &self.place {
            Place::Directory { files, .. } => Ok(LocalInput {
                path: files.path_to_filesystem(key)?,
                spooled: false,
            }),
            Place::Bucket { spool } => {
                let input = LocalInput {
                    path: spool.join(Uuid::new_v4().simple().to_string()),
                    spooled: true,
                };
                let mut file = tokio::fs::File::create(&input.path).await?;
                let mut body = self.read(key, None).await?;
                while let Some(chunk) = body.next().await {
                    file.write_all(&chunk?).await?;
                }
                file.flush().await?;
                Ok(input)
            }
        }
    }

    pub async fn size(&self, key: &Key) -> Result<u64, StorageError> {
        match self.store.head(key).await {
            Ok(meta) => Ok(meta.size),
            Err(object_store::Error::NotFound { .. }) => Err(StorageError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// Streams `range` of `key` (the whole object when None).
    pub async fn read(
        &self,
        key: &Key,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes, StorageError>>, StorageError> {
        let options = object_store::GetOptions {
            range: range.map(Into::into),
            ..Default::default()
        };
        match self.store.get_opts(key, options).await {
            Ok(result) => Ok(result.into_stream().map_err(StorageError::from).boxed()),
            Err(object_store::Error::NotFound { .. }) => Err(StorageError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every object of a job (its source and the zips of all its
    /// attempts), and staging files of unfinished writes; missing objects
    /// are fine.
    pub async fn delete_job(&self, id: JobId) -> Result<(), StorageError> {
        let prefix = Self::job_prefix(id);
        let keys: Vec<Key> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?;
        for key in keys {
            self.delete(&key).await?;
        }
        let Place::Directory { files, .. } = &self.place else {
            return Ok(());
        };
        let dir = files.path_to_filesystem(&prefix)?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores a small object whole.
    pub async fn put(&self, key: &Key, bytes: Bytes) -> Result<(), StorageError> {
        self.store.put(key, bytes.into()).await?;
        Ok(())
    }

    /// Reads `range` of `key` whole: for small ranges (a frame, a page of
    /// the frame index).
    pub async fn read_bytes(
        &self,
        key: &Key,
        range: Option<Range<u64>>,
    ) -> Result<Bytes, StorageError> {
        let chunks: Vec<Bytes> = self.read(key, range).await?.try_collect().await?;
        Ok(match chunks.len() {
            1 => chunks.into_iter().next().unwrap_or_default(),
            _ => chunks.concat().into(),
        })
    }

    /// Copies `from` to `to`, which then lives on its own: deleting either
    /// leaves the other whole. In a directory it is a hard link (no bytes
    /// copied, no room taken); in a bucket a copy made by the server.
    pub async fn copy(&self, from: &Key, to: &Key) -> Result<(), StorageError> {
        match self.store.copy(from, to).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Err(StorageError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete(&self, key: &Key) -> Result<(), StorageError> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes an attempt's zip `zip` and the objects beside it (an attempt
    /// fenced out after it finished: its objects are nobody's result).
    pub async fn delete_attempt(&self, zip: &Key) -> Result<(), StorageError> {
        let beside = Self::attempt_keys(zip);
        for key in [zip, &beside.index, &beside.thumbs, &beside.sheet] {
            self.delete(key).await?;
        }
        Ok(())
    }

    /// Removes what other attempts of a job left: half-written staging
    /// files, and zips (with the objects beside them) that are not `keep`'s.
    /// Only for the attempt whose completion was recorded: its zip is the
    /// result, the rest is debris.
    pub async fn remove_other_attempts(
        &self,
        id: JobId,
        keep: &Key,
    ) -> Result<usize, StorageError> {
        let name = keep.filename().unwrap_or_default();
        // every object of ours starts `frames-<token>.`
        let ours = format!("{}.", name.strip_suffix(".zip").unwrap_or(name));
        let files = match &self.place {
            Place::Directory { files, .. } => files,
            // a bucket has no staging files (an unfinished multipart upload
            // is not an object; the bucket's lifecycle aborts it): only the
            // other attempts' zips
            Place::Bucket { .. } => {
                let others: Vec<Key> = self
                    .store
                    .list(Some(&Self::job_prefix(id)))
                    .map_ok(|meta| meta.location)
                    .try_filter(|key| {
                        let name = key.filename().unwrap_or_default();
                        std::future::ready(is_attempt_object(name) && !name.starts_with(&ours))
                    })
                    .try_collect()
                    .await?;
                for key in &others {
                    self.delete(key).await?;
                }
                return Ok(others.len());
            }
        };
        let dir = files.path_to_filesystem(&Self::job_prefix(id))?;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(0);
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let debris =
                (name.contains('#') || is_attempt_object(name)) && !name.starts_with(&ours);
            if debris {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(removed)
    }

    /// Removes staging files (`name#N`) that a crash left behind. Only files
    /// untouched for an hour go: on a shared volume another node may be
    /// writing the others right now.
    pub fn sweep_staging_files(&self) -> std::io::Result<usize> {
        const IDLE: std::time::Duration = std::time::Duration::from_secs(3600);
        fn idle(path: &std::path::Path) -> bool {
            std::fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= IDLE)
        }
        fn walk(dir: &std::path::Path, removed: &mut usize) -> std::io::Result<()> {
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let path = entry.path();
                if entry.file_type()?.is_dir() {
                    walk(&path, removed)?;
                } else if path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.contains('#'))
                    && idle(&path)
                {
                    std::fs::remove_file(&path)?;
                    *removed += 1;
                }
            }
            Ok(())
        }
        let Place::Directory { root, .. } = &self.place else {
            return Ok(0);
        };
        let mut removed = 0;
        walk(root, &mut removed)?;
        Ok(removed)
    }

    /// Removes the spools of earlier processes, left by a crash: those
    /// untouched for a day (a live node's copies are in use for hours at
    /// most).
    pub fn sweep_spool(&self) -> std::io::Result<usize> {
        const IDLE: std::time::Duration = std::time::Duration::from_secs(86_400);
        let Place::Bucket { spool } = &self.place else {
            return Ok(0);
        };
        let mut removed = 0;
        for entry in std::fs::read_dir(std::env::temp_dir())?.flatten() {
            let path = entry.path();
            let stale = entry.file_name().to_string_lossy().starts_with(SPOOL)
                && &path != spool
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age >= IDLE);
            if stale && std::fs::remove_dir_all(&path).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The spool directories' names, before the process id.
const SPOOL: &str = "videoproject-spool-";

/// An object of some attempt: its zip (see [`MediaStore::zip_key`]) or one
/// beside it (see [`MediaStore::attempt_keys`]).
fn is_attempt_object(name: &str) -> bool {
    name.starts_with("frames-")
}

/// What an attempt keeps beside its zip.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptKeys {
    /// Where each frame lies in the zip (`media::frame_index`).
    pub index: Key,
    /// The thumbnails, one after another.
    pub thumbs: Key,
    /// The contact sheet.
    pub sheet: Key,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn write_is_invisible_until_shutdown_and_dropped_writes_vanish() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::from_url(&format!("file://{}", dir.path().display())).unwrap();
        let id = JobId::new();
        let key = MediaStore::source_key(id);

        let mut w = store.writer(&key);
        w.write_all(b"hello ").await.unwrap();
        w.write_all(b"world").await.unwrap();
        assert!(matches!(
            store.size(&key).await,
            Err(StorageError::NotFound)
        ));
        w.shutdown().await.unwrap();
        assert_eq!(store.size(&key).await.unwrap(), 11);

        let part: Vec<Bytes> = store
            .read(&key, Some(6..11))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(part.concat(), b"world");

        let zip = MediaStore::zip_key(id, Uuid::new_v4());
        let mut w = store.writer(&zip);
        w.write_all(b"partial").await.unwrap();
        drop(w);
        assert!(matches!(
            store.size(&zip).await,
            Err(StorageError::NotFound)
        ));

        // the winning claim keeps its zip; another claim's zip and staging
        // files go
        let job_dir = dir.path().join(format!("videos/{id}"));
        let (winner, loser) = (
            MediaStore::zip_key(id, Uuid::new_v4()),
            MediaStore::zip_key(id, Uuid::new_v4()),
        );
        let name = |k: &Key| k.filename().unwrap().to_owned();
        let beside = |k: &Key| {
            let a = MediaStore::attempt_keys(k);
            [name(&a.index), name(&a.thumbs), name(&a.sheet)]
        };
        assert_eq!(
            MediaStore::attempt_keys(&winner).sheet.as_ref(),
            format!(
                "videos/{id}/{}",
                name(&winner).replace(".zip", ".sheet.jpg")
            )
        );
        let mut files = vec![name(&winner), name(&loser), format!("{}#3", name(&loser))];
        files.extend(beside(&winner));
        files.extend(beside(&loser));
        for file in &files {
            std::fs::write(job_dir.join(file), "zip").unwrap();
        }
        assert_eq!(store.remove_other_attempts(id, &winner).await.unwrap(), 5);
        assert!(job_dir.join(name(&winner)).exists());
        for file in beside(&winner) {
            assert!(job_dir.join(file).exists(), "the winner's objects stay");
        }
        for file in beside(&loser) {
            assert!(!job_dir.join(file).exists(), "the loser's go");
        }
        assert!(job_dir.join("source").exists());

        // a fenced-out attempt's objects go together, and nothing else
        store.delete_attempt(&winner).await.unwrap();
        assert!(!job_dir.join(name(&winner)).exists());
        for file in beside(&winner) {
            assert!(!job_dir.join(&file).exists(), "{file} went with its zip");
        }
        assert!(job_dir.join("source").exists());

        store.delete_job(id).await.unwrap();
        assert!(matches!(
            store.size(&key).await,
            Err(StorageError::NotFound)
        ));
        assert!(!job_dir.exists(), "staging files go too");
        for unsupported in ["s3://", "s3:///prefix", "ftp://host/dir", "file://"] {
            assert!(MediaStore::from_url(unsupported).is_err(), "{unsupported}");
        }
    }
}
