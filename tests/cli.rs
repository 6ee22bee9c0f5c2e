//! The programs around the library: `extmerge` invoked as `systemd-sysext` /
//! `systemd-confext` (`--help`, `--version`), the privilege check of the verbs that
//! mount, the wording of errors (strerror's words without Rust's " (os error N)", the
//! file named, each front-end's own hints) and `extmerge-initrd`'s command line and
//! repeated runs. Tests that mount or switch users run as root in a private mount
//! namespace (see `merge/common.rs`) and print `SKIP: needs root` otherwise.

#[path = "support/ns.rs"]
mod ns;

#[path = "merge/common.rs"]
mod common;

#[path = "cli/argv0.rs"]
mod argv0;

#[path = "cli/privileges.rs"]
mod privileges;

#[path = "cli/messages.rs"]
mod messages;

#[path = "cli/initrd.rs"]
mod initrd;

#[path = "cli/output.rs"]
mod output;

#[path = "cli/generator.rs"]
mod generator;
