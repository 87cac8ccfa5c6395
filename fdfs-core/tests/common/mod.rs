//! What the golden-capture tests share: the recorded traffic, in the repository's test data.

use std::path::PathBuf;

/// The text of `tests/data/captures/<file>` (real FastDFS 6.16.1 traffic, copied from
/// `shared/captures`).
pub fn capture(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/captures").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
