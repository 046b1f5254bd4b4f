//! How the few messages that cross between nodes are put into bytes and
//! read back, without trusting the peer. ractor's serde bridge unwraps a
//! decoding error (a panic, which ractor catches and logs); these never
//! fail: bytes that do not decode give a value that does nothing. And a
//! message a peer must not send at all (stop claiming, a job's end) carries
//! a [`Local`], which never arrives from another node.

use ractor::BytesConvertable;
use uuid::Uuid;

use crate::domain::JobId;

/// A job id; bytes that are not one read as the nil id, which names no job.
impl BytesConvertable for JobId {
    fn into_bytes(self) -> Vec<u8> {
        self.0.as_bytes().to_vec()
    }

    fn from_bytes(bytes: Vec<u8>) -> Self {
        JobId(Uuid::from_slice(&bytes).unwrap_or(Uuid::nil()))
    }
}

/// A value only this node can put in a message: it crosses as nothing and
/// arrives from a peer as `None`, so a peer cannot send what carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local<T>(Option<T>);

impl<T> Local<T> {
    pub fn new(value: T) -> Self {
        Self(Some(value))
    }

    /// The value, when the message came from this node.
    pub fn get(self) -> Option<T> {
        self.0
    }
}

impl<T: Send + 'static> BytesConvertable for Local<T> {
    fn into_bytes(self) -> Vec<u8> {
        Vec::new()
    }

    fn from_bytes(_: Vec<u8>) -> Self {
        Self(None)
    }
}

/// A node's name as a peer tells it: read leniently (not UTF-8 is replaced,
/// not rejected) and cut to a sane length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeName(pub String);

/// The longest node name taken from a peer.
const NAME_LIMIT: usize = 253;

impl BytesConvertable for NodeName {
    fn into_bytes(self) -> Vec<u8> {
        self.0.into_bytes()
    }

    fn from_bytes(bytes: Vec<u8>) -> Self {
        let name = String::from_utf8_lossy(&bytes[..bytes.len().min(NAME_LIMIT)]);
        NodeName(name.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_a_peer_sends_fails_to_decode() {
        let id = JobId::new();
        assert_eq!(JobId::from_bytes(id.into_bytes()), id);
        assert_eq!(JobId::from_bytes(b"garbage".to_vec()), JobId(Uuid::nil()));
        assert_eq!(JobId::from_bytes(Vec::new()), JobId(Uuid::nil()));
        assert_eq!(
            NodeName::from_bytes(vec![0xff, b'a']),
            NodeName("\u{fffd}a".into())
        );
        assert_eq!(NodeName::from_bytes(vec![b'a'; 10_000]).0.len(), NAME_LIMIT);
    }

    #[test]
    fn a_local_value_never_arrives_from_a_peer() {
        let sent = Local::new((JobId::new(), Uuid::new_v4()));
        assert!(sent.get().is_some(), "on this node");
        assert_eq!(
            Local::<(JobId, Uuid)>::from_bytes(sent.into_bytes()).get(),
            None
        );
        assert_eq!(Local::<()>::from_bytes(b"anything".to_vec()).get(), None);
    }
}
