//! Facts about the machine logwharf runs on, shared by the components that need them (the
//! fluent source's and fluentd sink's `self_hostname`, the syslog sink's HOSTNAME).

/// This host's name, as `gethostname(2)` reports it (what Docker's drivers put in HOSTNAME:
/// Go's `os.Hostname()`); `"localhost"` when it is unset or not UTF-8.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes
    // (NUL-terminated, or truncated), and we stop at the first NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(s) if !s.is_empty() => s.to_string(),
        _ => "localhost".to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hostname_is_known() {
        assert!(!super::hostname().is_empty());
    }
}
