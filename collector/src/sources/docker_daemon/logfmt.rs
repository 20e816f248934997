//! logfmt as dockerd (logrus) writes it: `key=value` pairs separated by spaces, values
//! optionally double-quoted with Go escapes (`msg="a \"b\""`).

/// The pairs of one line, in order; a line that is not logfmt gives what parsed before the
/// first bad token (often nothing).
pub fn parse(line: &[u8]) -> Vec<(String, String)> {
    let s = String::from_utf8_lossy(line);
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b' ' {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' || i == ks {
            break;
        }
        let key = s[ks..i].to_string();
        i += 1;
        let value = if b.get(i) == Some(&b'"') {
            i += 1;
            let mut v = String::new();
            let mut closed = false;
            let mut chars = s[i..].char_indices();
            while let Some((k, c)) = chars.next() {
                match c {
                    '"' => {
                        i += k + 1;
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, 'n')) => v.push('\n'),
                        Some((_, 't')) => v.push('\t'),
                        Some((_, 'r')) => v.push('\r'),
                        Some((_, o)) => v.push(o),
                        None => break,
                    },
                    c => v.push(c),
                }
            }
            if !closed {
                break;
            }
            v
        } else {
            let vs = i;
            while i < b.len() && b[i] != b' ' {
                i += 1;
            }
            s[vs..i].to_string()
        };
        out.push((key, value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dockerd_lines() {
        let l = br#"time="2026-11-25T13:04:22.123456789Z" level=info msg="Loading containers: done." container=abc"#;
        let p = parse(l);
        assert_eq!(
            p[0],
            ("time".into(), "2026-11-25T13:04:22.123456789Z".into())
        );
        assert_eq!(p[1], ("level".into(), "info".into()));
        assert_eq!(p[2], ("msg".into(), "Loading containers: done.".into()));
        assert_eq!(p[3], ("container".into(), "abc".into()));
        let p = parse(br#"level=warning msg="say \"hi\"\n""#);
        assert_eq!(p[1].1, "say \"hi\"\n");
        assert!(parse(b"goroutine 1 [running]:").is_empty());
        assert_eq!(parse(br#"msg="unterminated"#).len(), 0);
    }
}
