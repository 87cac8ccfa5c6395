//! The nginx module's request logic (PROTOCOL.md §9) in plain Rust: from a request's path and
//! query to what to do — serve a local file, answer 4xx, or send the client to (or fetch from)
//! the storage that owns the file. The module in `ngx-fastdfs/` only does the FFI around it.

mod args;
mod members;
mod thumb;
mod token;

use std::cell::OnceCell;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use args::{parse_args, percent_decode};
pub use members::{Member, Members, Wanted, MEMBERS_TTL_SECS};
pub use thumb::{accepts_webp, Derivative};
pub use token::{anti_steal_token, check_token, TokenError};

use crate::config::{ModFastdfsConfig, ResponseMode, StorageIds};
use crate::file_id::{FileType, RemoteFilename, Source, NORMAL_FILENAME_LEN, TRUNK_FILENAME_LEN};

/// What to do when a file that could be local is not on this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// It should be here (same group and we wrote it, or it is old enough to be everywhere):
    /// if it is not, fetch it from / send the client to a member that holds it
    /// ([`Settings::holder`]), else 404. `source` is who wrote it (its address, when asked,
    /// from [`Settings::source_host`]: most files are found here and never need it).
    Elsewhere { source: Source, mode: ResponseMode },
    /// It should be here and the request already went through a hop: 404.
    NotFound,
    /// Fetch it from / send the client to the storage that wrote it (its address, when asked,
    /// from [`Settings::source_host`]: a file another member wrote is mostly found here too).
    Remote { source: Source, mode: ResponseMode },
    /// The request already went through a redirect or proxy hop: refuse to loop.
    Loop,
    /// A name carrying a server ID we cannot map to an address.
    UnknownSource,
}

/// A request that names a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub group: String,
    pub remote: RemoteFilename,
    /// Where the file is on this server (None: another group, never local). For a trunk name
    /// (see [`crate::trunk`]) the bytes are in a slot of a trunk file under `store_root` instead.
    pub local_path: Option<PathBuf>,
    /// The store path the name selects on this server.
    pub store_root: Option<PathBuf>,
    pub if_missing: Missing,
    /// A strong validator for normal files, from the CRC32 and size in the name.
    pub etag: Option<String>,
    /// `?filename=` asked for `Content-Disposition: attachment`.
    pub attachment: Option<String>,
    pub file_type: FileType,
    /// FLV pseudo-streaming (`flv_support`): serve from this byte (and up to `end`) with 200.
    pub flv: Option<FlvRange>,
    /// A thumbnail this server may have made (`thumbnail_*`): `remote` is its name; when it is
    /// not here yet and its master is, the storage daemon makes it ([`Settings::maker_url`]).
    /// Asked for through [`Settings::derivative`]: a stored derivative is served as any file,
    /// so the name form is only parsed when something needs it (a miss, WebP, tokens).
    derivative: OnceCell<Option<Derivative>>,
}

/// `?start=N[&end=M]` on an FLV file (PROTOCOL.md §9.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlvRange {
    pub start: u64,
    pub end: Option<u64>,
}

/// Sent before the data when an FLV is served from a non-zero offset.
pub const FLV_HEADER: [u8; 13] = [0x46, 0x4C, 0x56, 0x01, 0x01, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x09];

impl FlvRange {
    /// The byte range to send of a file of `size` bytes, or `None` (400) when it is outside.
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        let end = self.end.map_or(size, |e| e.min(size));
        (self.start < size && self.start <= end).then_some((self.start, end))
    }
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
// Not boxed: a Route lives on the stack for one request, and a box would be an allocation on
// every request the module serves.
#[allow(clippy::large_enum_variant)]
pub enum Route {
    Serve(Target),
    /// Answer this status (nginx renders its error page).
    Reject(u16, &'static str),
    /// Token refused: serve this file with 200, or 400 when none is configured.
    TokenFail(Option<PathBuf>),
}

/// Everything the decision needs that does not come from the request.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: ModFastdfsConfig,
    pub ids: Option<StorageIds>,
    /// This host's addresses: a missing file whose source is one of them should be here.
    pub local_ips: Vec<IpAddr>,
    /// The groups' members, for a file that should be here and is not.
    pub members: Arc<Members>,
}

/// The minimum URL length the original accepts.
const MIN_URL_LEN: usize = 16;
/// `Mxx/HH/LL/` + a 12-character name at least (the original's 22-character floor).
const MIN_FILE_ID_LEN: usize = 22;

impl Settings {
    /// Decides what to do with `path` (nginx's decoded URI) and `args` (the raw query);
    /// `server_ip` is the address the request came in on (also one of ours).
    pub fn route(&self, path: &str, args: &str, server_ip: Option<IpAddr>, bypass_token: bool, now: i64) -> Route {
        let cfg = &self.config;
        if path.len() + args.len() + 1 < MIN_URL_LEN || path.len() > 1024 || !path.starts_with('/') {
            return Route::Reject(400, "URL too short or too long");
        }
        let query = parse_args(args);
        let rest = &path[1..];
        let (group, filename) = if cfg.url_have_group_name {
            match rest.split_once('/') {
                Some((g, f)) => (g.to_owned(), f),
                None => return Route::Reject(400, "no group name in URL"),
            }
        } else {
            (cfg.groups[0].group_name.clone(), rest)
        };
        if filename.len() < MIN_FILE_ID_LEN {
            return Route::Reject(400, "file ID too short");
        }
        let local_group = cfg.groups.iter().find(|g| g.group_name == group);
        let derivative = match self.query_derivative(filename, &query) {
            Ok(Some(d)) => OnceCell::from(Some(d)),
            Ok(None) if cfg.thumbnail.webp || (cfg.http.check_token && !bypass_token) => {
                OnceCell::from(self.name_derivative(filename))
            }
            Ok(None) => OnceCell::new(),
            Err(why) => return Route::Reject(404, why),
        };
        if cfg.http.check_token && !bypass_token {
            let (Some(token), Some(ts)) = (query.get("token"), query.get("ts")) else {
                return Route::Reject(400, "missing token or ts");
            };
            let ttl = cfg.http.token_ttl.as_secs() as i64;
            // A derivative is let through by its master's token too.
            let signed = |name: &str| check_token(name, &cfg.http.secret_key, token, ts, ttl, now).is_ok();
            if !signed(filename) && !derivative.get().and_then(Option::as_ref).is_some_and(|d| signed(&d.master)) {
                return Route::TokenFail(cfg.http.token_check_fail.clone());
            }
        }
        // The query form serves the derivative's own file.
        let filename = derivative.get().and_then(Option::as_ref).map_or(filename, |d| d.name.as_str());
        let count = local_group.map(|g| g.store_paths.len());
        let remote = match RemoteFilename::parse(filename, count) {
            Ok(r) => r,
            Err(_) => return Route::Reject(400, "invalid file ID"),
        };
        let info = remote.info();
        let store_root = local_group.and_then(|g| g.store_paths.get(remote.store_path_index as usize)).cloned();
        let local_path = store_root.as_deref().map(|root| remote.path_under(root));
        let is_ours = |ip: IpAddr| self.local_ips.contains(&ip) || server_ip == Some(ip);
        let source_is_local = match info.source {
            Source::Ip(ip) => is_ours(IpAddr::V4(ip)),
            Source::ServerId(id) => self.id_host(id).and_then(|h| h.parse().ok()).is_some_and(is_ours),
        };
        let old = info.create_timestamp > 0
            && now - info.create_timestamp as i64 > cfg.storage_sync_file_max_delay.as_secs() as i64;
        let hopped = query.contains_key("redirect");
        let if_missing = match (local_path.is_some() && (source_is_local || old), hopped) {
            (true, true) => Missing::NotFound,
            (true, false) => Missing::Elsewhere { source: info.source, mode: cfg.response_mode },
            (false, true) => Missing::Loop,
            (false, false) => match info.source {
                Source::ServerId(id) if self.id_host(id).is_none() => Missing::UnknownSource,
                source => Missing::Remote { source, mode: cfg.response_mode },
            },
        };
        // A derivative's name carries its master's CRC32 and size (slave names share the
        // master's), not its own: nginx's validator (time and size) is used for it instead.
        // Its name is longer than any master's (one of two lengths), so this asks no parse.
        let master_length = remote.len() == NORMAL_FILENAME_LEN || remote.len() == TRUNK_FILENAME_LEN;
        let etag =
            (info.file_type == FileType::Normal && master_length).then(|| etag(info.crc32, info.size.unwrap_or(0)));
        let attachment = query.get("filename").filter(|v| !v.is_empty()).map(|v| v.chars().take(200).collect());
        let is_flv = cfg.flv_support && remote.name.rsplit_once('.').is_some_and(|(_, e)| e == cfg.flv_extension);
        // Non-numeric start/end are ignored, as in the original.
        let flv = is_flv
            .then(|| query.get("start").and_then(|v| v.parse().ok()))
            .flatten()
            .map(|start| FlvRange { start, end: query.get("end").and_then(|v| v.parse().ok()) });
        Route::Serve(Target {
            group,
            remote,
            local_path,
            store_root,
            if_missing,
            etag,
            attachment,
            file_type: info.file_type,
            flv,
            derivative,
        })
    }

    /// The derivative the query on `filename` names (`?w=&h=&mode=`), when thumbnails are on;
    /// `Err` for a box or mode the settings do not allow (404, nothing made).
    fn query_derivative(
        &self,
        filename: &str,
        query: &std::collections::HashMap<String, String>,
    ) -> Result<Option<Derivative>, &'static str> {
        let thumbs = &self.config.thumbnail;
        if !thumbs.enabled {
            return Ok(None);
        }
        match Derivative::of_query(filename, query) {
            Some(Some(d)) if thumbs.allows(d.size, d.mode) => Ok(Some(d)),
            Some(_) => Err("thumbnail size or mode not allowed"),
            None => Ok(None),
        }
    }

    /// The derivative the name `filename` (`Mxx/…`) is, when thumbnails are on. A size not
    /// listed is none: it may still be a slave the application uploaded.
    fn name_derivative(&self, filename: &str) -> Option<Derivative> {
        let thumbs = &self.config.thumbnail;
        thumbs.enabled.then(|| Derivative::parse(filename).filter(|d| thumbs.allows(d.size, d.mode)))?
    }

    /// The thumbnail `t` names, if it is one these settings may make (parsed once, when first
    /// asked: most requests for a stored derivative never ask).
    pub fn derivative<'t>(&self, t: &'t Target) -> Option<&'t Derivative> {
        t.derivative.get_or_init(|| self.name_derivative(&t.remote.to_string())).as_ref()
    }

    /// Where the storage daemon makes `t`'s derivative (`thumbnail_maker`), when its master is
    /// on this server (its regular file, or its trunk slot); `None`: not here, the usual rules
    /// for a missing file apply (its source's module makes it there).
    /// `webp`: its WebP variant is wanted ([`Settings::webp_variant`]).
    pub fn maker_url(&self, t: &Target, webp: bool) -> Option<String> {
        let (d, maker, root) = (self.derivative(t)?, self.config.thumbnail.maker.as_ref()?, t.store_root.as_ref()?);
        let master = RemoteFilename::parse(&d.master, None).ok()?;
        let here = if crate::trunk::is_trunk_name(&master) {
            crate::trunk::open(&master, root).ok().flatten().is_some()
        } else {
            std::fs::metadata(root.join(master.relative_path())).is_ok_and(|m| m.is_file())
        };
        let variant = if webp { "?as=webp" } else { "" };
        here.then(|| format!("http://{maker}/thumbnail/{}/{}{variant}", t.group, d.name))
    }

    /// Whether the answer for `t` depends on the client's `Accept` (`Vary: Accept`): a
    /// derivative that has a WebP variant, with `thumbnail_webp` on.
    pub fn varies_by_accept(&self, t: &Target) -> bool {
        self.config.thumbnail.webp && self.derivative(t).is_some_and(|d| !d.name_ext().eq_ignore_ascii_case("webp"))
    }

    /// Where on this server the WebP variant of `t`'s derivative is (served, or made, in its
    /// stead), when the client's `accept` takes WebP and the settings offer it.
    pub fn webp_variant(&self, t: &Target, accept: Option<&[u8]>) -> Option<PathBuf> {
        if !self.varies_by_accept(t) || !accept.is_some_and(accepts_webp) {
            return None;
        }
        let variant = self.derivative(t)?.as_webp()?;
        // A regular file (slaves are, a trunk-resident master's too) beside the derivative's.
        Some(t.local_path.as_ref()?.with_file_name(variant.name.rsplit_once('/')?.1))
    }
}

/// `"<crc32 as 8 hex digits>-<size in hex>"`, without formatting machinery (every request
/// for a regular file gets one).
fn etag(crc32: u32, size: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut tag = [0u8; 28];
    tag[0] = b'"';
    for (i, at) in tag[1..9].iter_mut().enumerate() {
        *at = HEX[(crc32 >> (28 - 4 * i)) as usize & 15];
    }
    tag[9] = b'-';
    let digits = (64 - size.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, at) in tag[10..10 + digits].iter_mut().enumerate() {
        *at = HEX[(size >> (4 * (digits - 1 - i))) as usize & 15];
    }
    tag[10 + digits] = b'"';
    std::str::from_utf8(&tag[..11 + digits]).expect("hex digits, a dash and quotes are ASCII").to_owned()
}

impl Settings {
    /// The address of the storage that wrote a file: the IP in its name, or the host its
    /// server ID has in storage_ids.conf.
    pub fn source_host(&self, source: Source) -> Option<String> {
        match source {
            Source::Ip(ip) => Some(ip.to_string()),
            Source::ServerId(id) => self.id_host(id).cloned(),
        }
    }

    /// The first host a server ID has in storage_ids.conf.
    fn id_host(&self, id: u32) -> Option<&String> {
        self.ids.as_ref().and_then(|t| t.by_id(id)).and_then(|e| e.hosts.first())
    }

    /// For [`Missing::Elsewhere`]: a member of the group other than this server (`server_ip`
    /// being one of its addresses) that holds the file, or `None` (404). A member list older
    /// than [`MEMBERS_TTL_SECS`] is asked for anew in the background meanwhile.
    pub fn holder(&self, t: &Target, server_ip: Option<IpAddr>, now: i64) -> Option<String> {
        let Missing::Elsewhere { source, .. } = &t.if_missing else { return None };
        let source = self.source_host(*source);
        if self.members.is_stale(now) && !self.config.tracker_servers.is_empty() {
            self.members.refresh_in_background(&self.config, now);
        }
        let info = t.remote.info();
        let want = Wanted {
            group: &t.group,
            source: source.as_deref(),
            created: info.create_timestamp as i64,
            spread: info.crc32,
        };
        let is_here = |ip: &str| {
            ip.parse::<IpAddr>().is_ok_and(|ip| self.local_ips.contains(&ip) || server_ip == Some(ip.to_canonical()))
        };
        self.members.holder(want, now, self.config.storage_sync_file_max_delay.as_secs() as i64, is_here)
    }

    /// The file a trunk link slot of `group` names (its `text`), with the root of the store
    /// path it is in on this server (not necessarily the link's own).
    pub fn link_target(&self, group: &str, text: &[u8]) -> Option<(RemoteFilename, PathBuf)> {
        let paths = &self.config.groups.iter().find(|g| g.group_name == group)?.store_paths;
        let target = crate::trunk::parse_link_text(text, paths.len())?;
        let root = paths.get(target.store_path_index as usize)?.clone();
        Some((target, root))
    }
}

/// `Content-Disposition` for `?filename=NAME`: C's `attachment; filename="NAME"` (control
/// characters and quotes dropped), and for a name that is not plain ASCII also RFC 6266's
/// `filename*=UTF-8''…` (percent-encoded), which browsers prefer; the plain form then carries
/// an ASCII stand-in (`_` for each other character) for clients that know only it.
pub fn content_disposition(name: &str) -> String {
    let clean: String = name.chars().filter(|c| !c.is_control() && *c != '"').collect();
    if clean.is_ascii() {
        return format!("attachment; filename=\"{clean}\"");
    }
    let fallback: String = clean.chars().map(|c| if c.is_ascii() { c } else { '_' }).collect();
    let mut encoded = String::with_capacity(clean.len() * 3);
    for b in clean.bytes() {
        // RFC 5987 attr-char: ALPHA / DIGIT / "!#$&+-.^_`|~"; everything else %XX.
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// `http[s]://host[:port]<uri>{?|&}redirect=1`: where a missing file is fetched from or
/// redirected to — the source storage on the port this server listens on (members serve alike),
/// over TLS when this request came over TLS (`tls`): a page served over https must not be sent
/// to plain http, nor to the TLS port over http. The scheme's default port is left out.
pub fn source_url(tls: bool, host: &str, port: u16, unparsed_uri: &str) -> String {
    let host = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
    let (scheme, default_port) = if tls { ("https", 443) } else { ("http", 80) };
    let port = if port == default_port { String::new() } else { format!(":{port}") };
    let sep = if unparsed_uri.contains('?') { '&' } else { '?' };
    format!("{scheme}://{host}{port}{unparsed_uri}{sep}redirect=1")
}

impl Settings {
    /// Loads mod_fastdfs.conf (and its storage_ids.conf when IDs are in use). With
    /// `load_fdfs_parameters_from_tracker`, `storage_sync_file_max_delay`, `use_storage_id` and
    /// the ID table come from a tracker instead; if none answers, the local values stay and
    /// the returned warning says so.
    pub fn load(path: &std::path::Path) -> Result<(Self, Option<String>), crate::config::ConfigError> {
        let mut config = ModFastdfsConfig::load(path)?;
        let mut warning = None;
        let mut ids = None;
        if config.load_fdfs_parameters_from_tracker {
            match from_tracker(&config) {
                Ok((delay, use_ids, lines)) => {
                    config.storage_sync_file_max_delay = std::time::Duration::from_secs(delay);
                    config.use_storage_id = use_ids;
                    if use_ids {
                        ids = Some(StorageIds::parse(&lines.join("\n"), path)?);
                    }
                }
                Err(e) => {
                    warning =
                        Some(format!("loading parameters from the tracker failed ({e}); using {}", path.display()))
                }
            }
        }
        if ids.is_none() && config.use_storage_id {
            ids = Some(StorageIds::load(&config.storage_ids_filename)?);
        }
        // A tracker that does not answer now is asked again at the first miss.
        let members = Arc::new(Members::default());
        if !config.tracker_servers.is_empty() {
            members.record(members::fetch(&config).ok(), crate::timefmt::now_unix());
        }
        Ok((Self { config, ids, local_ips: crate::net::interface_ips(), members }, warning))
    }
}

/// Asks the trackers (PARAMETER_REQ, then FETCH_STORAGE_IDS) with blocking sockets: this runs
/// while nginx reads its configuration, never in a worker, and the module links no runtime.
fn from_tracker(config: &ModFastdfsConfig) -> Result<(u64, bool, Vec<String>), String> {
    use crate::net::CallError;
    use crate::protocol::report::{FetchStorageIdsReq, StorageIdsPage};
    use crate::protocol::{Command, Status};
    let call = |cmd, body: &[u8]| {
        crate::net::call_blocking(&config.tracker_servers, cmd, body, config.connect_timeout, config.network_timeout)
    };
    let params = call(Command::StorageParameterReq, &[]).map_err(|e| e.to_string())?;
    let params = crate::protocol::parameters::Parameters::decode(&params);
    let delay = params.get("storage_sync_file_max_delay").and_then(|v| v.parse().ok()).unwrap_or(86400);
    let use_ids = params.get("use_storage_id") == Some("1");
    let mut lines: Vec<String> = Vec::new();
    if !use_ids {
        return Ok((delay, false, lines));
    }
    loop {
        let [new, old] = FetchStorageIdsReq { start_index: lines.len() as i32, allow_empty: false }.forms();
        let body = match call(Command::StorageFetchStorageIds, &new) {
            Err(CallError::Refused { status: Status::EINVAL, .. }) => call(Command::StorageFetchStorageIds, &old),
            r => r,
        }
        .map_err(|e| e.to_string())?;
        let page = StorageIdsPage::decode(&body).map_err(|e| e.to_string())?;
        if page.add_to(&mut lines) {
            break;
        }
    }
    Ok((delay, use_ids, lines))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HttpConfig, ModGroup};
    use crate::file_id::NameCore;
    use std::time::Duration;

    fn settings() -> Settings {
        let config = ModFastdfsConfig {
            connect_timeout: Duration::from_secs(2),
            network_timeout: Duration::from_secs(30),
            base_path: "/tmp".into(),
            load_fdfs_parameters_from_tracker: false,
            storage_sync_file_max_delay: Duration::from_secs(86400),
            use_storage_id: false,
            storage_ids_filename: "storage_ids.conf".into(),
            tracker_servers: vec![],
            url_have_group_name: true,
            log_level: Default::default(),
            log_filename: String::new(),
            response_mode: ResponseMode::Proxy,
            if_alias_prefix: String::new(),
            flv_support: false,
            flv_extension: "flv".into(),
            groups: vec![ModGroup {
                group_name: "group1".into(),
                storage_server_port: 23000,
                store_paths: vec!["/data/fdfs".into()],
            }],
            anti_steal_bypass_header: None,
            http: HttpConfig::default(),
            thumbnail: Default::default(),
        };
        Settings { config, ids: None, local_ips: vec!["127.0.0.2".parse().unwrap()], members: Default::default() }
    }

    fn name(ip: &str, ts: u32) -> String {
        let core = NameCore {
            source: Source::Ip(ip.parse().unwrap()),
            timestamp: ts,
            size_field: 1 << 63 | 1234,
            crc32: 0xABCD,
        };
        format!("M00/00/0A/{}123.jpg", core.to_b64())
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn local_file_routes() {
        let s = settings();
        let f = name("127.0.0.2", (NOW - 10) as u32);
        let Route::Serve(t) = s.route(&format!("/group1/{f}"), "filename=a%20b.jpg", None, false, NOW) else {
            panic!()
        };
        assert_eq!(t.local_path.unwrap(), PathBuf::from(format!("/data/fdfs/data/00/0A/{}", &f[10..])));
        let elsewhere = Missing::Elsewhere { source: Source::Ip([127, 0, 0, 2].into()), mode: ResponseMode::Proxy };
        assert_eq!(t.if_missing, elsewhere, "we wrote it: missing means lost here, held elsewhere or nowhere");
        assert_eq!(t.etag.as_deref(), Some("\"0000abcd-4d2\""));
        assert_eq!(t.attachment.as_deref(), Some("a b.jpg"));
        let Route::Serve(t) = s.route(&format!("/group1/{f}"), "redirect=1", None, false, NOW) else { panic!() };
        assert_eq!(t.if_missing, Missing::NotFound, "after a hop: 404");
    }

    #[test]
    fn etag_is_the_formatted_one() {
        for (crc, size) in [(0, 0), (0xabcd, 0x4d2), (u32::MAX, u64::MAX), (0x1000_0000, 1 << 40), (7, 16)] {
            assert_eq!(etag(crc, size), format!("\"{crc:08x}-{size:x}\""));
        }
    }

    #[test]
    fn a_server_id_s_address_is_looked_up_only_when_asked() {
        let mut s = settings();
        s.ids = Some(StorageIds::parse("100001 group1 127.0.0.7\n", std::path::Path::new("ids.conf")).unwrap());
        let with_id = |id: u32| {
            let core =
                NameCore { source: Source::ServerId(id), timestamp: NOW as u32, size_field: 1 << 63 | 9, crc32: 1 };
            format!("/group1/M00/00/0A/{}123.jpg", core.to_b64())
        };
        let Route::Serve(t) = s.route(&with_id(100001), "", None, false, NOW) else { panic!() };
        let Missing::Remote { source, .. } = t.if_missing else { panic!("{:?}", t.if_missing) };
        assert_eq!(s.source_host(source).as_deref(), Some("127.0.0.7"));
        let Route::Serve(t) = s.route(&with_id(100002), "", None, false, NOW) else { panic!() };
        assert_eq!(t.if_missing, Missing::UnknownSource, "an ID storage_ids.conf does not have");
    }

    #[test]
    fn files_of_other_storages_go_to_their_source() {
        let mut s = settings();
        let f = name("127.0.0.3", (NOW - 10) as u32);
        let Route::Serve(t) = s.route(&format!("/group1/{f}"), "", None, false, NOW) else { panic!() };
        let from_3 = Source::Ip([127, 0, 0, 3].into());
        assert_eq!(t.if_missing, Missing::Remote { source: from_3, mode: ResponseMode::Proxy });
        assert_eq!(s.source_host(from_3).as_deref(), Some("127.0.0.3"));
        // Requested on the source's own address: it should be here.
        let here = Some("127.0.0.3".parse().unwrap());
        let Route::Serve(t) = s.route(&format!("/group1/{f}"), "", here, false, NOW) else { panic!() };
        let should_be_here = Missing::Elsewhere { source: from_3, mode: ResponseMode::Proxy };
        assert_eq!(t.if_missing, should_be_here);
        let Route::Serve(t) = s.route(&format!("/group1/{f}"), "redirect=1", None, false, NOW) else { panic!() };
        assert_eq!(t.if_missing, Missing::Loop);
        // Older than storage_sync_file_max_delay: it should be everywhere, so not here means
        // lost here.
        let old = name("127.0.0.3", (NOW - 100_000) as u32);
        let Route::Serve(t) = s.route(&format!("/group1/{old}"), "", None, false, NOW) else { panic!() };
        assert_eq!(t.if_missing, should_be_here);
        // Another group is never local.
        let Route::Serve(t) = s.route(&format!("/group2/{f}"), "", None, false, NOW) else { panic!() };
        assert_eq!(t.local_path, None);
        s.config.response_mode = ResponseMode::Redirect;
        let Route::Serve(t) = s.route(&format!("/group1/{f}"), "", None, false, NOW) else { panic!() };
        assert_eq!(t.if_missing, Missing::Remote { source: from_3, mode: ResponseMode::Redirect });
        assert_eq!(
            source_url(false, "127.0.0.3", 8080, "/group1/x.jpg"),
            "http://127.0.0.3:8080/group1/x.jpg?redirect=1"
        );
        assert_eq!(source_url(false, "127.0.0.3", 80, "/g/x.jpg?a=1"), "http://127.0.0.3/g/x.jpg?a=1&redirect=1");
        assert_eq!(source_url(true, "127.0.0.3", 443, "/g/x.jpg"), "https://127.0.0.3/g/x.jpg?redirect=1");
        assert_eq!(source_url(true, "127.0.0.3", 8443, "/g/x.jpg"), "https://127.0.0.3:8443/g/x.jpg?redirect=1");
        assert_eq!(source_url(true, "::1", 80, "/g/x.jpg"), "https://[::1]:80/g/x.jpg?redirect=1");
    }

    #[test]
    fn a_file_lost_here_is_fetched_from_a_member_that_holds_it() {
        let s = settings();
        let member = |ip: &str, synced_until| Member { ip: ip.into(), readable: true, synced_until };
        let list = vec![member("127.0.0.2", NOW), member("127.0.0.3", NOW - 5)];
        s.members.record(Some(std::collections::HashMap::from([("group1".to_owned(), list)])), NOW);
        let route = |f: &str, args| match s.route(&format!("/group1/{f}"), args, None, false, NOW) {
            Route::Serve(t) => t,
            other => panic!("{other:?}"),
        };
        let t = route(&name("127.0.0.2", (NOW - 10) as u32), "");
        assert_eq!(s.holder(&t, None, NOW).as_deref(), Some("127.0.0.3"), "synced past it, and not this server");
        let t = route(&name("127.0.0.2", (NOW - 2) as u32), "");
        assert_eq!(s.holder(&t, None, NOW), None, "no other member synced that far");
        let t = route(&name("127.0.0.2", (NOW - 10) as u32), "redirect=1");
        assert_eq!(s.holder(&t, None, NOW), None, "one hop only");
        // On .3's own address a file of .3 is its own; .2 (this host) is never asked either.
        let here = Some("127.0.0.3".parse().unwrap());
        let f = name("127.0.0.3", (NOW - 10) as u32);
        let Route::Serve(t) = s.route(&format!("/group1/{f}"), "", here, false, NOW) else { panic!() };
        assert_eq!(s.holder(&t, here, NOW), None);
    }

    #[test]
    fn flv_pseudo_streaming() {
        let mut s = settings();
        s.config.flv_support = true;
        let core = NameCore {
            source: Source::Ip("127.0.0.2".parse().unwrap()),
            timestamp: 1,
            size_field: 1 << 63 | 9,
            crc32: 0,
        };
        let f = format!("M00/00/0A/{}123.flv", core.to_b64());
        let Route::Serve(t) = s.route(&format!("/group1/{f}"), "start=100&end=200", None, false, NOW) else { panic!() };
        assert_eq!(t.flv, Some(FlvRange { start: 100, end: Some(200) }));
        assert_eq!(t.flv.unwrap().resolve(150), Some((100, 150)));
        assert_eq!(FlvRange { start: 200, end: None }.resolve(150), None);
        assert_eq!(FlvRange { start: 10, end: Some(5) }.resolve(150), None);
        let Route::Serve(t) = s.route(&format!("/group1/{f}"), "start=abc", None, false, NOW) else { panic!() };
        assert_eq!(t.flv, None, "non-numeric start is ignored");
        s.config.flv_support = false;
        let Route::Serve(t) = s.route(&format!("/group1/{f}"), "start=100", None, false, NOW) else { panic!() };
        assert_eq!(t.flv, None);
    }

    #[test]
    fn without_group_in_url() {
        let mut s = settings();
        s.config.url_have_group_name = false;
        let f = name("127.0.0.2", NOW as u32);
        let Route::Serve(t) = s.route(&format!("/{f}"), "", None, false, NOW) else { panic!() };
        assert_eq!(t.group, "group1");
    }

    #[test]
    fn hostile_urls_are_400() {
        let s = settings();
        let f = name("127.0.0.2", NOW as u32);
        for bad in [
            "/".to_owned(),
            "/group1".to_owned(),
            "/group1/short".to_owned(),
            "/group1/M00/00/00/../../../etc/passwd/aaaaaaaaaaaaaaaaaa".to_owned(),
            format!("/group1/{}", f.replace("M00", "M01")),
            format!("/group1/{}", f.replace("/0A/", "/0a/")),
            format!("/group1/{f}/extra"),
            format!("/group1/{}", f.replace(".jpg", "\0jpg")),
            format!("/group1/{}", "A".repeat(5000)),
            "group1/no-leading-slash/aaaaaaaaaaaaaaaaaaaaaaaa".to_owned(),
        ] {
            assert!(matches!(s.route(&bad, "", None, false, NOW), Route::Reject(400, _)), "{bad:?}");
        }
    }

    #[test]
    fn anti_steal_token_checks() {
        let mut s = settings();
        s.config.http.check_token = true;
        s.config.http.secret_key = "FastDFS1234567890".into();
        s.config.http.token_ttl = Duration::from_secs(600);
        let f = name("127.0.0.2", NOW as u32);
        let url = format!("/group1/{f}");
        let good = anti_steal_token(&f, "FastDFS1234567890", NOW - 5);
        assert!(matches!(s.route(&url, &format!("token={good}&ts={}", NOW - 5), None, false, NOW), Route::Serve(_)));
        assert_eq!(s.route(&url, "", None, false, NOW), Route::Reject(400, "missing token or ts"));
        assert_eq!(s.route(&url, &format!("token={good}&ts={}", NOW - 4), None, false, NOW), Route::TokenFail(None));
        let expired = anti_steal_token(&f, "FastDFS1234567890", NOW - 700);
        assert_eq!(
            s.route(&url, &format!("token={expired}&ts={}", NOW - 700), None, false, NOW),
            Route::TokenFail(None)
        );
        assert!(matches!(s.route(&url, "", None, true, NOW), Route::Serve(_)), "bypass header");
    }

    #[test]
    fn thumbnails_route_to_their_own_file_and_pass_with_their_master_s_token() {
        let mut s = settings();
        s.config.thumbnail = crate::config::ThumbnailConfig {
            enabled: true,
            sizes: vec![(300, 300)],
            maker: Some("127.0.0.1:8089".into()),
            ..Default::default()
        };
        let master = name("127.0.0.2", NOW as u32);
        let thumb = format!("{}_300x300.jpg", master.trim_end_matches(".jpg"));
        let Route::Serve(t) = s.route(&format!("/group1/{thumb}"), "", None, false, NOW) else { panic!() };
        assert_eq!((t.remote.to_string(), &t.etag), (thumb.clone(), &None), "no ETag from the master's name");
        assert_eq!(t.derivative.get(), None, "a name is parsed as a derivative only when asked");
        assert_eq!(s.derivative(&t).map(|d| d.master.as_str()), Some(master.as_str()));
        // The query form serves the same file.
        let Route::Serve(q) = s.route(&format!("/group1/{master}"), "w=300&h=300", None, false, NOW) else { panic!() };
        assert_eq!(q.remote.to_string(), thumb);
        assert_eq!(
            s.route(&format!("/group1/{master}"), "w=200&h=200", None, false, NOW),
            Route::Reject(404, "thumbnail size or mode not allowed")
        );
        // A size not listed by name: an ordinary file (perhaps an uploaded slave), nothing to make.
        let other = format!("{}_200x200.jpg", master.trim_end_matches(".jpg"));
        let Route::Serve(o) = s.route(&format!("/group1/{other}"), "", None, false, NOW) else { panic!() };
        assert!(s.derivative(&o).is_none());
        // With tokens on, the master's token lets its derivatives through.
        s.config.http.check_token = true;
        s.config.http.secret_key = "FastDFS1234567890".into();
        s.config.http.token_ttl = Duration::from_secs(600);
        let token = anti_steal_token(&master, "FastDFS1234567890", NOW - 5);
        let args = format!("token={token}&ts={}", NOW - 5);
        assert!(matches!(s.route(&format!("/group1/{thumb}"), &args, None, false, NOW), Route::Serve(_)));
        assert!(matches!(s.route(&format!("/group1/{other}"), &args, None, false, NOW), Route::TokenFail(None)));
    }

    #[test]
    fn a_client_that_takes_webp_is_given_the_variant_beside_the_derivative() {
        let mut s = settings();
        s.config.thumbnail =
            crate::config::ThumbnailConfig { enabled: true, sizes: vec![(300, 300)], ..Default::default() };
        let master = name("127.0.0.2", NOW as u32);
        let thumb = format!("{}_300x300.jpg", master.trim_end_matches(".jpg"));
        let Route::Serve(t) = s.route(&format!("/group1/{thumb}"), "", None, false, NOW) else { panic!() };
        let chromium = Some(&b"image/avif,image/webp,*/*;q=0.8"[..]);
        assert!(!s.varies_by_accept(&t) && s.webp_variant(&t, chromium).is_none(), "thumbnail_webp is off");
        s.config.thumbnail.webp = true;
        assert!(s.varies_by_accept(&t));
        let variant = thumb.replace(".jpg", ".webp");
        let at = PathBuf::from("/data/fdfs/data").join(variant.trim_start_matches("M00/"));
        assert_eq!(s.webp_variant(&t, chromium), Some(at));
        assert_eq!(s.webp_variant(&t, Some(b"image/jpeg")), None);
        assert_eq!(s.webp_variant(&t, None), None);
        // The master itself does not vary.
        let Route::Serve(m) = s.route(&format!("/group1/{master}"), "", None, false, NOW) else { panic!() };
        assert!(!s.varies_by_accept(&m) && s.webp_variant(&m, chromium).is_none());
    }

    #[test]
    fn content_disposition_as_c_and_rfc_6266() {
        assert_eq!(content_disposition("holiday.jpg"), "attachment; filename=\"holiday.jpg\"");
        assert_eq!(content_disposition("a\"b\r\n.jpg"), "attachment; filename=\"ab.jpg\"");
        assert_eq!(
            content_disposition("假期 照片.jpg"),
            "attachment; filename=\"__ __.jpg\"; filename*=UTF-8''%E5%81%87%E6%9C%9F%20%E7%85%A7%E7%89%87.jpg"
        );
    }
}
