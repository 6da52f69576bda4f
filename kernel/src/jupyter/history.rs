//! In-memory execution history of this kernel session, for `history_request`: every stored
//! (non-silent, `store_history`) execute request's code under its execution count.
//!
//! The session is numbered 1 (there is no history database, so earlier sessions are not
//! known). Supported access types: `tail` (the last `n`), `range` (lines `start..stop` of
//! session 0 = current, or 1), and `search` (a glob with `*` and `?`, optionally `unique`).
//! Outputs are not kept: with `output: true` each entry's output is `null`.

use serde_json::{json, Value};

/// The number this session reports.
pub const SESSION: i64 = 1;

/// The inputs run so far.
#[derive(Debug, Default)]
pub struct History {
    entries: Vec<(usize, String)>,
}

/// Does `text` match the glob `pattern` (`*` any run, `?` one character)?
fn glob_match(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|i| glob_match(rest, &text[i..])),
        Some(('?', rest)) => !text.is_empty() && glob_match(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob_match(rest, &text[1..]),
    }
}

impl History {
    /// Records the code run as `execution_count`.
    pub fn record(&mut self, execution_count: usize, code: &str) {
        self.entries.push((execution_count, code.to_string()));
    }

    /// Answers a `history_request` content with the `history` list of its reply.
    pub fn query(&self, request: &Value) -> Vec<Value> {
        let output = request["output"].as_bool().unwrap_or(false);
        let n = request["n"].as_u64().map(|n| n as usize);
        let selected: Vec<&(usize, String)> = match request["hist_access_type"].as_str() {
            Some("range") => {
                let session = request["session"].as_i64().unwrap_or(0);
                if session != 0 && session != SESSION {
                    return Vec::new();
                }
                let start = request["start"].as_u64().unwrap_or(0) as usize;
                let stop = request["stop"].as_u64().map_or(usize::MAX, |s| s as usize);
                self.entries
                    .iter()
                    .filter(|(line, _)| *line >= start && *line < stop)
                    .collect()
            }
            Some("search") => {
                let pattern: Vec<char> =
                    request["pattern"].as_str().unwrap_or("*").chars().collect();
                let unique = request["unique"].as_bool().unwrap_or(false);
                let mut hits: Vec<&(usize, String)> = Vec::new();
                for entry in self.entries.iter().rev() {
                    let text: Vec<char> = entry.1.chars().collect();
                    if glob_match(&pattern, &text)
                        && !(unique && hits.iter().any(|h| h.1 == entry.1))
                    {
                        hits.push(entry);
                    }
                }
                hits.truncate(n.unwrap_or(usize::MAX));
                hits.reverse();
                hits
            }
            _ => {
                let n = n.unwrap_or(10).min(self.entries.len());
                self.entries[self.entries.len() - n..].iter().collect()
            }
        };
        selected
            .into_iter()
            .map(|(line, code)| {
                if output {
                    json!([SESSION, line, [code, null]])
                } else {
                    json!([SESSION, line, code])
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> History {
        let mut h = History::default();
        for (i, code) in ["let a = 1;", "a + 1", "6 * 7", "a + 1"].iter().enumerate() {
            h.record(i + 1, code);
        }
        h
    }

    #[test]
    fn tail_range_and_search() {
        let h = history();
        let tail = h.query(&json!({"hist_access_type": "tail", "n": 2}));
        assert_eq!(tail, vec![json!([1, 3, "6 * 7"]), json!([1, 4, "a + 1"])]);
        let range =
            h.query(&json!({"hist_access_type": "range", "session": 0, "start": 2, "stop": 3}));
        assert_eq!(range, vec![json!([1, 2, "a + 1"])]);
        let search =
            h.query(&json!({"hist_access_type": "search", "pattern": "*a*", "unique": true}));
        assert_eq!(
            search,
            vec![json!([1, 1, "let a = 1;"]), json!([1, 4, "a + 1"])]
        );
        let with_output = h.query(&json!({"hist_access_type": "tail", "n": 1, "output": true}));
        assert_eq!(with_output, vec![json!([1, 4, ["a + 1", null]])]);
        assert!(h
            .query(&json!({"hist_access_type": "range", "session": 7}))
            .is_empty());
    }
}
