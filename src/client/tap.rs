//! `logwharf tap`: prints the events flowing through the running daemon (`GET /tap`), one JSON
//! object a line, until interrupted or `--limit` events were printed. A `{"tap_dropped":N}`
//! line says the daemon dropped N events this tap had no room for (the pipeline never waits
//! for a tap).

use crate::tap::TapQuery;
use std::io::{BufRead, Read, Write};
use std::net::SocketAddr;

pub fn run(addr: SocketAddr, query: &TapQuery) -> anyhow::Result<()> {
    let mut r = super::get(addr, &format!("/tap?{}", query.to_query()), None)?;
    if r.status != 200 {
        let mut text = String::new();
        r.body.read_to_string(&mut text)?;
        anyhow::bail!("{}", text.trim());
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.body.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if out.write_all(&line).and_then(|()| out.flush()).is_err() {
            return Ok(()); // stdout closed (`| head`)
        }
    }
}
