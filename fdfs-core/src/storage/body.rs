//! Content received for a new file, on its way to a name: in memory when small, already in a
//! temp file of its store path when large.

use std::time::SystemTime;

use super::dedup::{Signature, Signer};
use super::disk::{write_temp, Writer};
use crate::durable::TempFile;

/// Received content, on its way to a name.
pub(crate) enum Body {
    /// Small content, still in memory: the writer job writes it.
    Bytes(Vec<u8>),
    /// Large content, already streamed into a temp file.
    File(TempFile),
}

impl Body {
    /// The content as a temp file of the writer's store path, with its modification time.
    pub(crate) fn into_temp(self, w: &Writer, mtime: SystemTime) -> std::io::Result<TempFile> {
        match self {
            Body::Bytes(b) => write_temp(w, &b, mtime),
            Body::File(mut t) => {
                t.file().set_modified(mtime)?;
                Ok(t)
            }
        }
    }

    /// The content's de-duplication signature.
    pub(crate) fn signature(&self, method: crate::config::SignatureMethod) -> std::io::Result<Signature> {
        match self {
            Body::Bytes(b) => Ok(Signer::of_bytes(method, b)),
            Body::File(t) => Signer::of_file(method, t.path()),
        }
    }
}
