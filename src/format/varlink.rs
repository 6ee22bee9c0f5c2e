//! The Varlink wire format (varlink.org, as systemd's sd-varlink speaks it): messages
//! are JSON objects each ended by a NUL byte on a stream socket. A call is
//! `{"method":…,"parameters":{…},"more":…,"oneway":…}`; a reply `{"parameters":{…}}`
//! (with `"continues":true` while a `more` stream goes on) or
//! `{"error":NAME,"parameters":{…}}`. Parsed with the project's one JSON reader
//! ([`super::json::Reader`]), written with [`Json`].
//!
//! Also the interface descriptions served by `GetInterfaceDescription`: the text of
//! systemd 262's `io.systemd.sysext`, `io.systemd` and `org.varlink.service`, so that
//! clients introspecting the service see what they see with systemd's.

use super::json::{Json, JsonError, Reader};

/// The largest message accepted (NUL excluded): sd-varlink's `VARLINK_BUFFER_MAX`,
/// 16 MiB. A peer that sends more without a NUL is cut off; the calls served take a
/// few booleans and a string, so real calls are some hundred bytes.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Nesting accepted in a call (the call object is 1, its parameters 2): sd-json's
/// limit is deeper, but no parameter of these methods nests at all.
const MAX_DEPTH: usize = 16;

/// `org.varlink.service` errors (sd-varlink's names).
pub const METHOD_NOT_FOUND: &str = "org.varlink.service.MethodNotFound";
/// The interface asked for is not served.
pub const INTERFACE_NOT_FOUND: &str = "org.varlink.service.InterfaceNotFound";
/// A parameter unknown, of the wrong type, or of a value not allowed.
pub const INVALID_PARAMETER: &str = "org.varlink.service.InvalidParameter";
/// The method may only be called with `"more":true`.
pub const EXPECTED_MORE: &str = "org.varlink.service.ExpectedMore";
/// The caller may not do this.
pub const PERMISSION_DENIED: &str = "org.varlink.service.PermissionDenied";
/// A system error (errno), as sd-varlink's `sd_varlink_error_errno()` sends it.
pub const SYSTEM: &str = "io.systemd.System";

/// Splits a byte stream into messages at NUL bytes, with a size cap. Bytes are
/// scanned once and consumed messages dropped in bulk, so a peer pipelining many small
/// calls costs linear time.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Where the unconsumed bytes start.
    start: usize,
    /// Bytes before this offset hold no NUL.
    scanned: usize,
}

/// Why a stream cannot be read further: the connection is to be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// More than [`MAX_MESSAGE`] bytes without a NUL.
    #[error("message larger than {MAX_MESSAGE} bytes")]
    TooLarge,
    /// The message is not a well-formed call.
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl Framer {
    /// Adds bytes read from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message (without its NUL), if one is there; an error if the
    /// message, or the bytes buffered without a NUL, exceed the cap.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let from = self.scanned.max(self.start);
        match memchr::memchr(0, &self.buf[from..]) {
            Some(i) => {
                let end = from + i;
                if end - self.start > MAX_MESSAGE {
                    return Err(FrameError::TooLarge);
                }
                let msg = self.buf[self.start..end].to_vec();
                self.start = end + 1;
                self.scanned = self.start;
                Ok(Some(msg))
            }
            None => {
                self.scanned = self.buf.len();
                if self.buf.len() - self.start > MAX_MESSAGE {
                    return Err(FrameError::TooLarge);
                }
                Ok(None)
            }
        }
    }

    /// Are bytes of an unfinished message buffered?
    pub fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }
}

/// A parameter's value: the JSON types these interfaces use (numbers are not, and are
/// kept only to be refused by name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A string.
    Str(String),
    /// A number.
    Number,
    /// An array.
    Array(Vec<Value>),
    /// An object, members in the order sent.
    Object(Vec<(String, Value)>),
}

/// One method call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// `interface.Method`.
    pub method: String,
    /// The parameters in the order sent (`"parameters"` absent or `null`: none).
    pub parameters: Vec<(String, Value)>,
    /// `"more":true`: the caller takes a stream of replies.
    pub more: bool,
    /// `"oneway":true`: the caller wants no reply.
    pub oneway: bool,
}

impl Call {
    /// The interface part of the method name (before the last dot).
    pub fn interface(&self) -> &str {
        self.method.rsplit_once('.').map_or("", |(i, _)| i)
    }
}

impl From<JsonError> for FrameError {
    fn from(e: JsonError) -> Self {
        FrameError::Malformed(e.to_string())
    }
}

/// Parses one message as a call. Like sd-varlink, a message that is not an object of
/// `method` (string), `parameters` (object or null), `more`, `oneway` (booleans, not both
/// true), or that asks for `upgrade`, is a protocol violation: the connection is closed
/// (sd-varlink sends no error for it either).
pub fn parse_call(msg: &[u8]) -> Result<Call, FrameError> {
    let text = std::str::from_utf8(msg).map_err(|_| FrameError::Malformed("not UTF-8".into()))?;
    let mut r = Reader::new(text, MAX_DEPTH);
    let mut method = None;
    let mut parameters = Vec::new();
    let (mut more, mut oneway) = (false, false);
    r.skip_ws();
    r.object(|r, key| -> Result<(), FrameError> {
        match key.as_str() {
            "method" if method.is_none() => method = Some(r.string()?),
            "parameters" => parameters = read_parameters(r)?,
            "more" => more = r.boolean()?,
            "oneway" => oneway = r.boolean()?,
            // `upgrade` (taking over the connection) is offered by no method here.
            k => return Err(FrameError::Malformed(format!("unexpected key {k:?}"))),
        }
        Ok(())
    })?;
    r.skip_ws();
    if !r.at_end() {
        return Err(r.error("trailing data").into());
    }
    let method = method.ok_or_else(|| FrameError::Malformed("no method".into()))?;
    if more && oneway {
        return Err(FrameError::Malformed("both more and oneway".into()));
    }
    Ok(Call {
        method,
        parameters,
        more,
        oneway,
    })
}

/// The parameters object (or `null`: none).
fn read_parameters(r: &mut Reader) -> Result<Vec<(String, Value)>, FrameError> {
    match read_value(r, 2)? {
        Value::Null => Ok(Vec::new()),
        Value::Object(members) => Ok(members),
        _ => Err(FrameError::Malformed("parameters must be an object".into())),
    }
}

/// One value; `depth` is the nesting level an array or object here would open.
fn read_value(r: &mut Reader, depth: usize) -> Result<Value, FrameError> {
    Ok(match r.peek() {
        Some(b'"') => Value::Str(r.string()?),
        Some(b't' | b'f') => Value::Bool(r.boolean()?),
        Some(b'[' | b'{') if depth > MAX_DEPTH => return Err(r.error("nesting too deep").into()),
        Some(b'[') => {
            let mut items = Vec::new();
            r.array(|r| -> Result<(), FrameError> {
                items.push(read_value(r, depth + 1)?);
                Ok(())
            })?;
            Value::Array(items)
        }
        Some(b'{') => {
            let mut members = Vec::new();
            r.object(|r, key| -> Result<(), FrameError> {
                members.push((key, read_value(r, depth + 1)?));
                Ok(())
            })?;
            Value::Object(members)
        }
        Some(b'n') => {
            r.skip_value(depth)?;
            Value::Null
        }
        _ => {
            r.skip_value(depth)?;
            Value::Number
        }
    })
}

/// The type a parameter must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `bool`.
    Bool,
    /// `string` (or an enum, checked by the caller).
    Str,
    /// `[]Resource` of `io.systemd.SysUpdate.Notify`: objects of `transfer: string`
    /// and `path: ?string`.
    Resources,
}

impl Kind {
    fn admits(self, v: &Value) -> bool {
        match (self, v) {
            (Kind::Bool, Value::Bool(_)) | (Kind::Str, Value::Str(_)) => true,
            (Kind::Resources, Value::Array(items)) => items.iter().all(|i| {
                let Value::Object(m) = i else { return false };
                m.iter()
                    .any(|(k, v)| k == "transfer" && matches!(v, Value::Str(_)))
                    && m.iter().all(|(k, v)| {
                        matches!(
                            (k.as_str(), v),
                            ("transfer", Value::Str(_)) | ("path", Value::Str(_) | Value::Null)
                        )
                    })
            }),
            _ => false,
        }
    }
}

/// Checks `call`'s parameters against `allowed` as sd-varlink's dispatch tables do:
/// the first parameter that is unknown, sent twice, or not of its type is named in the
/// error. `null` passes only where `nullable` (systemd 262's `io.systemd.sysext`
/// tables refuse it, its `OnCompletedUpdate` takes it).
pub fn check_parameters(
    call: &Call,
    allowed: &[(&str, Kind)],
    nullable: bool,
) -> Result<(), String> {
    for (i, (name, v)) in call.parameters.iter().enumerate() {
        let kind = allowed.iter().find(|(n, _)| n == name).map(|(_, k)| *k);
        let typed = kind.is_some_and(|k| k.admits(v) || (nullable && *v == Value::Null));
        if !typed || call.parameters[..i].iter().any(|(n, _)| n == name) {
            return Err(name.clone());
        }
    }
    Ok(())
}

/// A boolean parameter, if given (after [`check_parameters`]).
pub fn bool_parameter(call: &Call, name: &str) -> Option<bool> {
    call.parameters.iter().find_map(|(n, v)| match v {
        Value::Bool(b) if n == name => Some(*b),
        _ => None,
    })
}

/// A string parameter, if given (after [`check_parameters`]).
pub fn str_parameter<'a>(call: &'a Call, name: &str) -> Option<&'a str> {
    call.parameters.iter().find_map(|(n, v)| match v {
        Value::Str(s) if n == name => Some(s.as_str()),
        _ => None,
    })
}

/// A reply, NUL-terminated: `{"parameters":…}` with `"continues":true` when more
/// replies follow (sd-varlink's key order).
pub fn reply(parameters: Json, continues: bool) -> Vec<u8> {
    let mut o = vec![("parameters".to_string(), parameters)];
    if continues {
        o.push(("continues".to_string(), Json::Bool(true)));
    }
    frame(Json::Object(o))
}

/// An empty reply (`{}`), as sd-varlink sends for a method without results.
pub fn empty_reply() -> Vec<u8> {
    frame(Json::Object(Vec::new()))
}

/// An error reply, NUL-terminated; `parameters` left out when `None`.
pub fn error(name: &str, parameters: Option<Json>) -> Vec<u8> {
    let mut o = vec![("error".to_string(), Json::str(name))];
    if let Some(p) = parameters {
        o.push(("parameters".to_string(), p));
    }
    frame(Json::Object(o))
}

/// `org.varlink.service.InvalidParameter` naming `parameter`.
pub fn invalid_parameter(parameter: &str) -> Vec<u8> {
    error(
        INVALID_PARAMETER,
        Some(Json::obj([("parameter", Json::str(parameter))])),
    )
}

/// `io.systemd.System` for an errno, with sd-varlink's fields: origin, number, name.
pub fn system_error(errno: i32) -> Vec<u8> {
    let mut p = vec![
        ("origin".to_string(), Json::str("linux")),
        (
            "errno".to_string(),
            Json::UInt(u64::from(errno.unsigned_abs())),
        ),
    ];
    if let Some(name) = errno_name(errno) {
        p.push(("errnoName".to_string(), Json::str(name)));
    }
    error(SYSTEM, Some(Json::Object(p)))
}

fn frame(v: Json) -> Vec<u8> {
    let mut b = v.render(false).into_bytes();
    b.push(0);
    b
}

/// The symbolic name of the errnos a merge can fail with (`errnoName` is optional in
/// `io.systemd.System`: others go without).
pub fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ELOOP => "ELOOP",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ENODATA => "ENODATA",
        libc::EPROTO => "EPROTO",
        libc::EBADMSG => "EBADMSG",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ESTALE => "ESTALE",
        libc::EKEYREJECTED => "EKEYREJECTED",
        libc::ESRCH => "ESRCH",
        libc::ENOMEDIUM => "ENOMEDIUM",
        libc::EUCLEAN => "EUCLEAN",
        libc::ENOPKG => "ENOPKG",
        libc::ENOEXEC => "ENOEXEC",
        libc::ENOSYS => "ENOSYS",
        _ => return None,
    })
}

/// The interfaces served, in `GetInfo`'s (sorted) order, each with its description.
pub const INTERFACES: [(&str, &str); 4] = [
    ("io.systemd", IO_SYSTEMD),
    ("io.systemd.SysUpdate.Notify", IO_SYSTEMD_SYSUPDATE_NOTIFY),
    ("io.systemd.sysext", IO_SYSTEMD_SYSEXT),
    ("org.varlink.service", ORG_VARLINK_SERVICE),
];

/// `io.systemd.sysext` as systemd 262's `systemd-sysext` describes it
/// (`src/shared/varlink-io.systemd.sysext.c`).
pub const IO_SYSTEMD_SYSEXT: &str = "interface io.systemd.sysext

type ImageClass(
\tsysext,
\tconfext
)

type ImageType(
\tdirectory,
\tsubvolume,
\traw,
\tblock,
\tmstack
)

method Merge(
\tclass: ?ImageClass,
\tforce: ?bool,
\tnoReload: ?bool,
\tnoexec: ?bool,
\t# Controls whether interactive authentication (via polkit) shall be allowed. If unspecified defaults to false.
\tallowInteractiveAuthentication: ?bool
) -> ()

method Unmerge(
\tclass: ?ImageClass,
\tnoReload: ?bool,
\t# Controls whether interactive authentication (via polkit) shall be allowed. If unspecified defaults to false.
\tallowInteractiveAuthentication: ?bool
) -> ()

method Refresh(
\tclass: ?ImageClass,
\tforce: ?bool,
\tnoReload: ?bool,
\talwaysRefresh: ?bool,
\tnoexec: ?bool,
\t# Controls whether interactive authentication (via polkit) shall be allowed. If unspecified defaults to false.
\tallowInteractiveAuthentication: ?bool
) -> ()

# [Requires 'more' flag]
method List(
\tclass: ?ImageClass,
\t# Controls whether interactive authentication (via polkit) shall be allowed. If unspecified defaults to false.
\tallowInteractiveAuthentication: ?bool
) -> (
\tClass: ImageClass,
\tType: ImageType,
\tName: string,
\tPath: ?string,
\tReadOnly: bool,
\tCreationTimestamp: ?int,
\tModificationTimestamp: ?int,
\tUsage: ?int,
\tUsageExclusive: ?int,
\tLimit: ?int,
\tLimitExclusive: ?int
)

error NoImagesFound()

error AlreadyMerged(
\thierarchy: string
)
";

/// `io.systemd.SysUpdate.Notify`, by which `systemd-sysupdate` says an update is
/// complete (its `systemd-sysupdate-notify-sysext.socket` starts systemd-sysext).
pub const IO_SYSTEMD_SYSUPDATE_NOTIFY: &str = "interface io.systemd.SysUpdate.Notify

type Resource(
\ttransfer: string,
\tpath: ?string
)

method OnCompletedUpdate(
\tcomponent: ?string,
\tversion: ?string,
\tresources: ?[]Resource
) -> ()
";

/// `io.systemd`, the errors sd-varlink uses across services (systemd 262).
pub const IO_SYSTEMD: &str = "interface io.systemd

# Local error if a Varlink connection is disconnected (this never crosses the wire and is synthesized locally only).
error Disconnected()

# A method call time-out has been reached (also synthesized locally, does not cross wire)
error TimedOut()

# Some form of protocol error (also synthesized locally, does not cross wire)
error Protocol()

# A generic Linux system error (\"errno\"s).
error System(
\t# The origin of this system error, typically 'linux' to indicate Linux error numbers.
\torigin: ?string,
\t# The Linux error name, i.e. ENOENT, EHWPOISON or similar.
\terrnoName: ?string,
\t# The numeric Linux error number. Typically the name is preferable, if specified.
\terrno: ?int
)
";

/// `org.varlink.service`, the introspection interface every Varlink service offers
/// (as systemd 262 describes it).
pub const ORG_VARLINK_SERVICE: &str = "# General Varlink service interface
interface org.varlink.service

# Get service meta information
method GetInfo() -> (
\t# String identifying the vendor of this service
\tvendor: string,
\t# String identifying the product implementing this service
\tproduct: string,
\t# Version string of this product
\tversion: string,
\t# Web URL pointing to additional information about this service
\turl: string,
\t# List of interfaces implemented by this service
\tinterfaces: []string
)

# Get description of an implemented interface in Varlink IDL format
method GetInterfaceDescription(
\t# Name of interface to query interface description of
\tinterface: string
) -> (
\t# Interface description in Varlink IDL format
\tdescription: string
)

# Error returned if a method is called on an unknown interface
error InterfaceNotFound(
\t# Name of interface that was called but does not exist
\tinterface: string
)

# Error returned if an unknown method is called on an known interface
error MethodNotFound(
\t# Name of method that was called but does not exist
\tmethod: string
)

# Error returned if a method is called that is known but not implemented
error MethodNotImplemented(
\t# Name of method that was called but is not implemented
\tmethod: string
)

# Error returned if a method is called with an invalid parameter
error InvalidParameter(
\t# Name of the invalid parameter
\tparameter: string
)

# General permission error
error PermissionDenied()

# A method was called with the 'more' flag off, but it may only be called with the flag turned on
error ExpectedMore()
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_messages_at_nul() {
        // Calls split over reads, many in one read.
        let mut f = Framer::default();
        let mut got = Vec::new();
        let stream = [
            &b"{\"method\":\"a.B\"}\0{\"meth"[..],
            b"od\":\"c.D\"}\0",
            &b"{}\0".repeat(1000),
        ];
        for bytes in stream {
            f.push(bytes);
            while let Some(m) = f.next_message().unwrap() {
                got.push(String::from_utf8(m).unwrap());
            }
        }
        assert!(f.is_empty());
        assert_eq!(got.len(), 1002);
        assert_eq!(
            got[..3],
            [r#"{"method":"a.B"}"#, r#"{"method":"c.D"}"#, "{}"]
        );
        f.push(b"{\"a\"");
        assert_eq!(f.next_message().unwrap(), None);
        assert!(!f.is_empty());
        let mut big = Framer::default();
        big.push(&vec![b' '; MAX_MESSAGE + 1]);
        assert_eq!(big.next_message(), Err(FrameError::TooLarge));
        let mut big = Framer::default();
        let mut m = vec![b' '; MAX_MESSAGE + 1];
        m.push(0);
        big.push(&m);
        assert_eq!(big.next_message(), Err(FrameError::TooLarge));
    }

    #[test]
    fn parses_calls_as_systemds_clients_send_them() {
        // `varlinkctl call --more ADDR io.systemd.sysext.List '{}'` (systemd 262).
        let c = parse_call(br#"{"method":"io.systemd.sysext.List","parameters":{},"more":true}"#)
            .unwrap();
        assert_eq!(c.method, "io.systemd.sysext.List");
        assert_eq!(c.interface(), "io.systemd.sysext");
        assert!(c.more && !c.oneway && c.parameters.is_empty());
        // `varlinkctl introspect` asks GetInfo without parameters.
        let c = parse_call(br#"{"method":"org.varlink.service.GetInfo"}"#).unwrap();
        assert!(c.parameters.is_empty() && !c.more);
        let c = parse_call(
            br#" { "method" : "io.systemd.sysext.Merge", "parameters" : { "force" : true, "class" : "confext", "x" : [1, {"y": null}], "z": {"a": 1} }, "oneway" : true } "#,
        )
        .unwrap();
        assert!(c.oneway);
        assert_eq!(
            c.parameters,
            vec![
                ("force".into(), Value::Bool(true)),
                ("class".into(), Value::Str("confext".into())),
                (
                    "x".into(),
                    Value::Array(vec![
                        Value::Number,
                        Value::Object(vec![("y".into(), Value::Null)])
                    ])
                ),
                ("z".into(), Value::Object(vec![("a".into(), Value::Number)])),
            ]
        );
        let c = parse_call(br#"{"method":"a.B","parameters":null}"#).unwrap();
        assert!(c.parameters.is_empty());
    }

    #[test]
    fn refuses_malformed_calls() {
        // One message a line (the first is empty).
        let bad = r#"
{bad
[1]
{}
{"parameters":{}}
{"method":1}
{"method":"a.B","parameters":[]}
{"method":"a.B","more":1}
{"method":"a.B","more":true,"oneway":true}
{"method":"a.B","upgrade":true}
{"method":"a.B","extra":1}
{"method":"a.B"} x
{"method":"a.B","method":"c.D"}
{"method":"a.B","parameters":{"x":[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}}"#;
        for m in bad.split('\n') {
            assert!(parse_call(m.as_bytes()).is_err(), "{m:?}");
        }
        assert!(parse_call(b"{\"method\":\"a\xff\"}").is_err());
    }

    #[test]
    fn checks_parameters_as_dispatch_tables_do() {
        let allowed = [("class", Kind::Str), ("force", Kind::Bool)];
        let call = |p: &str| {
            parse_call(format!("{{\"method\":\"a.B\",\"parameters\":{p}}}").as_bytes()).unwrap()
        };
        assert_eq!(
            check_parameters(&call(r#"{"force":false,"class":"x"}"#), &allowed, false),
            Ok(())
        );
        for (p, name) in [
            (r#"{"force":"yes"}"#, "force"),
            (r#"{"force":null}"#, "force"),
            (r#"{"class":1}"#, "class"),
            (r#"{"bogus":true}"#, "bogus"),
            (r#"{"class":"a","class":"b"}"#, "class"),
        ] {
            assert_eq!(
                check_parameters(&call(p), &allowed, false),
                Err(name.into()),
                "{p}"
            );
        }
        // `OnCompletedUpdate`'s: nullable, and resources checked item by item.
        let notify = [("version", Kind::Str), ("resources", Kind::Resources)];
        for (p, want) in [
            (r#"{"version":null,"resources":null}"#, Ok(())),
            (
                r#"{"resources":[{"transfer":"a","path":null},{"transfer":"b","path":"/x"}]}"#,
                Ok(()),
            ),
            (r#"{"resources":[1]}"#, Err("resources".to_string())),
            (
                r#"{"resources":[{"path":"/x"}]}"#,
                Err("resources".to_string()),
            ),
            (
                r#"{"resources":[{"transfer":"a","other":1}]}"#,
                Err("resources".to_string()),
            ),
            (r#"{"resources":"a"}"#, Err("resources".to_string())),
        ] {
            assert_eq!(check_parameters(&call(p), &notify, true), want, "{p}");
        }
        let c = call(r#"{"force":true,"class":"sysext"}"#);
        assert_eq!(bool_parameter(&c, "force"), Some(true));
        assert_eq!(bool_parameter(&c, "class"), None);
        assert_eq!(str_parameter(&c, "class"), Some("sysext"));
    }

    #[test]
    fn writes_replies_as_sd_varlink() {
        // Bytes as systemd 262's systemd-sysext sent them.
        assert_eq!(
            invalid_parameter("class"),
            b"{\"error\":\"org.varlink.service.InvalidParameter\",\"parameters\":{\"parameter\":\"class\"}}\0"
        );
        assert_eq!(
            system_error(libc::EPERM),
            b"{\"error\":\"io.systemd.System\",\"parameters\":{\"origin\":\"linux\",\"errno\":1,\"errnoName\":\"EPERM\"}}\0"
        );
        assert_eq!(
            error("io.systemd.sysext.NoImagesFound", None),
            b"{\"error\":\"io.systemd.sysext.NoImagesFound\"}\0"
        );
        assert_eq!(empty_reply(), b"{}\0");
        assert_eq!(
            reply(Json::obj([("Name", Json::str("a"))]), true),
            b"{\"parameters\":{\"Name\":\"a\"},\"continues\":true}\0"
        );
        assert_eq!(system_error(4095), b"{\"error\":\"io.systemd.System\",\"parameters\":{\"origin\":\"linux\",\"errno\":4095}}\0");
    }
}
