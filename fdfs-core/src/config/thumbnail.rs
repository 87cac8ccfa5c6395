//! The `thumbnail_*` keys of mod_fastdfs.conf (ours): which image derivatives the module asks
//! for and the storage daemon makes. Both read them from the same file (storage.conf's
//! `thumbnail_config` names it for the daemon), so the list of sizes is written once.

use super::{ConfigError, Keys};

/// How a derivative fits its box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FitMode {
    /// Scaled to fit inside the box, aspect kept, never enlarged (`_WxH`).
    Fit,
    /// Scaled to cover the box, aspect kept, then the middle cut to the box (`_WxH_fill`);
    /// nginx `image_filter crop`'s meaning. Never enlarged: a smaller source is cut only.
    Fill,
    /// The middle of the source cut to the box, not scaled (`_WxH_crop`).
    Crop,
}

impl FitMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fit" => Some(FitMode::Fit),
            "fill" => Some(FitMode::Fill),
            "crop" => Some(FitMode::Crop),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FitMode::Fit => "fit",
            FitMode::Fill => "fill",
            FitMode::Crop => "crop",
        }
    }
}

/// Largest box side a size may name (a derivative is a thumbnail, not a copy).
pub const MAX_SIDE: u32 = 4096;

#[derive(Debug, Clone, PartialEq)]
pub struct ThumbnailConfig {
    /// `thumbnail`: off by default.
    pub enabled: bool,
    /// `thumbnail_sizes = 150x150, 300x300`: the only boxes made; any other is 404.
    pub sizes: Vec<(u32, u32)>,
    /// `thumbnail_modes = fit, fill, crop` (default fit).
    pub modes: Vec<FitMode>,
    /// `thumbnail_jpeg_quality` (1-100, default 85).
    pub jpeg_quality: u8,
    /// `thumbnail_webp` (default off): a client that sends `Accept: image/webp` gets a
    /// derivative of a JPEG, PNG or GIF master as WebP, stored as a slave of its own
    /// (`<master>_<W>x<H>.webp`); every answer for a derivative then says `Vary: Accept`.
    pub webp: bool,
    /// `thumbnail_webp_quality` (1-100, default 80): lossy WebP's quality.
    pub webp_quality: u8,
    /// `thumbnail_max_source_pixels` (default 50,000,000): a larger master is refused (413)
    /// before it is decoded.
    pub max_source_pixels: u64,
    /// `thumbnail_max_source_size` (default 32 MB): a larger master is refused (413) unread.
    pub max_source_bytes: u64,
    /// `thumbnail_concurrency` (default 2): derivatives made at once; more wait, and a wait
    /// over `network_timeout` is 503.
    pub concurrency: usize,
    /// `thumbnail_maker = 127.0.0.1:8089`: the storage daemon's `http_listen`, where the module
    /// sends a request for a derivative not made yet.
    pub maker: Option<String>,
}

impl Default for ThumbnailConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            sizes: Vec::new(),
            modes: vec![FitMode::Fit],
            jpeg_quality: 85,
            webp: false,
            webp_quality: 80,
            max_source_pixels: 50_000_000,
            max_source_bytes: 32 << 20,
            concurrency: 2,
            maker: None,
        }
    }
}

/// `WxH`, both sides 1..=[`MAX_SIDE`].
pub fn parse_size(s: &str) -> Option<(u32, u32)> {
    let (w, h) = s.trim().split_once(['x', 'X'])?;
    let side = |v: &str| v.parse::<u32>().ok().filter(|n| (1..=MAX_SIDE).contains(n));
    Some((side(w)?, side(h)?))
}

impl ThumbnailConfig {
    pub fn from_keys(k: &Keys<'_>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let list = |key: &str| -> Vec<String> {
            k.string(key, "").split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect()
        };
        let sizes = list("thumbnail_sizes");
        let sizes = sizes
            .iter()
            .map(|s| parse_size(s))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad(k, "thumbnail_sizes", "a list of WxH boxes such as 150x150, 300x300"))?;
        let modes = list("thumbnail_modes");
        let modes = if modes.is_empty() {
            d.modes
        } else {
            modes
                .iter()
                .map(|m| FitMode::parse(m))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad(k, "thumbnail_modes", "a list of fit, fill and crop"))?
        };
        let config = Self {
            enabled: k.bool("thumbnail", false)?,
            sizes,
            modes,
            jpeg_quality: k.int_in("thumbnail_jpeg_quality", 85, 1..=100)? as u8,
            webp: k.bool("thumbnail_webp", false)?,
            webp_quality: k.int_in("thumbnail_webp_quality", 80, 1..=100)? as u8,
            max_source_pixels: k.int_in("thumbnail_max_source_pixels", d.max_source_pixels as i64, 1..=1 << 32)? as u64,
            max_source_bytes: k.size("thumbnail_max_source_size", d.max_source_bytes)?,
            concurrency: k.int_in("thumbnail_concurrency", 2, 1..=64)? as usize,
            maker: k.opt_string("thumbnail_maker"),
        };
        if config.enabled && config.sizes.is_empty() {
            k.warn("thumbnail", "on, but thumbnail_sizes lists no size: no derivative is made");
        }
        Ok(config)
    }

    /// Whether a derivative of this box and mode may be made.
    pub fn allows(&self, size: (u32, u32), mode: FitMode) -> bool {
        self.enabled && self.sizes.contains(&size) && self.modes.contains(&mode)
    }
}

fn bad(k: &Keys<'_>, key: &str, what: &str) -> ConfigError {
    match k.entry(key) {
        Some(e) => super::ini::value_error(e, what),
        None => ConfigError::Missing { file: std::path::PathBuf::new(), key: key.to_owned() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Ini;

    fn load(text: &str) -> Result<ThumbnailConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mod_fastdfs.conf");
        std::fs::write(&path, text).unwrap();
        let ini = Ini::load(&path).unwrap();
        ThumbnailConfig::from_keys(&ini.global())
    }

    #[test]
    fn sizes_and_modes_are_read_and_only_they_are_allowed() {
        let c = load("thumbnail = true\nthumbnail_sizes = 150x150, 300X200\nthumbnail_modes = fit, fill\n").unwrap();
        assert_eq!(c.sizes, vec![(150, 150), (300, 200)]);
        assert!(c.allows((300, 200), FitMode::Fill));
        assert!(!c.allows((300, 200), FitMode::Crop));
        assert!(!c.allows((301, 200), FitMode::Fit));
        let off = load("thumbnail_sizes = 150x150\n").unwrap();
        assert!(!off.allows((150, 150), FitMode::Fit), "off by default");
    }

    #[test]
    fn bad_values_are_refused_at_load() {
        assert!(load("thumbnail_sizes = 150x150, big\n").is_err());
        assert!(load("thumbnail_sizes = 0x150\n").is_err());
        assert!(load("thumbnail_sizes = 5000x10\n").is_err());
        assert!(load("thumbnail_modes = stretch\n").is_err());
        assert!(load("thumbnail_jpeg_quality = 101\n").is_err());
        assert!(load("thumbnail_webp_quality = 0\n").is_err());
    }
}
