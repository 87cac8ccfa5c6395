//! The libfastcommon INI dialect FastDFS's `.conf` files are written in (PROTOCOL.md §8.1):
//! `key = value`, `#` comments, `[section]`s, repeated keys, and `#include <file>` relative to
//! the including file. Every value remembers its file and line so errors can name them.

use std::path::{Path, PathBuf};

use super::ConfigError;

/// Includes deeper than this are refused (a file including itself would never end).
const MAX_INCLUDE_DEPTH: usize = 8;
/// Config files are small; anything bigger is not a config file.
const MAX_FILE_SIZE: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub section: Option<String>,
    pub key: String,
    pub value: String,
    pub file: PathBuf,
    pub line: usize,
}

/// A parsed file (with its includes), entries in file order.
#[derive(Debug, Clone, Default)]
pub struct Ini {
    pub path: PathBuf,
    pub entries: Vec<Entry>,
    /// What reading the values found worth telling the operator (the daemons log these once
    /// their log is open).
    warnings: std::cell::RefCell<Vec<String>>,
    /// The entries a parser has looked up (by index): what is left was never read.
    read: std::cell::RefCell<std::collections::BTreeSet<usize>>,
}

impl Ini {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut ini = Ini { path: path.to_owned(), entries: Vec::new(), ..Default::default() };
        ini.load_into(path, None, 0)?;
        Ok(ini)
    }

    /// Reads a state file a daemon wrote itself (the tracker's `*.dat`): no includes, and a
    /// line that is not `key = value` is reported and skipped, so one damaged line never stops
    /// a restart.
    pub fn load_state(path: &Path) -> Result<Self, ConfigError> {
        let io = |e| ConfigError::Io { file: path.to_owned(), source: e };
        if std::fs::metadata(path).map_err(io)?.len() > MAX_FILE_SIZE {
            return Err(ConfigError::Syntax { file: path.to_owned(), line: 0, msg: "file too large".into() });
        }
        let text = String::from_utf8_lossy(&std::fs::read(path).map_err(io)?).into_owned();
        let mut ini = Ini { path: path.to_owned(), entries: Vec::new(), ..Default::default() };
        let mut section = None;
        ini.parse_lines(&text, path, &mut section, 0, true)?;
        Ok(ini)
    }

    /// Parses text as if it were the file `path` (includes resolve relative to it).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut ini = Ini { path: path.to_owned(), entries: Vec::new(), ..Default::default() };
        let mut section = None;
        ini.parse_into(text, path, &mut section, 0)?;
        Ok(ini)
    }

    fn load_into(&mut self, path: &Path, section: Option<String>, depth: usize) -> Result<(), ConfigError> {
        let io = |e| ConfigError::Io { file: path.to_owned(), source: e };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.len() > MAX_FILE_SIZE {
            return Err(ConfigError::Syntax { file: path.to_owned(), line: 0, msg: "file too large".into() });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let mut section = section;
        self.parse_into(&text, path, &mut section, depth)
    }

    fn parse_into(
        &mut self,
        text: &str,
        path: &Path,
        section: &mut Option<String>,
        depth: usize,
    ) -> Result<(), ConfigError> {
        self.parse_lines(text, path, section, depth, false)
    }

    fn parse_lines(
        &mut self,
        text: &str,
        path: &Path,
        section: &mut Option<String>,
        depth: usize,
        state_file: bool,
    ) -> Result<(), ConfigError> {
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if let Some(inc) = l.strip_prefix("#include").filter(|_| !state_file) {
                let inc = inc.trim();
                if inc.is_empty() || !raw.trim_start().starts_with("#include ") {
                    continue;
                }
                if depth >= MAX_INCLUDE_DEPTH {
                    return Err(ConfigError::Syntax {
                        file: path.to_owned(),
                        line,
                        msg: "includes nested too deep".into(),
                    });
                }
                let target = path.parent().unwrap_or(Path::new(".")).join(inc);
                self.load_into(&target, section.clone(), depth + 1)?;
                continue;
            }
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if let Some(name) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                *section = Some(name.trim().to_owned());
                continue;
            }
            let Some((k, v)) = l.split_once('=').filter(|(k, _)| !k.trim().is_empty()) else {
                if state_file {
                    tracing::warn!("{}:{line}: not key=value, skipped: {l:?}", path.display());
                    continue;
                }
                return Err(ConfigError::Syntax {
                    file: path.to_owned(),
                    line,
                    msg: format!("expected key = value, got {l:?}"),
                });
            };
            let key = k.trim();
            if key.is_empty() {
                return Err(ConfigError::Syntax { file: path.to_owned(), line, msg: "empty key".into() });
            }
            self.entries.push(Entry {
                section: section.clone(),
                key: key.to_owned(),
                value: v.trim().to_owned(),
                file: path.to_owned(),
                line,
            });
        }
        Ok(())
    }

    pub fn warn(&self, msg: String) {
        self.warnings.borrow_mut().push(msg);
    }

    /// The entries no parser looked up: keys a config type neither honours nor warns about
    /// (the test over C's sample configs requires none).
    pub fn unread(&self) -> Vec<&Entry> {
        let read = self.read.borrow();
        self.entries.iter().enumerate().filter(|(i, _)| !read.contains(i)).map(|(_, e)| e).collect()
    }

    /// The warnings gathered so far, for the config struct to carry.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut self.warnings.borrow_mut())
    }

    /// Typed access to the keys of one section (`None` = before any section).
    pub fn section(&self, section: Option<&str>) -> Keys<'_> {
        Keys { ini: self, section: section.map(str::to_owned) }
    }

    pub fn global(&self) -> Keys<'_> {
        self.section(None)
    }

    pub fn has_section(&self, name: &str) -> bool {
        self.entries.iter().any(|e| e.section.as_deref() == Some(name))
    }
}

/// Typed getters over one section. Absent keys give the default; present but malformed ones
/// give an error naming file, line and key.
#[derive(Debug, Clone)]
pub struct Keys<'a> {
    ini: &'a Ini,
    section: Option<String>,
}

impl<'a> Keys<'a> {
    /// Notes a warning about `key` (with its file and line when present).
    pub fn warn(&self, key: &str, msg: &str) {
        let at = self.entry(key).map(|e| format!("{}:{}: ", e.file.display(), e.line)).unwrap_or_default();
        self.ini.warn(format!("{at}{key}: {msg}"));
    }

    /// The first value of `key` (libfastcommon returns the first of repeated single keys).
    pub fn entry(&self, key: &str) -> Option<&'a Entry> {
        let (i, e) = self.ini.entries.iter().enumerate().find(|(_, e)| e.key == key && e.section == self.section)?;
        self.ini.read.borrow_mut().insert(i);
        Some(e)
    }

    pub fn all(&self, key: &str) -> Vec<&'a Entry> {
        let found: Vec<(usize, &'a Entry)> =
            self.ini.entries.iter().enumerate().filter(|(_, e)| e.key == key && e.section == self.section).collect();
        self.ini.read.borrow_mut().extend(found.iter().map(|(i, _)| *i));
        found.into_iter().map(|(_, e)| e).collect()
    }

    pub fn strings(&self, key: &str) -> Vec<String> {
        self.all(key).into_iter().map(|e| e.value.clone()).collect()
    }

    pub fn string(&self, key: &str, default: &str) -> String {
        self.entry(key).map_or_else(|| default.to_owned(), |e| e.value.clone())
    }

    pub fn opt_string(&self, key: &str) -> Option<String> {
        self.entry(key).map(|e| e.value.clone()).filter(|v| !v.is_empty())
    }

    pub fn required(&self, key: &str) -> Result<&'a Entry, ConfigError> {
        self.entry(key)
            .filter(|e| !e.value.is_empty())
            .ok_or_else(|| ConfigError::Missing { file: self.ini.path.clone(), key: key.to_owned() })
    }

    /// A value read with `parse`; `what` names the expected form in the error.
    pub fn parsed<T>(
        &self,
        key: &str,
        default: T,
        parse: impl Fn(&str) -> Option<T>,
        what: &str,
    ) -> Result<T, ConfigError> {
        match self.entry(key) {
            None => Ok(default),
            Some(e) if e.value.is_empty() => Ok(default),
            Some(e) => parse(&e.value).ok_or_else(|| value_error(e, what)),
        }
    }

    pub fn int(&self, key: &str, default: i64) -> Result<i64, ConfigError> {
        self.parsed(key, default, |v| v.parse().ok(), "an integer")
    }

    /// An integer that must lie in `range`.
    pub fn int_in(&self, key: &str, default: i64, range: std::ops::RangeInclusive<i64>) -> Result<i64, ConfigError> {
        let v = self.int(key, default)?;
        if !range.contains(&v) {
            let e = self.entry(key).expect("an out-of-range value came from the file");
            return Err(value_error(e, &format!("between {} and {}", range.start(), range.end())));
        }
        Ok(v)
    }

    pub fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        Ok(self.entry(key).map_or(default, |e| parse_bool(&e.value)))
    }

    /// Byte sizes with optional K/M/G/T (powers of 1024, optional trailing `B`).
    pub fn size(&self, key: &str, default: u64) -> Result<u64, ConfigError> {
        self.parsed(key, default, parse_size, "a size such as 256KB")
    }

    /// `HH:MM`.
    pub fn time_of_day(&self, key: &str, default: (u8, u8)) -> Result<(u8, u8), ConfigError> {
        self.parsed(key, default, parse_time_of_day, "a time HH:MM")
    }
}

pub(crate) fn value_error(e: &Entry, what: &str) -> ConfigError {
    ConfigError::Value {
        file: e.file.clone(),
        line: e.line,
        key: e.key.clone(),
        msg: format!("{:?} is not {what}", e.value),
    }
}

/// `true`, `yes`, `on` (any case) and `1` are true; anything else is false, as libfastcommon.
pub fn parse_bool(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "on" | "1")
}

pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let upper = v.to_ascii_uppercase();
    let body = upper.strip_suffix('B').filter(|b| b.ends_with(|c: char| "KMGT".contains(c))).unwrap_or(&upper);
    let (num, shift) = match body.as_bytes().last()? {
        b'K' => (&body[..body.len() - 1], 10),
        b'M' => (&body[..body.len() - 1], 20),
        b'G' => (&body[..body.len() - 1], 30),
        b'T' => (&body[..body.len() - 1], 40),
        _ => (body, 0),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

pub fn parse_time_of_day(v: &str) -> Option<(u8, u8)> {
    let (h, m) = v.split_once(':')?;
    let (h, m) = (h.trim().parse::<u8>().ok()?, m.trim().parse::<u8>().ok()?);
    (h < 24 && m < 60).then_some((h, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax() {
        let ini = Ini::parse(
            "# comment\n  port = 22122 \ntracker_server=a:1\ntracker_server = b:2\n\n[group1]\nstore_path0=/x\n",
            Path::new("t.conf"),
        )
        .unwrap();
        let g = ini.global();
        assert_eq!(g.int("port", 0).unwrap(), 22122);
        assert_eq!(g.strings("tracker_server"), vec!["a:1", "b:2"]);
        assert_eq!(ini.section(Some("group1")).string("store_path0", ""), "/x");
        assert_eq!(g.entry("store_path0"), None);
        assert_eq!(g.entry("port").unwrap().line, 2);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let ini = Ini::parse("port = abc\n", Path::new("/etc/fdfs/tracker.conf")).unwrap();
        let e = ini.global().int("port", 0).unwrap_err().to_string();
        assert_eq!(e, "/etc/fdfs/tracker.conf:1: port: \"abc\" is not an integer");
        let e = Ini::parse("x\n", Path::new("a.conf")).unwrap_err().to_string();
        assert!(e.starts_with("a.conf:1:"), "{e}");
        let e = ini.global().required("base_path").unwrap_err().to_string();
        assert!(e.contains("base_path"), "{e}");
    }

    #[test]
    fn values() {
        for (v, want) in [("256KB", 256 << 10), ("64k", 64 << 10), ("1G", 1 << 30), ("10", 10), ("2MB", 2 << 20)] {
            assert_eq!(parse_size(v), Some(want), "{v}");
        }
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("99999999999T"), None);
        for t in ["true", "Yes", "ON", "1"] {
            assert!(parse_bool(t));
        }
        for f in ["false", "no", "0", "", "2"] {
            assert!(!parse_bool(f));
        }
        assert_eq!(parse_time_of_day("02:30"), Some((2, 30)));
        assert_eq!(parse_time_of_day("24:00"), None);
    }

    #[test]
    fn includes_resolve_relative_and_stop_at_depth() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("http.conf"), "http.anti_steal.check_token = true\n").unwrap();
        std::fs::write(dir.path().join("mod.conf"), "a = 1\n#include http.conf\n# include nothing\n").unwrap();
        let ini = Ini::load(&dir.path().join("mod.conf")).unwrap();
        assert!(ini.global().bool("http.anti_steal.check_token", false).unwrap());
        std::fs::write(dir.path().join("loop.conf"), "#include loop.conf\n").unwrap();
        assert!(Ini::load(&dir.path().join("loop.conf")).is_err());
        assert!(Ini::load(&dir.path().join("missing.conf")).is_err());
    }
}
