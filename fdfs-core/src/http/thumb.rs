//! Thumbnails on request: which names are derivatives of a master. A derivative is a FastDFS
//! slave file of its master named as `tobato/FastDFS_Client` names thumbnails: the master's
//! name without its extension, `_<W>x<H>` (and `_fill` / `_crop` for those modes), then the
//! master's extension: `…/wKgBAGVr1q2AZ1cxAADS9IecoKQ527_300x200.jpg` of
//! `…/wKgBAGVr1q2AZ1cxAADS9IecoKQ527.jpg`. The query form `?w=300&h=200[&mode=fill]` on the
//! master's URL names the same file.

use std::collections::HashMap;

use crate::config::thumbnail::parse_size;
use crate::config::FitMode;
use crate::file_id::{is_slave_filename, slave_filename, RemoteFilename, NORMAL_FILENAME_LEN, TRUNK_FILENAME_LEN};

/// A derivative named by a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derivative {
    /// The master's remote filename (`M00/…`).
    pub master: String,
    /// The derivative's remote filename: a slave of the master.
    pub name: String,
    pub size: (u32, u32),
    pub mode: FitMode,
}

impl Derivative {
    /// The slave prefix that names a box and mode (`_300x200`, `_300x200_fill`).
    pub fn prefix((w, h): (u32, u32), mode: FitMode) -> String {
        // Not formatted (core::fmt's machinery): the module names a derivative for a WebP client.
        let mut digits = itoa::Buffer::new();
        let mut prefix = String::with_capacity(16);
        prefix.push('_');
        prefix.push_str(digits.format(w));
        prefix.push('x');
        prefix.push_str(digits.format(h));
        if mode != FitMode::Fit {
            prefix.push('_');
            prefix.push_str(mode.name());
        }
        prefix
    }

    /// The extension of the derivative's name (the master's) as written, without the dot:
    /// what the slave is stored under.
    pub fn name_ext(&self) -> &str {
        self.name.rsplit_once('.').map_or("", |(_, e)| e)
    }

    /// The extension lowercase: which format the derivative is encoded in.
    pub fn ext(&self) -> String {
        self.name_ext().to_ascii_lowercase()
    }

    /// `remote` as a derivative's name, if it is one of a well-formed master name.
    pub fn parse(remote: &str) -> Option<Self> {
        // Every master's name has one of two lengths and a derivative's is longer by its box:
        // most requests are for masters, and this keeps them from paying for the parse.
        if remote.len() <= NORMAL_FILENAME_LEN || remote.len() == TRUNK_FILENAME_LEN {
            return None;
        }
        let (dir, file) = remote.rsplit_once('/')?;
        let (with_mode, ext) = file.rsplit_once('.')?;
        let (stem, mode) = match with_mode.rsplit_once('_') {
            Some((rest, m)) if m == "fill" || m == "crop" => (rest, FitMode::parse(m)?),
            _ => (with_mode, FitMode::Fit),
        };
        let (base, box_text) = stem.rsplit_once('_')?;
        let size = parse_size(box_text).filter(|&size| is_written_box(box_text, size))?;
        // The box written as `prefix` writes it: this name's own prefix is the one `of` makes.
        let prefix = &with_mode[base.len()..];
        let master = [dir, "/", base, ".", ext].concat();
        // Only the name `of` would give (the master's extension where a slave's goes) is the
        // derivative: compared, not made (the nginx module asks this on every miss and, with
        // `thumbnail_webp` or tokens, for every thumbnail).
        (is_slave_filename(remote, &master, prefix, ext) && RemoteFilename::check(&master, None).is_ok())
            .then(|| Self { master, name: remote.to_owned(), size, mode })
    }

    /// The derivative of `master` (a remote filename) for a box and mode.
    pub fn of(master: &str, size: (u32, u32), mode: FitMode) -> Option<Self> {
        RemoteFilename::check(master, None).ok()?;
        let ext = master.rsplit_once('.').map(|(_, e)| e)?;
        let name = slave_filename(master, &Self::prefix(size, mode), ext).ok()?;
        Some(Self { master: master.to_owned(), name, size, mode })
    }

    /// The WebP variant of a derivative of a JPEG, PNG or GIF master (`thumbnail_webp`): the
    /// master's slave of the same box and mode with the extension `webp`
    /// (`…527_300x200.webp`), served for the derivative's URL to clients that accept WebP.
    /// `None` for a derivative that is WebP already.
    pub fn as_webp(&self) -> Option<Self> {
        if self.name_ext().eq_ignore_ascii_case("webp") {
            return None;
        }
        let name = slave_filename(&self.master, &Self::prefix(self.size, self.mode), "webp").ok()?;
        Some(Self { name, ..self.clone() })
    }

    /// The query form on a master's URL: `w` and `h` (both, positive), `mode` (default fit).
    /// `None` when the query names no box; `Some(None)` when it names one badly.
    pub fn of_query(master: &str, query: &HashMap<String, String>) -> Option<Option<Self>> {
        let (w, h) = (query.get("w")?, query.get("h")?);
        let size = parse_size(&format!("{w}x{h}"));
        let mode = query.get("mode").map_or(Some(FitMode::Fit), |m| FitMode::parse(m));
        Some(size.zip(mode).and_then(|(size, mode)| Self::of(master, size, mode)))
    }
}

/// Whether `text` is the box `size` as [`Derivative::prefix`] writes it: `300x200`, not
/// `0300x200`, `300X200` or `+300x200`.
fn is_written_box(text: &str, (w, h): (u32, u32)) -> bool {
    let (mut wd, mut hd) = (itoa::Buffer::new(), itoa::Buffer::new());
    text.split_once('x').is_some_and(|(tw, th)| tw == wd.format(w) && th == hd.format(h))
}

/// Whether an `Accept` header's value takes `image/webp` (named, not through `image/*` or
/// `*/*`: browsers that decode WebP name it, and a client that does not may still send
/// `*/*`), and not with `q=0`.
pub fn accepts_webp(accept: &[u8]) -> bool {
    let Ok(accept) = std::str::from_utf8(accept) else { return false };
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        parts.next().is_some_and(|t| t.eq_ignore_ascii_case("image/webp"))
            && !parts.any(|p| {
                p.split_once('=')
                    .is_some_and(|(k, v)| k.trim() == "q" && v.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &str = "M00/00/00/wKgBAGVr1q2AZ1cxAADS9IecoKQ527.jpg";

    #[test]
    fn a_thumbnail_name_is_a_slave_of_its_master() {
        let d = Derivative::parse("M00/00/00/wKgBAGVr1q2AZ1cxAADS9IecoKQ527_300x200.jpg").unwrap();
        assert_eq!((d.master.as_str(), d.size, d.mode), (MASTER, (300, 200), FitMode::Fit));
        assert_eq!(d.ext(), "jpg");
        // Stored under the prefix and the extension as written, a slave gets the same name
        // (an upper-case extension stays upper-case).
        let upper = Derivative::of("M00/00/00/wKgBAGVr1q2AZ1cxAADS9IecoKQ527.JPG", (300, 200), FitMode::Fit).unwrap();
        assert_eq!((upper.ext(), upper.name_ext()), ("jpg".to_owned(), "JPG"));
        let stored = slave_filename(&upper.master, &Derivative::prefix(upper.size, upper.mode), upper.name_ext());
        assert_eq!(stored.unwrap(), upper.name);
        let fill = Derivative::parse("M00/00/00/wKgBAGVr1q2AZ1cxAADS9IecoKQ527_150x150_fill.jpg").unwrap();
        assert_eq!((fill.master.as_str(), fill.mode), (MASTER, FitMode::Fill));
        // The name form and the query form name the same file.
        let q: HashMap<String, String> = [("w", "150"), ("h", "150"), ("mode", "fill")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(Derivative::of_query(MASTER, &q), Some(Some(fill)));
    }

    #[test]
    fn a_webp_variant_is_the_same_box_as_a_webp_slave() {
        let d = Derivative::parse("M00/00/00/wKgBAGVr1q2AZ1cxAADS9IecoKQ527_300x200_fill.jpg").unwrap();
        let w = d.as_webp().unwrap();
        assert_eq!(w.name, "M00/00/00/wKgBAGVr1q2AZ1cxAADS9IecoKQ527_300x200_fill.webp");
        assert_eq!((w.master.as_str(), w.size, w.mode, w.ext().as_str()), (MASTER, (300, 200), FitMode::Fill, "webp"));
        let of_webp = Derivative::of("M00/00/00/wKgBAGVr1q2AZ1cxAADS9IecoKQ527.webp", (300, 200), FitMode::Fit);
        assert_eq!(of_webp.unwrap().as_webp(), None, "a WebP master's derivative is WebP already");
    }

    #[test]
    fn a_prefix_names_its_box_and_mode() {
        assert_eq!(Derivative::prefix((300, 200), FitMode::Fit), "_300x200");
        assert_eq!(Derivative::prefix((4096, 1), FitMode::Fill), "_4096x1_fill");
        assert_eq!(Derivative::prefix((10, 0), FitMode::Crop), "_10x0_crop");
    }

    #[test]
    fn accept_names_webp_or_not() {
        // Chromium's for an <img>.
        assert!(accepts_webp(b"image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"));
        assert!(accepts_webp(b"image/WebP;q=0.5"));
        assert!(!accepts_webp(b"image/webp;q=0"));
        assert!(!accepts_webp(b"*/*"));
        assert!(!accepts_webp(b"image/*,image/webpx"));
        assert!(!accepts_webp(b"\xff"));
    }

    #[test]
    fn masters_and_malformed_names_are_not_derivatives() {
        assert_eq!(Derivative::parse(MASTER), None);
        // A name whose base64 ends in `_<digits>x<digits>` is too short to leave a master.
        assert_eq!(Derivative::parse("M00/00/00/wKgB_3x4.jpg"), None);
        assert_eq!(Derivative::parse("M00/00/00/wKgBAGVr1q2AZ1cxAADS9IecoKQ527_0x200.jpg"), None);
        assert_eq!(Derivative::parse("M00/00/00/wKgBAGVr1q2AZ1cxAADS9IecoKQ527_300x200_blur.jpg"), None);
        assert_eq!(Derivative::parse("M00/00/00/wKgBAGVr1q2AZ1cxAADS9IecoKQ527_99999x2.jpg"), None);
        // Only the box as the prefix writes it: another spelling is another (uploaded) slave.
        for other in ["0300x200", "300X200", "+300x200", "300x200 ", "300x0200"] {
            assert_eq!(Derivative::parse(&format!("M00/00/00/wKgBAGVr1q2AZ1cxAADS9IecoKQ527_{other}.jpg")), None);
        }
        // The master's extension is the one after the last dot of its formatted extension.
        assert_eq!(Derivative::parse("M00/00/00/wKgBAGVr1q2AZ1cxAADS9IecoKQ5.7_300x200.jpg"), None);
        // The master's core must be base64 the name's own check would take.
        assert_eq!(Derivative::parse("M00/00/00/wKgBAGVr1q2AZ1cxAADS9IecoK!527_300x200.jpg"), None);
        let q: HashMap<String, String> = [("w".to_string(), "300".to_string())].into_iter().collect();
        assert_eq!(Derivative::of_query(MASTER, &q), None, "no box named");
        let q: HashMap<String, String> =
            [("w", "300"), ("h", "x")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(Derivative::of_query(MASTER, &q), Some(None), "a box named badly");
    }
}
