//! Wire format of Jupyter messages: ZeroMQ framing, HMAC-SHA256 signing and verification.
//!
//! A message on a ROUTER socket is the multipart sequence
//! `identities…, "<IDS|MSG>", signature, header, parent_header, metadata, content, buffers…`.
//! The signature is the lower-case hex HMAC-SHA256 of the four JSON frames (header to content,
//! buffers excluded) under the connection file's key; an empty key means no signing, and the
//! signature frame is then empty. Incoming signatures are checked in constant time before any
//! JSON is parsed, and a signature seen before is refused as a replay.

use std::collections::{HashSet, VecDeque};
use std::fmt;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use jupyter_protocol::Header;
use serde_json::Value;
use sha2::Sha256;

/// The frame that separates routing identities from the signed message.
pub const DELIMITER: &[u8] = b"<IDS|MSG>";

/// Version of the messaging protocol this kernel speaks.
pub const PROTOCOL_VERSION: &str = "5.3";

/// Why an incoming multipart message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// No `<IDS|MSG>` frame.
    MissingDelimiter,
    /// Fewer than the signature and four JSON frames after the delimiter.
    TooFewFrames(usize),
    /// A key is set but the signature frame is empty.
    MissingSignature,
    /// The signature does not match the message (or is not hex of the right length).
    BadSignature,
    /// The signature was already used by an earlier message.
    ReplayedSignature,
    /// A JSON frame could not be parsed.
    BadJson(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::MissingDelimiter => write!(f, "no <IDS|MSG> delimiter frame"),
            WireError::TooFewFrames(n) => {
                write!(f, "{n} frames after the delimiter, need at least 5")
            }
            WireError::MissingSignature => write!(f, "missing signature"),
            WireError::BadSignature => write!(f, "invalid signature"),
            WireError::ReplayedSignature => write!(f, "duplicate signature (replayed message)"),
            WireError::BadJson(e) => write!(f, "malformed JSON frame: {e}"),
        }
    }
}

impl std::error::Error for WireError {}

/// Signs outgoing and verifies incoming messages with HMAC-SHA256; a no-op for an empty key.
#[derive(Clone)]
pub struct Signer {
    mac: Option<Hmac<Sha256>>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("signing", &self.mac.is_some())
            .finish()
    }
}

impl Signer {
    /// A signer for `key`; the empty key disables signing and verification.
    pub fn new(key: &[u8]) -> Self {
        let mac = (!key.is_empty())
            .then(|| Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length"));
        Signer { mac }
    }

    /// Whether messages are signed (the key is not empty).
    pub fn is_signing(&self) -> bool {
        self.mac.is_some()
    }

    /// The hex signature of the four JSON frames; empty when signing is off.
    pub fn sign(&self, parts: [&[u8]; 4]) -> String {
        match &self.mac {
            None => String::new(),
            Some(mac) => {
                let mut mac = mac.clone();
                for part in parts {
                    mac.update(part);
                }
                hex_encode(&mac.finalize().into_bytes())
            }
        }
    }

    /// Checks `signature` (hex) against the four JSON frames in constant time.
    pub fn verify(&self, signature: &[u8], parts: [&[u8]; 4]) -> Result<(), WireError> {
        let Some(mac) = &self.mac else {
            return Ok(());
        };
        if signature.is_empty() {
            return Err(WireError::MissingSignature);
        }
        let expected = hex_decode(signature).ok_or(WireError::BadSignature)?;
        let mut mac = mac.clone();
        for part in parts {
            mac.update(part);
        }
        mac.verify_slice(&expected)
            .map_err(|_| WireError::BadSignature)
    }
}

/// Remembers recent signatures so that a captured message cannot be replayed.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: HashSet<Bytes>,
    order: VecDeque<Bytes>,
}

impl ReplayGuard {
    /// How many signatures are remembered.
    pub const CAPACITY: usize = 1 << 16;

    /// Records `signature`; fails if it was seen before. Empty signatures are not tracked.
    pub fn check(&mut self, signature: &Bytes) -> Result<(), WireError> {
        if signature.is_empty() {
            return Ok(());
        }
        if !self.seen.insert(signature.clone()) {
            return Err(WireError::ReplayedSignature);
        }
        self.order.push_back(signature.clone());
        if self.order.len() > Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        Ok(())
    }
}

/// A message split into its frames, JSON not yet parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct RawMessage {
    /// Routing frames before the delimiter (ROUTER peer ids, or the PUB topic).
    pub identities: Vec<Bytes>,
    pub signature: Bytes,
    /// Header, parent header, metadata and content, in that order.
    pub parts: [Bytes; 4],
    pub buffers: Vec<Bytes>,
}

impl RawMessage {
    /// Splits multipart frames at the delimiter.
    pub fn from_frames(frames: Vec<Bytes>) -> Result<Self, WireError> {
        let delim = frames
            .iter()
            .position(|f| f.as_ref() == DELIMITER)
            .ok_or(WireError::MissingDelimiter)?;
        let after = frames.len() - delim - 1;
        if after < 5 {
            return Err(WireError::TooFewFrames(after));
        }
        let mut frames = frames.into_iter();
        let identities = frames.by_ref().take(delim).collect();
        frames.next(); // the delimiter
        let mut next = || frames.next().expect("counted above");
        let signature = next();
        let parts = [next(), next(), next(), next()];
        let buffers = frames.collect();
        Ok(RawMessage {
            identities,
            signature,
            parts,
            buffers,
        })
    }

    /// The frames to send: identities, delimiter, signature, four JSON frames, buffers.
    pub fn into_frames(self) -> Vec<Bytes> {
        let mut frames = self.identities;
        frames.reserve(6 + self.buffers.len());
        frames.push(Bytes::from_static(DELIMITER));
        frames.push(self.signature);
        frames.extend(self.parts);
        frames.extend(self.buffers);
        frames
    }

    fn part_refs(&self) -> [&[u8]; 4] {
        [
            &self.parts[0],
            &self.parts[1],
            &self.parts[2],
            &self.parts[3],
        ]
    }
}

/// A decoded Jupyter message. Content and metadata stay JSON; handlers deserialize the content
/// into the `jupyter_protocol` type that its `msg_type` names.
#[derive(Debug, Clone)]
pub struct Message {
    /// Routing identities: copied from a request into its reply.
    pub identities: Vec<Bytes>,
    pub header: Header,
    pub parent_header: Option<Header>,
    pub metadata: Value,
    pub content: Value,
    pub buffers: Vec<Bytes>,
}

impl Message {
    /// A new message with a fresh id, stamped now, from `session`, child of `parent`.
    pub fn new(msg_type: &str, content: Value, parent: Option<&Header>, session: &str) -> Self {
        Message {
            identities: Vec::new(),
            header: new_header(msg_type, session),
            parent_header: parent.cloned(),
            metadata: Value::Object(Default::default()),
            content,
            buffers: Vec::new(),
        }
    }

    /// A reply to `request`: same routing identities, `request` as parent.
    pub fn reply_to(request: &Message, msg_type: &str, content: Value, session: &str) -> Self {
        let mut msg = Message::new(msg_type, content, Some(&request.header), session);
        msg.identities = request.identities.clone();
        msg
    }

    pub fn msg_type(&self) -> &str {
        &self.header.msg_type
    }

    pub fn msg_id(&self) -> &str {
        &self.header.msg_id
    }

    /// Verifies and parses multipart frames.
    pub fn decode(
        frames: Vec<Bytes>,
        signer: &Signer,
        replay: Option<&mut ReplayGuard>,
    ) -> Result<Self, WireError> {
        let raw = RawMessage::from_frames(frames)?;
        signer.verify(&raw.signature, raw.part_refs())?;
        if let (Some(guard), true) = (replay, signer.is_signing()) {
            guard.check(&raw.signature)?;
        }
        let json = |b: &Bytes| -> Result<Value, WireError> {
            serde_json::from_slice(b).map_err(|e| WireError::BadJson(e.to_string()))
        };
        let header: Header = serde_json::from_slice(&raw.parts[0])
            .map_err(|e| WireError::BadJson(format!("header: {e}")))?;
        let parent = json(&raw.parts[1])?;
        let parent_header = match &parent {
            Value::Object(o) if !o.is_empty() => serde_json::from_value(parent).ok(),
            _ => None,
        };
        Ok(Message {
            identities: raw.identities,
            header,
            parent_header,
            metadata: json(&raw.parts[2])?,
            content: json(&raw.parts[3])?,
            buffers: raw.buffers,
        })
    }

    /// Serializes and signs into multipart frames.
    pub fn encode(&self, signer: &Signer) -> Vec<Bytes> {
        let header = json_bytes(&self.header);
        let parent = match &self.parent_header {
            Some(p) => json_bytes(p),
            None => Bytes::from_static(b"{}"),
        };
        let metadata = json_bytes(&self.metadata);
        let content = json_bytes(&self.content);
        let signature = signer.sign([&header, &parent, &metadata, &content]);
        RawMessage {
            identities: self.identities.clone(),
            signature: Bytes::from(signature),
            parts: [header, parent, metadata, content],
            buffers: self.buffers.clone(),
        }
        .into_frames()
    }
}

fn json_bytes<T: serde::Serialize>(value: &T) -> Bytes {
    // Headers and `serde_json::Value`s always serialize.
    Bytes::from(serde_json::to_vec(value).expect("JSON serialization"))
}

/// A header for a new message of `msg_type` from `session`.
pub fn new_header(msg_type: &str, session: &str) -> Header {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Header {
        msg_id: uuid::Uuid::new_v4().to_string(),
        username: "qplay".to_string(),
        session: session.to_string(),
        date: chrono::DateTime::from_timestamp(now.as_secs() as i64, now.subsec_nanos())
            .unwrap_or_default(),
        msg_type: msg_type.to_string(),
        version: PROTOCOL_VERSION.to_string(),
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn hex_decode(hex: &[u8]) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parts() -> [Bytes; 4] {
        [
            Bytes::from_static(br#"{"msg_id":"1"}"#),
            Bytes::from_static(b"{}"),
            Bytes::from_static(b"{}"),
            Bytes::from_static(br#"{"code":"1"}"#),
        ]
    }

    fn refs(p: &[Bytes; 4]) -> [&[u8]; 4] {
        [&p[0], &p[1], &p[2], &p[3]]
    }

    #[test]
    fn signature_is_hmac_sha256_hex_of_the_four_json_frames() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?", split in 4.
        let signer = Signer::new(b"Jefe");
        let sig = signer.sign([b"what do ", b"ya want ", b"for ", b"nothing?"]);
        assert_eq!(
            sig,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let p = parts();
        let sig = signer.sign(refs(&p));
        assert_eq!(sig.len(), 64);
        assert!(signer.verify(sig.as_bytes(), refs(&p)).is_ok());
        assert!(signer
            .verify(sig.to_uppercase().as_bytes(), refs(&p))
            .is_ok());
    }

    #[test]
    fn verification_rejects_wrong_key_tampering_missing_and_garbage() {
        let p = parts();
        let good = Signer::new(b"key").sign(refs(&p));
        let signer = Signer::new(b"key");
        let other = Signer::new(b"other").sign(refs(&p));
        assert_eq!(
            signer.verify(other.as_bytes(), refs(&p)),
            Err(WireError::BadSignature)
        );
        let mut tampered = parts();
        tampered[3] = Bytes::from_static(br#"{"code":"2"}"#);
        assert_eq!(
            signer.verify(good.as_bytes(), refs(&tampered)),
            Err(WireError::BadSignature)
        );
        assert_eq!(
            signer.verify(b"", refs(&p)),
            Err(WireError::MissingSignature)
        );
        assert_eq!(signer.verify(b"zz", refs(&p)), Err(WireError::BadSignature));
        assert_eq!(
            signer.verify(&good.as_bytes()[..62], refs(&p)),
            Err(WireError::BadSignature)
        );
    }

    #[test]
    fn empty_key_means_no_signing() {
        let signer = Signer::new(b"");
        let p = parts();
        assert!(!signer.is_signing());
        assert_eq!(signer.sign(refs(&p)), "");
        assert!(signer.verify(b"", refs(&p)).is_ok());
        assert!(signer.verify(b"anything", refs(&p)).is_ok());
    }

    #[test]
    fn framing_splits_identities_delimiter_signature_parts_and_buffers() {
        let frames: Vec<Bytes> = vec![
            Bytes::from_static(b"peer-1"),
            Bytes::from_static(b"peer-2"),
            Bytes::from_static(DELIMITER),
            Bytes::from_static(b"sig"),
            Bytes::from_static(b"h"),
            Bytes::from_static(b"p"),
            Bytes::from_static(b"m"),
            Bytes::from_static(b"c"),
            Bytes::from_static(b"buf0"),
            Bytes::from_static(b"buf1"),
        ];
        let raw = RawMessage::from_frames(frames.clone()).unwrap();
        assert_eq!(raw.identities, vec!["peer-1", "peer-2"]);
        assert_eq!(raw.signature, "sig");
        assert_eq!(raw.parts, ["h", "p", "m", "c"]);
        assert_eq!(raw.buffers, vec!["buf0", "buf1"]);
        assert_eq!(raw.into_frames(), frames);

        // No identities, no buffers.
        let raw = RawMessage::from_frames(frames[2..8].to_vec()).unwrap();
        assert!(raw.identities.is_empty() && raw.buffers.is_empty());

        assert_eq!(
            RawMessage::from_frames(frames[3..].to_vec()),
            Err(WireError::MissingDelimiter)
        );
        assert_eq!(
            RawMessage::from_frames(frames[..7].to_vec()),
            Err(WireError::TooFewFrames(4))
        );
    }

    #[test]
    fn encode_then_decode_round_trips_and_signs() {
        let signer = Signer::new(b"secret");
        let request = Message::new("execute_request", json!({"code": "1+1"}), None, "client");
        let mut reply = Message::reply_to(
            &Message {
                identities: vec![Bytes::from_static(b"peer")],
                ..request.clone()
            },
            "execute_reply",
            json!({"status": "ok"}),
            "kernel",
        );
        reply.buffers = vec![Bytes::from_static(b"\x00\x01")];
        let frames = reply.encode(&signer);
        assert_eq!(frames[0], "peer");
        assert_eq!(frames[1], DELIMITER);
        assert_eq!(frames[2].len(), 64);
        assert_eq!(frames.len(), 1 + 1 + 1 + 4 + 1);

        let mut guard = ReplayGuard::default();
        let decoded = Message::decode(frames.clone(), &signer, Some(&mut guard)).unwrap();
        assert_eq!(decoded.identities, vec!["peer"]);
        assert_eq!(decoded.msg_type(), "execute_reply");
        assert_eq!(decoded.header.session, "kernel");
        assert_eq!(decoded.header.version, PROTOCOL_VERSION);
        let parent = decoded.parent_header.as_ref().unwrap();
        assert_eq!(parent.msg_id, request.header.msg_id);
        assert_eq!(decoded.content, json!({"status": "ok"}));
        assert_eq!(decoded.buffers, vec![Bytes::from_static(b"\x00\x01")]);

        // The same frames again are a replay.
        assert_eq!(
            Message::decode(frames.clone(), &signer, Some(&mut guard)).unwrap_err(),
            WireError::ReplayedSignature
        );
        // Wrong key.
        assert_eq!(
            Message::decode(frames, &Signer::new(b"nope"), None).unwrap_err(),
            WireError::BadSignature
        );
    }

    #[test]
    fn empty_parent_header_decodes_as_none() {
        let msg = Message::new("kernel_info_request", json!({}), None, "s");
        let frames = msg.encode(&Signer::new(b""));
        assert_eq!(frames[3], "{}");
        let decoded = Message::decode(frames, &Signer::new(b""), None).unwrap();
        assert!(decoded.parent_header.is_none());
    }
}
