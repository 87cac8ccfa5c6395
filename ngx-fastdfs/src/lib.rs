//! ngx-fastdfs: serves FastDFS file IDs from nginx, as fastdfs-nginx-module does, loaded with
//! `load_module`. Directives:
//!
//! - `fastdfs_config <file>;` (http, server, location; inherited inward): the mod_fastdfs.conf
//!   to read, default `/etc/fdfs/mod_fastdfs.conf`. One nginx can serve two clusters, or a
//!   public location and a token-protected one, each with its own file. Read when nginx reads
//!   its configuration (each file once), so `nginx -t` reports mistakes with file and line.
//! - `ngx_fastdfs_module;` (location): serve file IDs here.
//!
//! What to do with a request is decided by `fdfs_core::http` (plain Rust, unit-tested). This
//! crate is the FFI fence: local files are served the way nginx's static handler does it
//! (open file cache, sendfile, nginx's range/not-modified filters, `types {}`), missing ones
//! redirected (302) or proxied through the named location `@fastdfs_proxy`, which proxies to
//! `$fastdfs_proxy_url`. No panic crosses into nginx.

// The FFI boundary with nginx is this crate's whole purpose.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void};
use std::net::IpAddr;
use std::os::unix::io::FromRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::ptr::{self, addr_of, addr_of_mut};
use std::sync::Arc;

use fdfs_core::config::ResponseMode;
use fdfs_core::http::{source_url, FlvRange, Missing, Route, Settings, Target, FLV_HEADER};
use fdfs_core::trunk::SlotView;
use ngx::core::{self, NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::*;
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, Method, NgxHttpCoreModule, Request};
use ngx::{ngx_conf_log_error, ngx_log_error, ngx_string};

const DEFAULT_CONFIG: &str = "/etc/fdfs/mod_fastdfs.conf";

struct Module;

impl HttpModule for Module {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the module static lives for the whole process; nginx only writes its index
        // fields before configuration is read.
        unsafe { &*addr_of!(ngx_http_fastdfs_module) }
    }

    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        let mut name = ngx_string!("fastdfs_proxy_url");
        // SAFETY: `cf` is the live configuration nginx passes to preconfiguration; a variable
        // it returns non-null is owned by that configuration; the http main confs are created
        // before preconfiguration runs.
        let (index, main) = unsafe {
            let v = ngx_http_add_variable(cf, &mut name, NGX_HTTP_VAR_NOCACHEABLE as ngx_uint_t);
            if v.is_null() {
                return core::Status::NGX_ERROR.into();
            }
            (*v).get_handler = Some(proxy_url_variable);
            (ngx_http_get_variable_index(cf, &mut name), Module::main_conf_mut(&*cf))
        };
        match (usize::try_from(index), main) {
            (Ok(index), Some(main)) => main.proxy_url_index = Some(index),
            _ => return core::Status::NGX_ERROR.into(),
        }
        core::Status::NGX_OK.into()
    }
}

/// http-level state: every mod_fastdfs.conf read for this configuration, by path.
#[derive(Debug, Default)]
struct MainConf {
    loaded: Vec<(String, Arc<Settings>)>,
    /// `$fastdfs_proxy_url`'s index, so a request can set it before its named redirect.
    proxy_url_index: Option<usize>,
}

// SAFETY: MainConf is what create_main_conf allocates for this module's main conf slot.
unsafe impl HttpModuleMainConf for Module {
    type MainConf = MainConf;
}

#[derive(Debug, Default)]
struct LocConf {
    enabled: bool,
    /// This level's `fastdfs_config`, or the enclosing level's after merging.
    settings: Option<Arc<Settings>>,
}

// SAFETY: LocConf is what create_loc_conf allocates for this module's location conf slot.
unsafe impl HttpModuleLocationConf for Module {
    type LocationConf = LocConf;
}

static mut NGX_HTTP_FASTDFS_COMMANDS: [ngx_command_t; 3] = [
    ngx_command_t {
        name: ngx_string!("ngx_fastdfs_module"),
        type_: (NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS) as ngx_uint_t,
        set: Some(cmd_enable),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("fastdfs_config"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(cmd_config),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t::empty(),
];

static NGX_HTTP_FASTDFS_MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(Module::preconfiguration),
    postconfiguration: None,
    create_main_conf: Some(Module::create_main_conf),
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(Module::create_loc_conf),
    merge_loc_conf: Some(merge_loc_conf),
};

#[cfg(feature = "export-modules")]
ngx::ngx_modules!(ngx_http_fastdfs_module);

#[used]
#[allow(non_upper_case_globals)]
#[cfg_attr(not(feature = "export-modules"), no_mangle)]
pub static mut ngx_http_fastdfs_module: ngx_module_t = ngx_module_t {
    ctx: addr_of!(NGX_HTTP_FASTDFS_MODULE_CTX) as _,
    // nginx reads the command table (never writes it) at startup.
    commands: addr_of_mut!(NGX_HTTP_FASTDFS_COMMANDS) as *mut ngx_command_t,
    type_: NGX_HTTP_MODULE as _,
    ..ngx_module_t::default()
};

/// Loads a mod_fastdfs.conf once per configuration, however many levels name it.
fn load_settings(cf: &mut ngx_conf_t, path: &str) -> Result<Arc<Settings>, *mut c_char> {
    let main = Module::main_conf_mut(cf).ok_or(NGX_CONF_ERROR)?;
    if let Some((_, s)) = main.loaded.iter().find(|(p, _)| p == path) {
        return Ok(s.clone());
    }
    match catch_unwind(|| Settings::load(Path::new(path))) {
        Ok(Ok((s, warning))) => {
            if let Some(w) = warning {
                ngx_conf_log_error!(NGX_LOG_WARN, cf, "fastdfs: {}", w);
            }
            let s = Arc::new(s);
            main.loaded.push((path.to_owned(), s.clone()));
            Ok(s)
        }
        Ok(Err(e)) => {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "fastdfs: {}", e);
            Err(NGX_CONF_ERROR)
        }
        Err(_) => Err(NGX_CONF_ERROR),
    }
}

extern "C" fn cmd_config(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: `cf` is the configuration being parsed, and for a TAKE1 directive nginx passes
    // exactly two args (name, value); with NGX_HTTP_LOC_CONF_OFFSET, `conf` is this module's
    // LocConf of the level (http, server or location) being parsed.
    let (cf, args, conf) = unsafe { (&mut *cf, (*(*cf).args).as_slice::<ngx_str_t>(), &mut *(conf as *mut LocConf)) };
    let Ok(path) = args[1].to_str() else {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "fastdfs_config: path is not UTF-8");
        return NGX_CONF_ERROR;
    };
    if conf.settings.is_some() {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "fastdfs_config is duplicate");
        return NGX_CONF_ERROR;
    }
    match load_settings(cf, path) {
        Ok(s) => {
            conf.settings = Some(s);
            NGX_CONF_OK
        }
        Err(e) => e,
    }
}

/// Inherits the enclosing level's `fastdfs_config`; a location that serves file IDs with none
/// anywhere reads the default file, as the original does.
unsafe extern "C" fn merge_loc_conf(cf: *mut ngx_conf_t, prev: *mut c_void, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx merges this module's LocConf of a level (`conf`) with the enclosing
    // level's (`prev`); both were made by create_loc_conf and are distinct; `cf` is the live
    // configuration.
    let (cf, prev, conf) = unsafe { (&mut *cf, &*(prev as *const LocConf), &mut *(conf as *mut LocConf)) };
    if conf.settings.is_none() {
        conf.settings = prev.settings.clone();
    }
    if conf.enabled && conf.settings.is_none() {
        match load_settings(cf, DEFAULT_CONFIG) {
            Ok(s) => conf.settings = Some(s),
            Err(e) => return e,
        }
    }
    ptr::null_mut()
}

extern "C" fn cmd_enable(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: `conf` is this module's LocConf for the location being parsed, `cf` the live
    // configuration.
    let (cf, conf) = unsafe { (&*cf, &mut *(conf as *mut LocConf)) };
    conf.enabled = true;
    match NgxHttpCoreModule::location_conf_mut(cf) {
        Some(clcf) => {
            clcf.handler = Some(fastdfs_handler);
            NGX_CONF_OK
        }
        None => NGX_CONF_ERROR,
    }
}

/// The content handler; a panic becomes a 500 instead of killing the worker.
extern "C" fn fastdfs_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls content handlers with a live, non-null request, and `Request` is a
    // transparent wrapper of `ngx_http_request_t`.
    let request = unsafe { Request::from_ngx_http_request(r) };
    match catch_unwind(AssertUnwindSafe(|| handle(request))) {
        Ok(rc) => rc,
        Err(_) => NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
    }
}

/// The address and port this request came in on.
fn local_addr(r: &Request) -> Option<(IpAddr, u16)> {
    let c = r.connection();
    // SAFETY: the request's connection is live; ngx_connection_local_sockaddr fills
    // `local_sockaddr` if needed, after which it points at a sockaddr of the family it says.
    unsafe {
        if ngx_connection_local_sockaddr(c, ptr::null_mut(), 0) != NGX_OK as ngx_int_t {
            return None;
        }
        let sa = (*c).local_sockaddr;
        match (*sa).sa_family as u32 {
            AF_INET => {
                let sin = &*(sa as *const sockaddr_in);
                Some((IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()), u16::from_be(sin.sin_port)))
            }
            AF_INET6 => {
                let sin6 = &*(sa as *const sockaddr_in6);
                Some((IpAddr::from(sin6.sin6_addr.__in6_u.__u6_addr8), u16::from_be(sin6.sin6_port)))
            }
            _ => None,
        }
    }
}

/// Whether the request came over TLS: nginx's `$https` is `on` (the variable exists in every
/// build, SSL or not, unlike the connection's `ssl` field).
fn over_tls(r: &Request) -> bool {
    let mut name = ngx_string!("https");
    // SAFETY: `name` points at a static string; the request is live for the whole handler, and
    // nginx evaluates the variable into the request's pool, where `v` stays valid meanwhile.
    unsafe {
        let key = ngx_hash_key(name.data, name.len);
        let v = ngx_http_get_variable(r as *const Request as *mut ngx_http_request_t, &mut name, key);
        !v.is_null()
            && (*v).not_found() == 0
            && (ngx_str_t { len: (*v).len() as usize, data: (*v).data }).as_bytes() == b"on"
    }
}

fn header_in<'a>(r: &'a Request, name: &str) -> Option<&'a [u8]> {
    for (k, v) in r.headers_in_iterator() {
        if k.as_bytes().eq_ignore_ascii_case(name.as_bytes()) {
            return Some(v.as_bytes());
        }
    }
    None
}

fn settings_of(r: &Request) -> Option<Arc<Settings>> {
    Module::location_conf(r.as_ref())?.settings.clone()
}

/// `http.multi_range.enabled = false` refuses multi-range requests with 416, as the original.
fn multi_range_allowed(r: &Request, settings: &Option<Arc<Settings>>) -> bool {
    if settings.as_ref().is_none_or(|s| s.config.http.multi_range_enabled) {
        return true;
    }
    !header_in(r, "Range").is_some_and(|v| v.contains(&b','))
}

/// Decides what to do with a request (also used by the `$fastdfs_proxy_url` variable, which
/// runs after the named redirect has cleared every module context).
fn route(r: &Request) -> Option<(Route, u16)> {
    let settings = settings_of(r)?;
    let path = std::str::from_utf8(r.as_ref().uri.as_bytes()).ok();
    let args = std::str::from_utf8(r.as_ref().args.as_bytes()).unwrap_or("");
    let (ip, port) = local_addr(r).unwrap_or((IpAddr::from([0, 0, 0, 0]), 80));
    let Some(path) = path else { return Some((Route::Reject(400, "URL is not UTF-8"), port)) };
    let bypass =
        settings.config.anti_steal_bypass_header.as_ref().is_some_and(|(n, v)| header_in(r, n) == Some(v.as_bytes()));
    Some((settings.route(path, args, Some(ip), bypass, ngx_time()), port))
}

/// nginx's cached clock (no syscall per request).
fn ngx_time() -> i64 {
    // SAFETY: ngx_cached_time always points at a valid time slot in a worker.
    // time_t is not i64 on every target.
    #[allow(clippy::unnecessary_cast)]
    unsafe {
        (*ngx_cached_time).sec as i64
    }
}

fn handle(request: &mut Request) -> ngx_int_t {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
    }
    let rc = request.discard_request_body();
    if !rc.is_ok() {
        return rc.0;
    }
    let Some((route, port)) = route(request) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let log = request.log();
    match route {
        Route::Reject(code, why) => {
            let uri = String::from_utf8_lossy(request.path().as_bytes()).into_owned();
            ngx_log_error!(NGX_LOG_ERR, log, "fastdfs: {}: {}", why, uri);
            code as ngx_int_t
        }
        Route::TokenFail(None) => {
            ngx_log_error!(NGX_LOG_ERR, log, "fastdfs: token check failed");
            NGX_HTTP_BAD_REQUEST as ngx_int_t
        }
        Route::TokenFail(Some(file)) => match serve_file(request, &file, Headers::default(), None, Windowed::Whole) {
            Ok(rc) => rc,
            Err(_) => NGX_HTTP_BAD_REQUEST as ngx_int_t,
        },
        Route::Serve(t) => {
            let trunk = t
                .store_root
                .as_deref()
                .and_then(|root| fdfs_core::trunk::location(&t.remote, root).map(|(path, loc)| (path, loc, root)));
            if let Some((path, loc, root)) = trunk {
                // A trunk-resident file: the trunk file is opened through nginx's open file
                // cache, the slot's header read from it and checked against the name, and the
                // file served from the slot's content on, with the name's time.
                if t.flv.is_none() && !multi_range_allowed(request, &settings_of(request)) {
                    return NGX_HTTP_RANGE_NOT_SATISFIABLE as ngx_int_t;
                }
                let headers = Headers::of(&t);
                let window = Windowed::Slot(&t.remote, loc, root, Follow::Once);
                let served = match serve_file(request, &path, headers, t.flv, window) {
                    Ok(rc) => Some(rc),
                    Err(NotServed::Missed) => None,
                    // A link slot (C's de-duplication): the file it names is served, found
                    // the same way but not followed again.
                    Err(NotServed::Link(text)) => {
                        match settings_of(request).and_then(|s| s.link_target(&t.group, &text)) {
                            Some((target, root)) => {
                                let (path, window) = match fdfs_core::trunk::location(&target, &root) {
                                    Some((path, loc)) => (path, Windowed::Slot(&target, loc, &root, Follow::No)),
                                    None => (root.join(target.relative_path()), Windowed::Whole),
                                };
                                serve_file(request, &path, headers, t.flv, window).ok()
                            }
                            None => None,
                        }
                    }
                };
                if let Some(rc) = served {
                    return rc;
                }
                return not_here(request, &t, port);
            }
            let settings = settings_of(request);
            if t.local_path.is_some() && t.flv.is_none() && !multi_range_allowed(request, &settings) {
                return NGX_HTTP_RANGE_NOT_SATISFIABLE as ngx_int_t;
            }
            let mut headers = Headers::of(&t);
            headers.vary_accept = settings.as_ref().is_some_and(|s| s.varies_by_accept(&t));
            // A derivative's WebP variant for a client that takes WebP (`thumbnail_webp`):
            // served under the derivative's URL, made first when it is not here yet.
            let webp = match &settings {
                Some(s) if headers.vary_accept => s.webp_variant(&t, header_in(request, "Accept")),
                _ => None,
            };
            if let Some(path) = &webp {
                let variant = Headers { content_type: Some("image/webp"), ..headers };
                if let Ok(rc) = serve_file(request, path, variant, None, Windowed::Whole) {
                    return rc;
                }
                if let Some(url) = settings.as_ref().and_then(|s| s.maker_url(&t, true)) {
                    return proxy_to(request, &url);
                }
            }
            if let Some(path) = &t.local_path {
                if let Ok(rc) = serve_file(request, path, headers, t.flv, Windowed::Whole) {
                    return rc;
                }
            }
            // A thumbnail not made yet whose master is here: the storage daemon makes it
            // (never this worker), stores it as the master's slave file and answers with it.
            if let Some(url) = settings.and_then(|s| s.maker_url(&t, false)) {
                return proxy_to(request, &url);
            }
            not_here(request, &t, port)
        }
    }
}

/// The file is not on this server: 404, 400 (loop), 500 (unknown source), or 302 / proxy to
/// its source, or, for a file that should be here, to a member that holds it.
fn not_here(request: &mut Request, t: &Target, port: u16) -> ngx_int_t {
    let log = request.log();
    let (host, mode) = match &t.if_missing {
        Missing::NotFound => return NGX_HTTP_NOT_FOUND as ngx_int_t,
        Missing::Loop => {
            ngx_log_error!(NGX_LOG_WARN, log, "fastdfs: redirect loop for {}", t.remote);
            return NGX_HTTP_BAD_REQUEST as ngx_int_t;
        }
        Missing::UnknownSource => return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
        Missing::Remote { source, mode } => match settings_of(request).and_then(|s| s.source_host(*source)) {
            Some(host) => (host, *mode),
            None => return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
        },
        Missing::Elsewhere { mode, .. } => {
            let server_ip = local_addr(request).map(|(ip, _)| ip);
            match settings_of(request).and_then(|s| s.holder(t, server_ip, ngx_time())) {
                Some(host) => {
                    ngx_log_error!(NGX_LOG_WARN, log, "fastdfs: {} should be here and is not; from {}", t.remote, host);
                    (host, *mode)
                }
                None => return NGX_HTTP_NOT_FOUND as ngx_int_t,
            }
        }
    };
    let uri = String::from_utf8_lossy(request.unparsed_uri().as_bytes()).into_owned();
    let url = source_url(over_tls(request), &host, port, &uri);
    match mode {
        ResponseMode::Redirect => match push_header(request, "Location", &url) {
            Some(h) => {
                request.as_mut().headers_out.location = h;
                NGX_HTTP_MOVED_TEMPORARILY as ngx_int_t
            }
            None => NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
        },
        ResponseMode::Proxy => proxy_to(request, &url),
    }
}

/// Hands the request to the named location `@fastdfs_proxy`, which proxies it to `url`.
fn proxy_to(request: &mut Request, url: &str) -> ngx_int_t {
    // The named location sees its own (server-level) configuration, not this one's:
    // `$fastdfs_proxy_url` is set here, where the member, source or maker is known.
    let proxy_url_index = Module::main_conf(request.as_ref()).and_then(|m| m.proxy_url_index);
    let (Some(index), Some(value)) = (proxy_url_index, pool_str(request, url.as_bytes())) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let r: &mut ngx_http_request_t = request.as_mut();
    let mut name = ngx_string!("@fastdfs_proxy");
    // SAFETY: `proxy_url_index` is the variable's index in this configuration, so the
    // live request's `variables` has a slot for it; nginx copies what it needs from
    // `name` before ngx_http_named_location returns.
    unsafe {
        let v = r.variables.add(index);
        (*v).data = value.data;
        (*v).set_len(value.len as u32);
        (*v).set_valid(1);
        (*v).set_no_cacheable(0);
        (*v).set_not_found(0);
        ngx_http_named_location(r, &mut name);
    }
    NGX_DONE as ngx_int_t
}

/// Allocates `s` in the request pool (NUL-terminated, as file names must be).
fn pool_str(r: &Request, s: &[u8]) -> Option<ngx_str_t> {
    let p = r.pool().alloc_unaligned(s.len() + 1) as *mut u8;
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` is a fresh allocation of `len + 1` bytes from the request's live pool.
    unsafe {
        ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
        *p.add(s.len()) = 0;
    }
    Some(ngx_str_t { len: s.len(), data: p })
}

/// Adds an output header and returns it, for the ones nginx's filters also look up through
/// their own `headers_out` field (`ETag`, `Location`).
fn push_header(r: &mut Request, key: &str, value: &str) -> Option<*mut ngx_table_elt_t> {
    let (key, value) = (pool_str(r, key.as_bytes())?, pool_str(r, value.as_bytes())?);
    let r: &mut ngx_http_request_t = r.as_mut();
    // SAFETY: headers_out.headers is the live request's output header list; an element it
    // returns non-null is ours to fill.
    unsafe {
        let h = ngx_list_push(&mut r.headers_out.headers) as *mut ngx_table_elt_t;
        if h.is_null() {
            return None;
        }
        (*h).hash = 1;
        (*h).key = key;
        (*h).value = value;
        (*h).lowcase_key = ptr::null_mut();
        Some(h)
    }
}

/// Why nothing was served.
enum NotServed {
    /// The file does not exist here.
    Missed,
    /// The name is a link slot; this is its text (the filename of the file to serve).
    Link(Vec<u8>),
}
use NotServed::Missed;

/// Whether a link slot is to be followed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Follow {
    Once,
    No,
}

/// Which part of the opened file is the requested file.
#[derive(Clone, Copy)]
enum Windowed<'a> {
    /// All of it, with the file's own time.
    Whole,
    /// The content of a trunk slot, if its header holds this name and the storage recorded the
    /// name in that slot (the store path's root has the index).
    Slot(&'a fdfs_core::file_id::RemoteFilename, fdfs_core::file_id::TrunkLocation, &'a Path, Follow),
}

/// The response headers a served file gets beside nginx's own.
#[derive(Clone, Copy, Default)]
struct Headers<'a> {
    /// `ETag` (nginx's own, from time and size, when `None`).
    etag: Option<&'a str>,
    /// `Content-Disposition: attachment` with this file name.
    attachment: Option<&'a str>,
    /// `Content-Type` instead of the one the URI's extension gives (a WebP variant under a
    /// derivative's `.jpg` URL).
    content_type: Option<&'static str>,
    /// `Vary: Accept`: the URL's answer depends on the client's `Accept`.
    vary_accept: bool,
}

impl<'a> Headers<'a> {
    fn of(t: &'a Target) -> Self {
        Self { etag: t.etag.as_deref(), attachment: t.attachment.as_deref(), ..Self::default() }
    }
}

/// What a request for a local file ends in: an nginx status, or nothing served here.
type Served = Result<ngx_int_t, NotServed>;

/// A file opened through nginx's open file cache, for this request.
struct Opened {
    of: ngx_open_file_info_t,
    /// The same descriptor as a `File` (never closed by us: the pool's cleanup closes it).
    file: std::mem::ManuallyDrop<std::fs::File>,
    /// The path, allocated in the request pool (nginx's file struct keeps it).
    name: ngx_str_t,
}

/// Opens `path` as nginx's static handler does (open file cache, the location's `directio`,
/// `read_ahead`). `Err` is what the request ends in when it cannot be: `Missed` when the file
/// does not exist (or is a directory).
fn open_cached(request: &Request, path: &Path) -> Result<Opened, Served> {
    use std::os::unix::ffi::OsStrExt;
    let internal = Ok(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t);
    let Some(clcf) = NgxHttpCoreModule::location_conf(request) else { return Err(internal) };
    let Some(mut name) = pool_str(request, path.as_os_str().as_bytes()) else { return Err(internal) };
    let pool = request.pool();
    // SAFETY: all-zero is the documented initial state of ngx_open_file_info_t; the arguments
    // of ngx_open_cached_file are live for the call, and the fd it opens stays open for the
    // request (the pool's cleanup closes it), so a File borrowing it is valid meanwhile;
    // ManuallyDrop keeps that File from closing it.
    let (rc, of, file) = unsafe {
        let mut of: ngx_open_file_info_t = std::mem::zeroed();
        of.read_ahead = clcf.read_ahead;
        of.directio = clcf.directio;
        of.valid = clcf.open_file_cache_valid;
        of.min_uses = clcf.open_file_cache_min_uses;
        of.set_errors(clcf.open_file_cache_errors as _);
        of.set_events(clcf.open_file_cache_events as _);
        let rc = ngx_open_cached_file(clcf.open_file_cache, &mut name, &mut of, pool.as_ptr());
        // A directory is not opened (its fd is NGX_INVALID_FILE).
        let opened = rc == NGX_OK as ngx_int_t && of.is_dir() == 0 && of.fd != NGX_INVALID_FILE;
        let file = opened.then(|| std::mem::ManuallyDrop::new(std::fs::File::from_raw_fd(of.fd)));
        (rc, of, file)
    };
    if rc != NGX_OK as ngx_int_t {
        return Err(match of.err as u32 {
            ENOENT | ENOTDIR | ENAMETOOLONG => Err(Missed),
            EACCES => Ok(NGX_HTTP_FORBIDDEN as ngx_int_t),
            _ => internal,
        });
    }
    match file {
        Some(file) => Ok(Opened { of, file, name }),
        None => Err(Err(Missed)),
    }
}

/// Serves a local file as nginx's static handler does. `Err(Missed)` when it does not exist,
/// `Err(NotServed::Link(text))` for a link slot to follow (only with [`Follow::Once`]).
fn serve_file(
    request: &mut Request,
    path: &Path,
    headers: Headers<'_>,
    flv: Option<FlvRange>,
    window: Windowed<'_>,
) -> Served {
    let opened = match open_cached(request, path) {
        Ok(o) => o,
        Err(served) => return served,
    };
    let (base, size, mtime) = match window {
        Windowed::Whole => (0, opened.of.size, opened.of.mtime),
        Windowed::Slot(remote, loc, root, follow) => {
            match fdfs_core::trunk::view(&opened.file, remote, &loc, root, follow == Follow::Once) {
                SlotView::File(c) => (c.content_offset as i64, c.size as i64, c.mtime as i64),
                SlotView::Link(text) => return Err(NotServed::Link(text)),
                SlotView::Missing => return Err(Missed),
            }
        }
    };
    // FLV pseudo-streaming: bytes [start, end) with 200, after an FLV header when start > 0.
    let (from, to, flv_header) = match flv {
        Some(f) => match f.resolve(size as u64) {
            Some((s, e)) => (s as i64, e as i64, s > 0),
            None => return Ok(NGX_HTTP_BAD_REQUEST as ngx_int_t),
        },
        None => (0, size, false),
    };
    let extra: Option<&'static [u8]> = if flv_header { Some(&FLV_HEADER) } else { None };
    // Ranges are nginx's (its range filter) except for FLV, whose start is the query's.
    let ranges = flv.is_none();
    Ok(send_file(request, &opened, (base + from, base + to, mtime), headers, extra, ranges))
}

/// Sends bytes `from..to` of an opened file, dated `mtime`, with `headers`, after `prefix`
/// when there is one, through nginx's filters (ranges when `ranges`, not-modified, sendfile).
fn send_file(
    request: &mut Request,
    opened: &Opened,
    (from, to, mtime): (i64, i64, i64),
    headers: Headers<'_>,
    prefix: Option<&'static [u8]>,
    ranges: bool,
) -> ngx_int_t {
    let internal = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    if let Some(name) = headers.attachment {
        if request.add_header_out("Content-Disposition", &fdfs_core::http::content_disposition(name)).is_none() {
            return internal;
        }
    }
    if headers.vary_accept && request.add_header_out("Vary", "Accept").is_none() {
        return internal;
    }
    let etag = match headers.etag {
        Some(e) => match push_header(request, "ETag", e) {
            Some(h) => Some(h),
            None => return internal,
        },
        None => None,
    };
    let pool = request.pool();
    let (b, f) = (pool.calloc_type::<ngx_buf_t>(), pool.calloc_type::<ngx_file_t>());
    let prefix_buf = if prefix.is_some() { pool.calloc_type::<ngx_buf_t>() } else { ptr::null_mut() };
    if b.is_null() || f.is_null() || (prefix.is_some() && prefix_buf.is_null()) {
        return internal;
    }
    let r: &mut ngx_http_request_t = request.as_mut();
    if ranges {
        r.set_allow_ranges(1);
    }
    r.headers_out.status = NGX_HTTP_OK as ngx_uint_t;
    r.headers_out.content_length_n = to - from + prefix.map_or(0, |p| p.len() as i64);
    r.headers_out.last_modified_time = mtime;
    // SAFETY: `r` is the live request, for the header calls and the output filter; `b`, `f`
    // and `prefix_buf` are zeroed allocations from its pool, filled here before nginx reads
    // them; `opened.of.fd` stays open for the request (the pool's cleanup closes it); `prefix`
    // and `headers.content_type` are static.
    unsafe {
        match etag {
            Some(h) => r.headers_out.etag = h,
            None => {
                if ngx_http_set_etag(r) != NGX_OK as ngx_int_t {
                    return internal;
                }
            }
        }
        // nginx keeps a type already set (its `types {}` map is for the rest).
        if let Some(t) = headers.content_type {
            r.headers_out.content_type = ngx_str_t { len: t.len(), data: t.as_ptr() as *mut u8 };
            r.headers_out.content_type_len = t.len();
        }
        if ngx_http_set_content_type(r) != NGX_OK as ngx_int_t {
            return internal;
        }
        let rc = ngx_http_send_header(r);
        if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || r.header_only() != 0 {
            return rc;
        }
        let is_main = ptr::eq(r as *const ngx_http_request_t, r.main as *const _);
        (*b).file_pos = from;
        (*b).file_last = to;
        (*b).set_in_file(if to > from { 1 } else { 0 });
        (*b).set_last_buf(if is_main { 1 } else { 0 });
        (*b).set_last_in_chain(1);
        (*b).set_sync(if (*b).last_buf() != 0 || (*b).in_file() != 0 { 0 } else { 1 });
        (*f).fd = opened.of.fd;
        (*f).name = opened.name;
        (*f).log = (*r.connection).log;
        (*f).set_directio(opened.of.is_directio());
        (*b).file = f;
        let mut out = ngx_chain_t { buf: b, next: ptr::null_mut() };
        if let Some(prefix) = prefix {
            let h = prefix_buf;
            (*h).pos = prefix.as_ptr() as *mut u8;
            (*h).last = (*h).pos.add(prefix.len());
            (*h).set_memory(1);
            let mut first = ngx_chain_t { buf: h, next: &mut out };
            return ngx_http_output_filter(r, &mut first);
        }
        ngx_http_output_filter(r, &mut out)
    }
}

/// `$fastdfs_proxy_url`: `http[s]://<source storage>:<this port><uri>{?|&}redirect=1`.
unsafe extern "C" fn proxy_url_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx calls variable handlers with a live, non-null request (`Request` is a
    // transparent wrapper of it) and the variable's slot `v`, ours to fill for this call.
    let (request, v) = unsafe { (Request::from_ngx_http_request(r), &mut *v) };
    let computed = catch_unwind(AssertUnwindSafe(|| match route(request) {
        Some((Route::Serve(Target { if_missing: Missing::Remote { source, .. }, .. }), port)) => {
            let host = settings_of(request)?.source_host(source)?;
            Some(source_url(
                over_tls(request),
                &host,
                port,
                &String::from_utf8_lossy(request.unparsed_uri().as_bytes()),
            ))
        }
        _ => None,
    }));
    match computed {
        // The value lives in the request's pool, as nginx's own variables do.
        Ok(Some(url)) => match pool_str(request, url.as_bytes()) {
            Some(s) => {
                v.data = s.data;
                v.set_len(s.len as u32);
                v.set_valid(1);
                v.set_no_cacheable(0);
                v.set_not_found(0);
            }
            None => return NGX_ERROR as ngx_int_t,
        },
        _ => v.set_not_found(1),
    }
    NGX_OK as ngx_int_t
}
