//! Content signatures: C's `STORAGE_GEN_FILE_SIGNATURE` layout (size, then four hash codes or
//! MD5) followed by the SHA-256 that makes sharing safe.

use std::path::Path;

use md5::Digest;

use crate::config::SignatureMethod;
use crate::storage::paths::StorePaths;

/// Size (8 bytes, big-endian) then 16 bytes of hash codes or MD5 (C's `FILE_SIGNATURE_SIZE`),
/// then the content's SHA-256. C's signature alone is no proof of equal content: a collision
/// of its hash codes is built in a fraction of a second and MD5 collisions are public, and
/// sharing on one would serve an attacker's bytes under a victim's file ID. Content is shared
/// only when the SHA-256 agrees too.
pub const SIGNATURE_LEN: usize = 24 + 32;
pub type Signature = [u8; SIGNATURE_LEN];

/// Computes a content's signature as C's `STORAGE_GEN_FILE_SIGNATURE` lays it out, in pieces.
#[derive(Debug, Clone)]
pub struct Signer {
    method: SignatureMethod,
    size: u64,
    crc: crc32fast::Hasher,
    elf: i32,
    simple: i32,
    time33: i32,
    md5: md5::Md5,
    sha256: sha2::Sha256,
}

impl Signer {
    pub fn new(method: SignatureMethod) -> Self {
        let (crc, md5, sha256) = (crc32fast::Hasher::new(), md5::Md5::new(), sha2::Sha256::new());
        Signer { method, size: 0, crc, elf: 0, simple: 0, time33: 0, md5, sha256 }
    }

    /// libfastcommon's `CALC_HASH_CODES4` (CRC32, ELFHash, simple_hash, Time33Hash, on C's
    /// signed 32-bit ints: the shifts are arithmetic, the sums wrap).
    pub fn update(&mut self, data: &[u8]) {
        self.size += data.len() as u64;
        self.sha256.update(data);
        match self.method {
            SignatureMethod::Md5 => self.md5.update(data),
            SignatureMethod::Hash => {
                self.crc.update(data);
                for &b in data {
                    let b = i32::from(b);
                    self.elf = (self.elf << 4).wrapping_add(b);
                    let x = (self.elf as u32 & 0xF000_0000) as i32;
                    if x != 0 {
                        self.elf ^= x >> 24;
                        self.elf &= !x;
                    }
                    self.simple = self.simple.wrapping_mul(31).wrapping_add(b);
                    self.time33 = self.time33.wrapping_add((self.time33 << 5).wrapping_add(b));
                }
            }
        }
    }

    pub fn finish(self) -> Signature {
        let mut sig = [0u8; SIGNATURE_LEN];
        sig[..8].copy_from_slice(&self.size.to_be_bytes());
        sig[24..].copy_from_slice(&self.sha256.finalize());
        match self.method {
            SignatureMethod::Md5 => sig[8..24].copy_from_slice(&self.md5.finalize()),
            SignatureMethod::Hash => {
                let codes = [self.crc.finalize() as i32, self.elf, self.simple, self.time33];
                for (i, c) in codes.iter().enumerate() {
                    sig[8 + 4 * i..12 + 4 * i].copy_from_slice(&c.to_be_bytes());
                }
            }
        }
        sig
    }

    pub fn of_bytes(method: SignatureMethod, data: &[u8]) -> Signature {
        let mut s = Signer::new(method);
        s.update(data);
        s.finish()
    }

    pub fn of_file(method: SignatureMethod, path: &Path) -> std::io::Result<Signature> {
        Self::of_reader(method, std::fs::File::open(path)?)
    }

    /// The signature of `len` bytes of `file` from `offset` (a trunk slot's content).
    pub fn of_range(
        method: SignatureMethod,
        file: &std::fs::File,
        offset: u64,
        len: u64,
    ) -> std::io::Result<Signature> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = file.try_clone()?;
        f.seek(SeekFrom::Start(offset))?;
        let sig = Self::of_reader(method, f.take(len))?;
        if u64::from_be_bytes(sig[..8].try_into().unwrap_or_default()) != len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(sig)
    }

    fn of_reader(method: SignatureMethod, mut r: impl std::io::Read) -> std::io::Result<Signature> {
        let mut s = Signer::new(method);
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(s.finish());
            }
            s.update(&buf[..n]);
        }
    }
}

/// The content of the file `name` names in `paths` as it is stored: its regular file, or its
/// trunk slot (holding a file, not a link). `None` when it is not there.
pub fn sign_stored(paths: &StorePaths, method: SignatureMethod, name: &str) -> Option<std::io::Result<Signature>> {
    let n = crate::file_id::RemoteFilename::parse(name, Some(paths.paths.len())).ok()?;
    if crate::trunk::is_trunk_name(&n) {
        let root = &paths.paths.get(n.store_path_index as usize)?.root;
        return match crate::trunk::open(&n, root) {
            Ok(Some(slot)) if slot.kind == crate::trunk::SlotKind::File => {
                Some(Signer::of_range(method, &slot.file, slot.content_offset, slot.size))
            }
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        };
    }
    let path = paths.local_path(&n).filter(|p| p.is_file())?;
    Some(Signer::of_file(method, &path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_signature_is_size_then_four_codes() {
        let sig = Signer::of_bytes(SignatureMethod::Hash, b"abc");
        assert_eq!(&sig[..8], &3u64.to_be_bytes());
        assert_eq!(&sig[8..12], &crc32fast::hash(b"abc").to_be_bytes());
        // ELF: ((a << 4) + b) << 4 + c, no high bits yet.
        let elf = ((i32::from(b'a') << 4) + i32::from(b'b')) * 16 + i32::from(b'c');
        assert_eq!(&sig[12..16], &elf.to_be_bytes());
        // simple: 31-based, Time33: 33-based polynomial.
        let simple = (i32::from(b'a') * 31 + i32::from(b'b')) * 31 + i32::from(b'c');
        assert_eq!(&sig[16..20], &simple.to_be_bytes());
        let t33 = (i32::from(b'a') * 33 + i32::from(b'b')) * 33 + i32::from(b'c');
        assert_eq!(&sig[20..24], &t33.to_be_bytes());
    }

    #[test]
    fn signatures_do_not_depend_on_how_content_is_split() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        for method in [SignatureMethod::Hash, SignatureMethod::Md5] {
            let mut s = Signer::new(method);
            for piece in data.chunks(333) {
                s.update(piece);
            }
            assert_eq!(s.finish(), Signer::of_bytes(method, &data));
        }
        let mut other = data.clone();
        other[5000] ^= 1;
        assert_ne!(Signer::of_bytes(SignatureMethod::Hash, &data), Signer::of_bytes(SignatureMethod::Hash, &other));
        let md5 = Signer::of_bytes(SignatureMethod::Md5, &data);
        assert_eq!(&md5[8..24], &md5::Md5::digest(&data)[..]);
    }
}
