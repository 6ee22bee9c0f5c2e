//! The Varlink service `io.systemd.sysext`, driven over its socket as systemd's clients
//! do: the server is started by `systemd-socket-activate` (as `systemd-sysext.socket`
//! starts it: `--accept`, fd name `varlink`; and on a listening socket), with `--root=`
//! a fixture root in a private mount namespace; the client is written here. Every
//! method is called and its effect checked on the mounts and files, then hostile peers:
//! malformed, unterminated and over-size messages, unknown methods and interfaces,
//! wrong parameter types, peers leaving mid-message and mid-stream, many connections.
//! Root only (prints `SKIP: needs root` otherwise).

#[path = "support/ns.rs"]
mod ns;

#[path = "merge/common.rs"]
mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A server under `systemd-socket-activate`, killed when dropped.
struct Server {
    child: Child,
    sock: PathBuf,
}

impl Server {
    /// Starts `extmerge` as `systemd-sysext --root=ROOT` behind `systemd-socket-activate`
    /// with the fd name systemd's socket unit gives (`varlink`). On a listening socket
    /// the I/O timeout is 1 s (45 s by default; builds with fault injection only).
    fn start(fx: &Fx, accept: bool) -> Server {
        let link = fx.base.join("systemd-sysext");
        let _ = std::os::unix::fs::symlink(BIN, &link);
        let sock = fx.base.join("io.systemd.sysext");
        let mut cmd = Command::new("systemd-socket-activate");
        if accept {
            cmd.arg("--accept");
        }
        // systemd-socket-activate passes on only the variables named with -E.
        let timeout = if accept { 45_000 } else { 1000 };
        cmd.arg(format!("--setenv=EXTMERGE_VARLINK_TIMEOUT_MS={timeout}"))
            .arg("--fdname=varlink")
            .arg("-l")
            .arg(&sock)
            .arg("--")
            .arg(&link)
            .arg(format!("--root={}", fx.root.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("systemd-socket-activate");
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&sock).is_err() {
            assert!(Instant::now() < deadline, "socket never appeared");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, sock }
    }

    fn connect(&self) -> Client {
        let s = UnixStream::connect(&self.sock).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client { s, buf: Vec::new() }
    }

    /// Still running (a listening socket's server must outlive every peer)?
    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client {
    s: UnixStream,
    buf: Vec<u8>,
}

impl Client {
    fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes)
    }

    /// One message from the server; `None` when it closed the connection.
    fn recv(&mut self) -> Option<Value> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == 0) {
                let msg: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(serde_json::from_slice(&msg[..i]).expect("reply is JSON"));
            }
            let mut b = [0u8; 65536];
            match self.s.read(&mut b) {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("no reply, and the connection still open")
                }
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
            }
        }
    }

    /// Calls and collects the replies up to the one without `continues`.
    fn call(&mut self, call: Value) -> Vec<Value> {
        let mut m = serde_json::to_vec(&call).unwrap();
        m.push(0);
        self.send_raw(&m).expect("send");
        let mut out = Vec::new();
        loop {
            let r = self.recv().expect("a reply");
            let more = r["continues"] == json!(true);
            out.push(r);
            if !more {
                return out;
            }
        }
    }

    fn call1(&mut self, method: &str, parameters: Value) -> Value {
        let mut r = self.call(json!({"method": method, "parameters": parameters}));
        assert_eq!(r.len(), 1, "{r:?}");
        r.pop().unwrap()
    }

    /// Did the server close the connection (after whatever it sent)?
    fn closed(&mut self) -> bool {
        self.recv().is_none()
    }
}

fn error_of(r: &Value) -> &str {
    r["error"].as_str().unwrap_or("")
}

fn fixture(base: &Path) -> Fx {
    let fx = Fx::new(base);
    fx.sysext("hello", &[("usr/bin/hello", "hello from sysext\n")]);
    fx.sysext("world", &[("usr/share/world", "world\n")]);
    fx
}

/// Runs `body` in a private mount namespace with the fixture root and a server on it
/// (`accept`: a process per connection, as systemd's `Accept=yes`).
fn served(accept: bool, body: impl FnOnce(&Fx, &mut Server) + Send + 'static) {
    ns_test(move |base| {
        let fx = fixture(base);
        let mut server = Server::start(&fx, accept);
        body(&fx, &mut server);
    });
}

/// As systemd's `Accept=yes` socket: each connection its own server process, which
/// serves several calls in turn.
#[test]
fn accepted_connection_serves_every_method() {
    served(true, |fx, server| {
        let mut c = server.connect();

        let info = c.call1("org.varlink.service.GetInfo", json!({}));
        assert_eq!(
            info["parameters"]["interfaces"],
            json!([
                "io.systemd",
                "io.systemd.SysUpdate.Notify",
                "io.systemd.sysext",
                "org.varlink.service"
            ])
        );
        let d = c.call1(
            "org.varlink.service.GetInterfaceDescription",
            json!({"interface": "io.systemd.sysext"}),
        );
        assert!(d["parameters"]["description"]
            .as_str()
            .unwrap()
            .contains("method Refresh(\n\tclass: ?ImageClass,"));

        // List: a stream, one extension a reply, only with `more`.
        let list =
            c.call(json!({"method": "io.systemd.sysext.List", "parameters": {}, "more": true}));
        assert_eq!(list.len(), 2, "{list:?}");
        assert_eq!(list[0]["continues"], json!(true));
        assert!(list[1].get("continues").is_none());
        let mut names: Vec<&str> = list
            .iter()
            .map(|r| r["parameters"]["Name"].as_str().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["hello", "world"]);
        let p = &list[0]["parameters"];
        assert_eq!(p["Type"], "directory");
        assert_eq!(p["Class"], "sysext");
        assert_eq!(p["ReadOnly"], false);
        assert!(p["Path"].as_str().unwrap().ends_with(&format!(
            "/var/lib/extensions/{}",
            p["Name"].as_str().unwrap()
        )));
        let r = c.call1("io.systemd.sysext.List", json!({}));
        assert_eq!(error_of(&r), "org.varlink.service.ExpectedMore");
        let r = c.call(json!({"method": "io.systemd.sysext.List", "parameters": {"class": "confext"}, "more": true}));
        assert_eq!(r, [json!({"error": "io.systemd.sysext.NoImagesFound"})]);

        // Merge: the files appear; merging again is AlreadyMerged, naming the hierarchy.
        assert_eq!(c.call1("io.systemd.sysext.Merge", json!({})), json!({}));
        assert_eq!(
            fx.read("/usr/bin/hello").as_deref(),
            Some("hello from sysext\n")
        );
        assert_eq!(fx.read("/usr/share/world").as_deref(), Some("world\n"));
        assert_eq!(fx.overlay_at("/usr").fstype, "overlay");
        let r = c.call1("io.systemd.sysext.Merge", json!({"noReload": true}));
        assert_eq!(
            r,
            json!({"error": "io.systemd.sysext.AlreadyMerged", "parameters": {"hierarchy": "/usr"}})
        );

        // Refresh takes in a new extension and drops a removed one.
        fx.sysext("third", &[("usr/share/third", "3\n")]);
        std::fs::remove_dir_all(fx.path("/var/lib/extensions/world")).unwrap();
        assert_eq!(
            c.call1(
                "io.systemd.sysext.Refresh",
                json!({"alwaysRefresh": true, "force": false})
            ),
            json!({})
        );
        assert_eq!(fx.read("/usr/share/third").as_deref(), Some("3\n"));
        assert_eq!(fx.read("/usr/share/world"), None);

        // Unmerge: the host's /usr again.
        assert_eq!(
            c.call1("io.systemd.sysext.Unmerge", json!({"noReload": true})),
            json!({})
        );
        assert!(
            fx.mounts_at("/usr").is_empty(),
            "{:?}",
            fx.mounts_at("/usr")
        );
        assert_eq!(fx.read("/usr/bin/hello"), None);
        assert_eq!(
            fx.read("/usr/bin/host-tool").as_deref(),
            Some("host tool\n")
        );

        // A oneway call is carried out without a reply; the next call is answered.
        let mut m =
            br#"{"method":"io.systemd.sysext.Merge","parameters":{},"oneway":true}"#.to_vec();
        m.push(0);
        c.send_raw(&m).unwrap();
        let info = c.call1("org.varlink.service.GetInfo", json!({}));
        assert!(info["parameters"]["vendor"].is_string());
        assert_eq!(
            fx.read("/usr/bin/hello").as_deref(),
            Some("hello from sysext\n")
        );
        assert_eq!(c.call1("io.systemd.sysext.Unmerge", json!({})), json!({}));

        // The confext class, by parameter.
        fx.confext("conf", &[("etc/conf.d/x", "x\n")]);
        assert_eq!(
            c.call1("io.systemd.sysext.Merge", json!({"class": "confext"})),
            json!({})
        );
        assert_eq!(fx.read("/etc/conf.d/x").as_deref(), Some("x\n"));
        assert!(fx.mounts_at("/usr").is_empty());
        assert_eq!(
            c.call1("io.systemd.sysext.Unmerge", json!({"class": "confext"})),
            json!({})
        );
        assert_eq!(fx.read("/etc/conf.d/x"), None);

        // systemd-sysupdate's notification refreshes both classes.
        let r = c.call1(
            "io.systemd.SysUpdate.Notify.OnCompletedUpdate",
            json!({"component": "os", "version": "2", "resources": [{"transfer": "t"}]}),
        );
        assert_eq!(r, json!({}));
        assert_eq!(fx.read("/etc/conf.d/x").as_deref(), Some("x\n"));
        assert_eq!(
            fx.read("/usr/bin/hello").as_deref(),
            Some("hello from sysext\n")
        );
        for class in ["confext", "sysext"] {
            assert_eq!(
                c.call1("io.systemd.sysext.Unmerge", json!({"class": class})),
                json!({})
            );
        }
        assert!(fx.mounts_at("/usr").is_empty() && fx.mounts_at("/etc").is_empty());
    });
}

/// Calls and the errors systemd 262's systemd-sysext answers them with: `METHOD
/// PARAMETERS => REPLY`.
const BAD_CALLS: &str = r#"
io.systemd.sysext.Nope {} => {"error":"org.varlink.service.MethodNotFound","parameters":{"method":"io.systemd.sysext.Nope"}}
io.nope.Nope {} => {"error":"org.varlink.service.MethodNotFound","parameters":{"method":"io.nope.Nope"}}
io.systemd.sysext.Merge {"force":"yes"} => {"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"force"}}
io.systemd.sysext.Merge {"class":"usr"} => {"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"class"}}
io.systemd.sysext.Refresh {"alwaysRefresh":1} => {"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"alwaysRefresh"}}
io.systemd.sysext.Unmerge {"force":true} => {"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"force"}}
io.systemd.sysext.Unmerge {"noReload":null} => {"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"noReload"}}
io.systemd.SysUpdate.Notify.OnCompletedUpdate {"component":5} => {"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"component"}}
io.systemd.SysUpdate.Notify.OnCompletedUpdate {"resources":"a"} => {"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"resources"}}
org.varlink.service.GetInterfaceDescription {"interface":"io.nope"} => {"error":"org.varlink.service.InterfaceNotFound","parameters":{"interface":"io.nope"}}
"#;

/// Errors as systemd 262's systemd-sysext answers them.
#[test]
fn refuses_bad_calls_with_varlink_errors() {
    served(true, |fx, server| {
        let mut c = server.connect();
        for line in BAD_CALLS.lines().filter(|l| !l.is_empty()) {
            let (call, want) = line.split_once(" => ").unwrap();
            let (method, params) = call.split_once(' ').unwrap();
            let params: Value = serde_json::from_str(params).unwrap();
            let r = c.call1(method, params);
            assert_eq!(r, serde_json::from_str::<Value>(want).unwrap(), "{line}");
        }
        // Nothing was merged by the refused calls.
        assert!(fx.mounts_at("/usr").is_empty());
    });
}

/// A listening socket: the server survives hostile peers and keeps serving.
#[test]
fn listening_socket_survives_hostile_peers() {
    served(false, |fx, server| {
        let healthy = |server: &mut Server| {
            let mut c = server.connect();
            let r = c.call1("org.varlink.service.GetInfo", json!({}));
            assert!(r["parameters"]["interfaces"].is_array(), "{r}");
            assert!(server.alive());
        };
        healthy(server);

        // Malformed messages close the connection, without a reply.
        for bad in [
            &b"{\"method\":\0"[..],
            b"null\0",
            b"{\"method\":\"io.systemd.sysext.List\",\"oneway\":true,\"more\":true}\0",
            b"\xff\xfe\0",
            b"\0",
        ] {
            let mut c = server.connect();
            c.send_raw(bad).unwrap();
            assert!(c.closed(), "{:?}", String::from_utf8_lossy(bad));
            healthy(server);
        }

        // A message without its NUL, then the peer leaves.
        let mut c = server.connect();
        c.send_raw(br#"{"method":"io.systemd.sysext.List","param"#)
            .unwrap();
        drop(c);
        healthy(server);

        // Over the size cap (16 MiB) without a NUL: cut off.
        let mut c = server.connect();
        let chunk = vec![b' '; 1 << 20];
        let mut sent = 0;
        while sent <= 17 && c.send_raw(&chunk).is_ok() {
            sent += 1;
        }
        assert!(c.closed());
        healthy(server);

        // A peer leaving in the middle of a `more` stream (many replies).
        for i in 0..40 {
            fx.sysext(&format!("ext{i:02}"), &[]);
        }
        for _ in 0..5 {
            let mut c = server.connect();
            c.send_raw(
                b"{\"method\":\"io.systemd.sysext.List\",\"parameters\":{},\"more\":true}\0",
            )
            .unwrap();
            let first = c.recv().unwrap();
            assert_eq!(first["continues"], json!(true));
            drop(c);
        }
        healthy(server);
        let mut c = server.connect();
        let all =
            c.call(json!({"method": "io.systemd.sysext.List", "parameters": {}, "more": true}));
        assert_eq!(all.len(), 42);

        // A silent peer, and one that stops mid-message, are cut off after the I/O
        // timeout (45 s without fault injection: the clients wait longer).
        let mut quiet = server.connect();
        let mut half = server.connect();
        for c in [&quiet, &half] {
            c.s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        }
        half.send_raw(b"{\"method\":").unwrap();
        assert!(quiet.closed() && half.closed());
        healthy(server);

        // A silent peer holds up nobody; many peers at once, and one after another.
        let _silent = server.connect();
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let sock = server.sock.clone();
                std::thread::spawn(move || {
                    let s = UnixStream::connect(&sock).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    let mut c = Client { s, buf: Vec::new() };
                    let r = c.call1("io.systemd.sysext.Nope", json!({}));
                    assert_eq!(error_of(&r), "org.varlink.service.MethodNotFound");
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for _ in 0..200 {
            let mut c = server.connect();
            c.send_raw(b"{\"method\":\"org.varlink.service.GetInfo\"}\0")
                .unwrap();
            drop(c);
        }
        healthy(server);

        // And it still merges.
        let mut c = server.connect();
        assert_eq!(c.call1("io.systemd.sysext.Merge", json!({})), json!({}));
        assert_eq!(
            fx.read("/usr/bin/hello").as_deref(),
            Some("hello from sysext\n")
        );
        assert_eq!(c.call1("io.systemd.sysext.Unmerge", json!({})), json!({}));
        assert!(fx.mounts_at("/usr").is_empty());
        assert!(server.alive());
    });
}
