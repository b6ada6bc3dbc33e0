//! The example room: a chat log.

use crate::room::chain::Reducer;

/// The longest line accepted.
pub const MAX_LINE: usize = 4096;

/// A chat log: each write is one UTF-8 line (at most [`MAX_LINE`] bytes)
/// appended to the log; the state is the lines, each prefixed with its
/// length as a big-endian `u32`.
///
/// ```
/// use reactor_gossip_proto::room::{ChatLog, Reducer};
/// let mut state = Vec::new();
/// ChatLog.reduce(&mut state, b"hello").unwrap();
/// ChatLog.reduce(&mut state, b"world").unwrap();
/// assert_eq!(ChatLog::lines(&state), vec!["hello", "world"]);
/// assert!(ChatLog.reduce(&mut state, &[0xff]).is_err());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ChatLog;

impl Reducer for ChatLog {
    fn reduce(&self, state: &mut Vec<u8>, update: &[u8]) -> Result<(), String> {
        if update.len() > MAX_LINE {
            return Err(format!(
                "a line of {} bytes, at most {MAX_LINE}",
                update.len()
            ));
        }
        std::str::from_utf8(update).map_err(|e| format!("not UTF-8: {e}"))?;
        state.extend_from_slice(&(update.len() as u32).to_be_bytes());
        state.extend_from_slice(update);
        Ok(())
    }
}

impl ChatLog {
    /// The lines of a chat log state (a malformed tail is ignored).
    pub fn lines(state: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut rest = state;
        while rest.len() >= 4 {
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let Some(line) = rest.get(4..4 + len) else {
                break;
            };
            lines.push(String::from_utf8_lossy(line).into_owned());
            rest = &rest[4 + len..];
        }
        lines
    }
}
