//! The `io.systemd.sysext` Varlink service: what each call does and what it answers, as
//! systemd 262's `systemd-sysext` serves it (`vl_method_merge`/`unmerge`/`refresh`/`list`
//! in `src/sysext/sysext.c`), and `io.systemd.SysUpdate.Notify.OnCompletedUpdate`, by
//! which systemd-sysupdate asks for a refresh, over [`Context`]. The socket is the kernel layer's
//! ([`crate::sys::varlink`]); the wire format is [`crate::format::varlink`].
//!
//! Parameters override the defaults the program was started with (`--root=`, the
//! flags), as systemd's `p.force >= 0 ? p.force : arg_force`; `class` picks the class
//! (default: the program's, sysext unless invoked as `systemd-confext`).

use std::os::fd::OwnedFd;
use std::path::Path;

use crate::context::{Context, MergeError};
use crate::format::class::Class;
use crate::format::json::Json;
use crate::format::varlink::{self as wire, Call, Kind};
use crate::inspect::discover::{Image, ImageKind};
use crate::inspect::fsutil::Root;

/// What the service works with: the context the program was started with.
#[derive(Debug, Clone)]
pub struct Service {
    /// Root, flags, environment and configuration as the command line and environment
    /// gave them; each call works on a copy.
    pub base: Context,
    /// The class of a call without `class`.
    pub default_class: Class,
    /// `GetInfo`'s product: the name the program was invoked by.
    pub product: String,
}

/// Who called, from the socket's credentials.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// May the caller change mounts? (uid 0; systemd asks polkit, which extmerge has not.)
    pub privileged: bool,
}

/// Each method's parameters (systemd 262's interface): `class` a string, the others
/// booleans. `allowInteractiveAuthentication` is taken and ignored: there is no polkit.
fn parameters_of(method: &str) -> Vec<(&'static str, Kind)> {
    let names: &[&'static str] = match method {
        "Merge" => &["class", "force", "noReload", "noexec"],
        "Refresh" => &["class", "force", "noReload", "alwaysRefresh", "noexec"],
        "Unmerge" => &["class", "noReload"],
        "OnCompletedUpdate" => {
            return vec![
                ("component", Kind::Str),
                ("version", Kind::Str),
                ("resources", Kind::Resources),
            ]
        }
        _ => &["class"],
    };
    names
        .iter()
        .chain(&["allowInteractiveAuthentication"])
        .map(|&n| (n, if n == "class" { Kind::Str } else { Kind::Bool }))
        .collect()
}

pub use crate::sys::varlink::invocation;

impl Service {
    /// Serves the socket [`invocation`] found: an accepted connection until it is
    /// closed, a listening socket until accepting fails.
    pub fn serve(&self, fd: OwnedFd) -> std::io::Result<()> {
        crate::sys::varlink::serve(fd, self)
    }

    /// Serves one call: each reply (NUL-terminated) goes to `send`, which says whether
    /// the peer is still there (a `List` stream stops when it is not). A `oneway` call
    /// is carried out and its replies dropped, as sd-varlink does.
    pub fn call(&self, call: &Call, peer: Peer, send: &mut dyn FnMut(Vec<u8>) -> bool) {
        let mut out = |m: Vec<u8>| call.oneway || send(m);
        let m = call.method.as_str();
        match m {
            "org.varlink.service.GetInfo" => {
                if let Err(p) = wire::check_parameters(call, &[], false) {
                    out(wire::invalid_parameter(&p));
                    return;
                }
                out(wire::reply(self.info(), false));
            }
            "org.varlink.service.GetInterfaceDescription" => {
                out(describe(call));
            }
            "io.systemd.sysext.Merge"
            | "io.systemd.sysext.Refresh"
            | "io.systemd.sysext.Unmerge" => {
                out(self.change(call, peer));
            }
            "io.systemd.sysext.List" => self.list(call, &mut out),
            "io.systemd.SysUpdate.Notify.OnCompletedUpdate" => {
                out(self.change(call, peer));
            }
            _ => {
                out(wire::error(
                    wire::METHOD_NOT_FOUND,
                    Some(Json::obj([("method", Json::str(m))])),
                ));
            }
        }
    }

    fn info(&self) -> Json {
        Json::obj([
            ("vendor", Json::str("extmerge")),
            ("product", Json::str(format!("extmerge ({})", self.product))),
            ("version", Json::str(env!("CARGO_PKG_VERSION"))),
            ("url", Json::str("")),
            (
                "interfaces",
                Json::Array(
                    wire::INTERFACES
                        .iter()
                        .map(|(n, _)| Json::str(*n))
                        .collect(),
                ),
            ),
        ])
    }

    /// The context of one call: the class asked for (`Err`: the reply refusing it).
    fn context_for(&self, call: &Call) -> Result<Context, Vec<u8>> {
        let class = match wire::str_parameter(call, "class") {
            None => self.default_class,
            Some(c) => Class::from_name(c).ok_or_else(|| wire::invalid_parameter("class"))?,
        };
        let mut ctx = self.base.clone();
        ctx.classes = vec![class];
        let o = &mut ctx.options;
        o.force = wire::bool_parameter(call, "force").unwrap_or(o.force);
        // A root other than the host's is never the service manager's (as on the
        // command line).
        if o.root == Path::new("/") {
            o.no_reload = wire::bool_parameter(call, "noReload").unwrap_or(o.no_reload);
        }
        o.noexec = wire::bool_parameter(call, "noexec").or(o.noexec);
        o.always_refresh = wire::bool_parameter(call, "alwaysRefresh").unwrap_or(o.always_refresh);
        Ok(ctx)
    }

    /// `Merge`, `Refresh`, `Unmerge`, and `OnCompletedUpdate` (a refresh of both
    /// classes, confext first, whatever the update was, as systemd 262 does): `{}` or
    /// the error.
    fn change(&self, call: &Call, peer: Peer) -> Vec<u8> {
        let verb = call.method.rsplit('.').next().unwrap_or("");
        if let Err(p) =
            wire::check_parameters(call, &parameters_of(verb), verb == "OnCompletedUpdate")
        {
            return wire::invalid_parameter(&p);
        }
        let mut ctx = match self.context_for(call) {
            Ok(c) => c,
            Err(reply) => return reply,
        };
        if verb == "OnCompletedUpdate" {
            ctx.classes = Class::ALL.to_vec();
        }
        if !peer.privileged {
            return wire::error(wire::PERMISSION_DENIED, None);
        }
        let done = match verb {
            "Merge" => ctx.merge().map(drop),
            "Refresh" | "OnCompletedUpdate" => ctx.refresh().map(drop),
            _ => ctx.unmerge().map(drop),
        };
        match done {
            Ok(()) => wire::empty_reply(),
            Err(e) => self.error_reply(&ctx, &e),
        }
    }

    /// A library error as systemd's: `AlreadyMerged` naming the hierarchy as inside the
    /// root, every other as `io.systemd.System` with its errno.
    fn error_reply(&self, ctx: &Context, e: &MergeError) -> Vec<u8> {
        crate::log::debug(&format!("Varlink call failed: {e}"));
        match e {
            MergeError::AlreadyMerged(path) => {
                let inside = path
                    .strip_prefix(&ctx.options.root)
                    .map(|p| Path::new("/").join(p))
                    .unwrap_or_else(|_| path.clone());
                wire::error(
                    "io.systemd.sysext.AlreadyMerged",
                    Some(Json::obj([(
                        "hierarchy",
                        Json::str(inside.to_string_lossy()),
                    )])),
                )
            }
            e => wire::system_error(e.errno()),
        }
    }

    /// `List`: one reply per extension, all but the last with `continues`;
    /// `NoImagesFound` when there is none; only with `more` (systemd: `ExpectedMore`).
    fn list(&self, call: &Call, out: &mut dyn FnMut(Vec<u8>) -> bool) {
        if !call.more && !call.oneway {
            out(wire::error(wire::EXPECTED_MORE, None));
            return;
        }
        if let Err(p) = wire::check_parameters(call, &parameters_of("List"), false) {
            out(wire::invalid_parameter(&p));
            return;
        }
        let ctx = match self.context_for(call) {
            Ok(c) => c,
            Err(reply) => {
                out(reply);
                return;
            }
        };
        let found = ctx.list().and_then(|l| Ok((ctx.open_root()?, l)));
        let (root, list) = match found {
            Ok(x) => x,
            Err(e) => {
                out(self.error_reply(&ctx, &e));
                return;
            }
        };
        let images: Vec<&Image> = list.iter().flat_map(|(_, d)| &d.images).collect();
        if images.is_empty() {
            out(wire::error("io.systemd.sysext.NoImagesFound", None));
            return;
        }
        for (i, image) in images.iter().enumerate() {
            if !out(wire::reply(image_json(&root, image), i + 1 < images.len())) {
                return;
            }
        }
    }
}

/// `GetInterfaceDescription`.
fn describe(call: &Call) -> Vec<u8> {
    if let Err(p) = wire::check_parameters(call, &[("interface", Kind::Str)], false) {
        return wire::invalid_parameter(&p);
    }
    let Some(name) = wire::str_parameter(call, "interface") else {
        return wire::invalid_parameter("interface");
    };
    match wire::INTERFACES.iter().find(|(n, _)| *n == name) {
        Some((_, text)) => wire::reply(Json::obj([("description", Json::str(*text))]), false),
        None => wire::error(
            wire::INTERFACE_NOT_FOUND,
            Some(Json::obj([("interface", Json::str(name))])),
        ),
    }
}

/// One `List` reply as systemd 262's `image_to_json()`: `Type`, `Class`, `Name`,
/// `Path`, `ReadOnly`, and the time discovery took (a directory's birth time as
/// `CreationTimestamp`, a file's modification time as `ModificationTimestamp`).
/// `ReadOnly`: the image is on a read-only file system.
fn image_json(root: &Root, i: &Image) -> Json {
    let root = i.root_in(root);
    let read_only = root
        .open_at(&i.path, rustix::fs::OFlags::PATH)
        .ok()
        .and_then(|fd| rustix::fs::fstatvfs(fd).ok())
        .is_some_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY));
    let mut o = vec![
        ("Type".to_string(), Json::str(i.kind.as_str())),
        ("Class".to_string(), Json::str(i.class.as_str())),
        ("Name".to_string(), Json::str(&i.name)),
        (
            "Path".to_string(),
            Json::str(root.display_path(&i.path).to_string_lossy()),
        ),
        ("ReadOnly".to_string(), Json::Bool(read_only)),
    ];
    if let Some(t) = i.mtime_usec {
        let key = match i.kind {
            ImageKind::Directory => "CreationTimestamp",
            ImageKind::Raw | ImageKind::Block => "ModificationTimestamp",
        };
        o.push((key.to_string(), Json::UInt(t)));
    }
    Json::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::varlink::parse_call;
    use crate::options::Options;

    fn run(msg: &str, privileged: bool) -> Vec<String> {
        let opts = Options {
            root: "/nonexistent-extmerge-root".into(),
            ..Default::default()
        };
        let s = Service {
            base: Context::new(opts, &[Class::Sysext]),
            default_class: Class::Sysext,
            product: "systemd-sysext".into(),
        };
        let mut got = Vec::new();
        s.call(
            &parse_call(msg.as_bytes()).unwrap(),
            Peer { privileged },
            &mut |m| {
                got.push(String::from_utf8(m).unwrap());
                true
            },
        );
        got
    }

    #[test]
    fn answers_as_systemd_does() {
        // Replies as systemd 262's systemd-sysext gave them to the same calls.
        for (call, want) in [
            (
                r#"{"method":"io.systemd.sysext.List","parameters":{}}"#,
                r#"{"error":"org.varlink.service.ExpectedMore"}"#,
            ),
            (
                r#"{"method":"io.systemd.sysext.List","parameters":{"class":"foo"},"more":true}"#,
                r#"{"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"class"}}"#,
            ),
            (
                r#"{"method":"io.systemd.sysext.List","parameters":{"bogus":1},"more":true}"#,
                r#"{"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"bogus"}}"#,
            ),
            (
                r#"{"method":"io.systemd.sysext.Nope","parameters":{}}"#,
                r#"{"error":"org.varlink.service.MethodNotFound","parameters":{"method":"io.systemd.sysext.Nope"}}"#,
            ),
            (
                r#"{"method":"io.nope.Nope","parameters":{}}"#,
                r#"{"error":"org.varlink.service.MethodNotFound","parameters":{"method":"io.nope.Nope"}}"#,
            ),
            (
                r#"{"method":"io.systemd.sysext.Merge","parameters":{"force":"yes"}}"#,
                r#"{"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"force"}}"#,
            ),
            (
                r#"{"method":"io.systemd.sysext.Unmerge","parameters":{"noReload":1}}"#,
                r#"{"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"noReload"}}"#,
            ),
            (
                r#"{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"io.nope"}}"#,
                r#"{"error":"org.varlink.service.InterfaceNotFound","parameters":{"interface":"io.nope"}}"#,
            ),
            (
                r#"{"method":"org.varlink.service.GetInterfaceDescription","parameters":{}}"#,
                r#"{"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"interface"}}"#,
            ),
            (
                r#"{"method":"org.varlink.service.GetInfo","parameters":{"x":1}}"#,
                r#"{"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"x"}}"#,
            ),
        ] {
            assert_eq!(run(call, true), vec![format!("{want}\0")], "{call}");
        }
        assert!(run(
            r#"{"method":"io.systemd.sysext.Merge","parameters":{}}"#,
            false
        )[0]
        .contains(wire::PERMISSION_DENIED));
        assert!(run(
            r#"{"method":"io.systemd.sysext.Unmerge","oneway":true}"#,
            false
        )
        .is_empty());
        let d = run(
            r#"{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"io.systemd.sysext"}}"#,
            false,
        );
        assert!(d[0].starts_with(
            r#"{"parameters":{"description":"interface io.systemd.sysext\n\ntype ImageClass"#
        ));
    }
}
