//! 75 STORAGE_PARAMETER_REQ's answer: the tracker's cluster-wide settings, one `key=value` line
//! each (PROTOCOL.md §3; a 6.16.1 tracker sends 26 of them). One codec for the tracker that
//! writes it and the storages, clients and the nginx module that read it.

/// The settings in the order they came.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parameters(Vec<(String, String)>);

impl Parameters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a setting (a key and a value without `=` or newlines, as the tracker writes them).
    pub fn push(&mut self, key: &str, value: impl ToString) {
        self.0.push((key.to_owned(), value.to_string()));
    }

    pub fn encode(&self) -> Vec<u8> {
        self.0.iter().flat_map(|(k, v)| format!("{k}={v}\n").into_bytes()).collect()
    }

    /// Reads an answer: lines without `=` are skipped, keys and values trimmed.
    pub fn decode(body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body);
        Self(
            text.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect(),
        )
    }

    /// The value of `key` (the first, should it come twice).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_read_leniently() {
        let mut p = Parameters::new();
        p.push("use_storage_id", 0);
        p.push("trunk_compress_binlog_time_base", "03:00");
        let body = p.encode();
        assert_eq!(body, b"use_storage_id=0\ntrunk_compress_binlog_time_base=03:00\n");
        assert_eq!(Parameters::decode(&body), p);
        let odd = Parameters::decode(b"no equals\n a = b \r\nc=\n");
        assert_eq!(odd.pairs(), [("a".to_owned(), "b".to_owned()), ("c".to_owned(), String::new())]);
        assert_eq!(odd.get("a"), Some("b"));
        assert_eq!(odd.get("use_storage_id"), None);
    }
}
