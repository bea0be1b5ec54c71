//! The wire between the server and a sandbox process: length-prefixed JSON frames over the
//! process's standard input and output.
//!
//! A request is `{"id": <program id>, "source": <program source, or null if sent before>,
//! "msg": <message>}`; an answer is `{"ok": <value>}`, `{"err": "<reason>"}`, or
//! `{"unknown": true}` when the process does not hold the program (it was never sent, or the
//! process forgot it), which the server answers by sending it again with its source.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The largest frame either side accepts.
pub(crate) const MAX_FRAME: usize = 32 << 20;

/// A request, as the sandbox reads it.
#[derive(Debug, Deserialize)]
pub(crate) struct Request {
    pub(crate) id: u64,
    pub(crate) source: Option<Value>,
    pub(crate) msg: Value,
}

/// An answer.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Answer {
    Ok(Value),
    Err(String),
    Unknown(bool),
}

/// Builds a request frame's body without copying the message: `msg` is its JSON text.
pub(crate) fn request(id: u64, source: Option<&Value>, msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 64);
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(b",\"source\":");
    match source {
        Some(s) => out.extend_from_slice(s.to_string().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"msg\":");
    out.extend_from_slice(msg);
    out.push(b'}');
    out
}

/// Reads one frame (blocking).
pub(crate) fn read_frame(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a frame of {len} bytes is too large")));
    }
    let mut buf = vec![0; len];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

/// Writes one frame (blocking).
pub(crate) fn write_frame(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| io::Error::other("frame too large"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(body)?;
    w.flush()
}
