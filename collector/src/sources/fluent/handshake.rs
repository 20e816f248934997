//! The Forward protocol's shared-key handshake (spec v1, "Handshake Messages"), both ends:
//! the server sends HELO with a nonce, the client answers PING with a salted SHA-512 digest of
//! the shared key, the server checks it and answers PONG with its own digest, which the client
//! checks in turn. The fluentd sink uses the client half.
//!
//! `HELO = ["HELO", {"nonce": bin, "auth": bin, "keepalive": bool}]`
//! `PING = ["PING", client_hostname, shared_key_salt, hex(sha512(salt + client_hostname + nonce + key)), username, password_digest]`
//! `PONG = ["PONG", auth_ok, reason, server_hostname, hex(sha512(salt + server_hostname + nonce + key))]`

use super::msgpack::{MpError, Reader};
use ring::rand::SecureRandom;

/// 16 random bytes from the system's CSPRNG (nonces and salts).
pub fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    // SystemRandom only fails when the OS has no randomness source; fall back to fastrand so a
    // handshake still differs per connection.
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        for x in b.iter_mut() {
            *x = fastrand::u8(..);
        }
    }
    b
}

/// Lower-case hex of SHA-512 over the concatenation of `parts`.
pub fn sha512_hex(parts: &[&[u8]]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA512);
    for p in parts {
        ctx.update(p);
    }
    let d = ctx.finish();
    let mut s = String::with_capacity(128);
    for b in d.as_ref() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// `["HELO", {"nonce": nonce, "auth": "", "keepalive": true}]`.
pub fn write_helo(out: &mut Vec<u8>, nonce: &[u8]) {
    use rmp::encode::*;
    let _ = write_array_len(out, 2);
    let _ = write_str(out, "HELO");
    let _ = write_map_len(out, 3);
    let _ = write_str(out, "nonce");
    let _ = write_bin(out, nonce);
    let _ = write_str(out, "auth");
    let _ = write_bin(out, b"");
    let _ = write_str(out, "keepalive");
    let _ = write_bool(out, true);
}

/// The nonce of a HELO message.
pub fn parse_helo(msg: &[u8]) -> Result<Vec<u8>, MpError> {
    let mut r = Reader::new(msg, msg.len());
    let n = r.array_len()?;
    if n < 2 || r.str()? != "HELO" {
        return Err(MpError::Invalid("expected HELO from the server".into()));
    }
    let mut nonce = None;
    for _ in 0..r.map_len()? {
        let k = r.str()?;
        if k == "nonce" {
            let range = r.bytes()?;
            nonce = Some(msg[range].to_vec());
        } else {
            r.skip()?;
        }
    }
    nonce.ok_or_else(|| MpError::Invalid("HELO without a nonce".into()))
}

/// What a client proves in PING.
pub struct Ping<'a> {
    pub hostname: &'a str,
    pub salt: &'a [u8],
    pub digest: &'a str,
}

/// A client's PING for `nonce`: returns the salt used (to check the PONG with).
pub fn write_ping(out: &mut Vec<u8>, hostname: &str, nonce: &[u8], key: &str) -> Vec<u8> {
    use rmp::encode::*;
    let salt: Vec<u8> = hex16(&random16()).into_bytes();
    let digest = sha512_hex(&[&salt, hostname.as_bytes(), nonce, key.as_bytes()]);
    let _ = write_array_len(out, 6);
    let _ = write_str(out, "PING");
    let _ = write_str(out, hostname);
    let _ = write_bin(out, &salt);
    let _ = write_str(out, &digest);
    let _ = write_str(out, "");
    let _ = write_str(out, "");
    salt
}

fn hex16(b: &[u8; 16]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parses a PING (`None` when the message is not a PING at all).
pub fn parse_ping(msg: &[u8]) -> Result<Option<Ping<'_>>, MpError> {
    let mut r = Reader::new(msg, msg.len());
    let n = r.array_len()?;
    if n < 4 || r.str()? != "PING" {
        return Ok(None);
    }
    let hostname = r.str()?;
    let salt = &msg[r.bytes()?];
    let digest = r.str()?;
    Ok(Some(Ping {
        hostname,
        salt,
        digest,
    }))
}

/// Checks a PING against our nonce and key.
pub fn ping_is_valid(p: &Ping<'_>, nonce: &[u8], key: &str) -> bool {
    let want = sha512_hex(&[p.salt, p.hostname.as_bytes(), nonce, key.as_bytes()]);
    constant_time_eq(want.as_bytes(), p.digest.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The server's PONG: on success with our digest over the client's salt.
pub fn write_pong(
    out: &mut Vec<u8>,
    ok: bool,
    reason: &str,
    hostname: &str,
    salt: &[u8],
    nonce: &[u8],
    key: &str,
) {
    use rmp::encode::*;
    let digest = if ok {
        sha512_hex(&[salt, hostname.as_bytes(), nonce, key.as_bytes()])
    } else {
        String::new()
    };
    let _ = write_array_len(out, 5);
    let _ = write_str(out, "PONG");
    let _ = write_bool(out, ok);
    let _ = write_str(out, reason);
    let _ = write_str(out, if ok { hostname } else { "" });
    let _ = write_str(out, &digest);
}

/// Checks a PONG on the client side: `Err(reason)` when the server refused us or did not
/// prove it knows the key.
pub fn check_pong(msg: &[u8], salt: &[u8], nonce: &[u8], key: &str) -> Result<(), String> {
    let parse = || -> Result<(bool, String, String, String), MpError> {
        let mut r = Reader::new(msg, msg.len());
        if r.array_len()? < 5 || r.str()? != "PONG" {
            return Err(MpError::Invalid("expected PONG".into()));
        }
        let ok = match r.peek()? {
            rmp::Marker::True => true,
            rmp::Marker::False => false,
            _ => return Err(MpError::Invalid("PONG auth_result is not a boolean".into())),
        };
        r.skip()?;
        Ok((
            ok,
            r.str()?.to_string(),
            r.str()?.to_string(),
            r.str()?.to_string(),
        ))
    };
    let (ok, reason, host, digest) = parse().map_err(|e| format!("bad PONG: {e}"))?;
    if !ok {
        return Err(format!("the server refused authentication: {reason}"));
    }
    let want = sha512_hex(&[salt, host.as_bytes(), nonce, key.as_bytes()]);
    if !constant_time_eq(want.as_bytes(), digest.as_bytes()) {
        return Err("the server's PONG digest does not match the shared key".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_halves_agree_and_a_wrong_key_fails() {
        let nonce = random16();
        let mut helo = Vec::new();
        write_helo(&mut helo, &nonce);
        assert_eq!(parse_helo(&helo).unwrap(), nonce);

        let mut ping = Vec::new();
        let salt = write_ping(&mut ping, "client-a", &nonce, "s3cret");
        let p = parse_ping(&ping).unwrap().unwrap();
        assert_eq!(p.hostname, "client-a");
        assert!(ping_is_valid(&p, &nonce, "s3cret"));
        assert!(!ping_is_valid(&p, &nonce, "wrong"));

        let mut pong = Vec::new();
        write_pong(&mut pong, true, "", "server-b", p.salt, &nonce, "s3cret");
        assert_eq!(check_pong(&pong, &salt, &nonce, "s3cret"), Ok(()));
        assert!(check_pong(&pong, &salt, &nonce, "other").is_err());
        let mut refused = Vec::new();
        write_pong(&mut refused, false, "shared_key mismatch", "", b"", b"", "");
        assert!(check_pong(&refused, &salt, &nonce, "s3cret")
            .unwrap_err()
            .contains("shared_key mismatch"));
    }

    #[test]
    fn sha512_matches_a_known_vector() {
        assert!(sha512_hex(&[b"ab", b"c"]).starts_with("ddaf35a193617aba"));
    }
}
