//! The trust boundary for container metadata that comes from the network: the `fluent` source's
//! `container_id`/`container_name`, the `syslog` source's header fields and a remote
//! (`tcp://`) Docker host's inspect answers are checked and normalised here, where they enter,
//! so that everything downstream (templates, caches, paths, headers) can rely on two things:
//!
//! - a [`ContainerMeta::id`] is empty or Docker's form, exactly 64 lowercase hex digits
//!   ([`is_container_id`]; Docker's own drivers and API always send the full id, so a short
//!   or otherwise odd id is not guessed at). Any other id is kept as the field
//!   `container_id` of the event ([`PeerContainer::rejected_id`]), never used as the id;
//! - a name (and the syslog header fields) has no control characters ([`clean_text`]).
//!
//! This is the first of two walls: every sink also confines what it renders into a path, a
//! header or a name (sinks/src/util/confine.rs), whatever the source.

use crate::event::ContainerMeta;
use std::borrow::Cow;

/// Docker's container id: exactly 64 lowercase hex digits.
pub fn is_container_id(id: &[u8]) -> bool {
    id.len() == 64 && id.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `s` as UTF-8 (invalid sequences become U+FFFD) without control characters (C0, DEL, C1).
/// Borrows when there is nothing to change.
pub fn clean_text(s: &[u8]) -> Cow<'_, str> {
    match String::from_utf8_lossy(s) {
        Cow::Borrowed(t) => clean_str(t),
        Cow::Owned(t) => Cow::Owned(clean_str(&t).into_owned()),
    }
}

/// `s` without control characters (C0, DEL, C1). Borrows when there are none.
pub fn clean_str(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(s.chars().filter(|c| !c.is_control()).collect())
    } else {
        Cow::Borrowed(s)
    }
}

/// What a peer said about a container, normalised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerContainer {
    /// `None` when the peer gave neither a valid id nor a non-empty name.
    pub meta: Option<ContainerMeta>,
    /// The id the peer sent when it is not Docker's form (lossy UTF-8, as sent).
    pub rejected_id: Option<String>,
}

impl PeerContainer {
    /// From a peer's raw `id` and `name` (Docker's leading `/` is stripped from the name).
    pub fn new(id: Option<&[u8]>, name: Option<&[u8]>) -> PeerContainer {
        let (id, rejected_id) = match id {
            Some(i) if is_container_id(i) => (String::from_utf8_lossy(i).into_owned(), None),
            Some([]) => (String::new(), None),
            Some(i) => (String::new(), Some(String::from_utf8_lossy(i).into_owned())),
            None => (String::new(), None),
        };
        let name = name
            .map(|n| clean_text(n.strip_prefix(b"/").unwrap_or(n)).into_owned())
            .filter(|n| !n.is_empty());
        let meta = (!id.is_empty() || name.is_some()).then(|| ContainerMeta {
            id,
            name,
            ..Default::default()
        });
        PeerContainer { meta, rejected_id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "d2ae8d3a9846e1ba1cc4b1b14b3d2f1c7d9e5d8f1a2b3c4d5e6f708192a3b4c5";

    #[test]
    fn only_dockers_full_id_is_an_id() {
        assert!(is_container_id(ID.as_bytes()));
        assert!(!is_container_id(&ID.as_bytes()[..12]));
        assert!(!is_container_id(ID.to_uppercase().as_bytes()));
        assert!(!is_container_id(format!("{ID}0").as_bytes()));
        let mut multibyte = ID.as_bytes()[..11].to_vec();
        multibyte.extend_from_slice("€".as_bytes());
        multibyte.resize(64, b'0');
        assert!(!is_container_id(&multibyte));
    }

    #[test]
    fn peer_ids_and_names_are_normalised() {
        let p = PeerContainer::new(Some(ID.as_bytes()), Some(b"/web\n<14>1 forged"));
        let m = p.meta.unwrap();
        assert_eq!(m.id, ID);
        assert_eq!(m.name.as_deref(), Some("web<14>1 forged"));
        assert_eq!(p.rejected_id, None);

        let p = PeerContainer::new(Some(b"0123456789a\xe2\x82\xacxyz"), Some(b"/x"));
        let m = p.meta.unwrap();
        assert_eq!((m.id.as_str(), m.name.as_deref()), ("", Some("x")));
        assert_eq!(p.rejected_id.as_deref(), Some("0123456789a€xyz"));

        let p = PeerContainer::new(Some(b"\xff\xfe"), None);
        assert_eq!(p.meta, None);
        assert_eq!(p.rejected_id.as_deref(), Some("\u{fffd}\u{fffd}"));

        assert_eq!(PeerContainer::new(Some(b""), Some(b"/")).meta, None);
        assert_eq!(
            clean_text(b"a\x00b\x1b[31m\x7f\xc2\x85c"),
            "ab[31mc",
            "C0, DEL and C1 (U+0085) are removed"
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // Every sequence of up to 3 bytes from an alphabet of ASCII, control, lead and
        // continuation bytes, padded to straddle byte 12 (where short ids are cut).
        let alphabet: &[u8] = &[
            b'a', b'/', b'.', 0, b'\n', 0x7f, 0xc2, 0x85, 0xe2, 0x82, 0xac, 0xff,
        ];
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    for pad in 9..13 {
                        let mut s = vec![b'0'; pad];
                        s.extend_from_slice(&[*a, *b, *c]);
                        let p = PeerContainer::new(Some(&s), Some(&s));
                        if let Some(m) = &p.meta {
                            assert!(m.id.is_empty() || is_container_id(m.id.as_bytes()));
                            assert!(!m
                                .name
                                .as_deref()
                                .unwrap_or("")
                                .chars()
                                .any(char::is_control));
                            let _ = m.short_id();
                        }
                        let lossy = String::from_utf8_lossy(&s);
                        let _ = ContainerMeta::from_id(lossy.as_ref()).short_id();
                    }
                }
            }
        }
    }
}
