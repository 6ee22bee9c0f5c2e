//! The kernel layer: every syscall that changes the system (mounts, loop and dm devices,
//! the keyring, the staging tmpfs, files written into merged trees) lives here, and only
//! here is `unsafe` allowed. Each operation is undone on error.

pub mod activate;
pub mod apply;
pub mod dm;
pub mod hierarchy;
pub mod keyring;
pub mod loopdev;
pub mod manager;
pub mod mount;
pub mod origin;
pub mod staging;
pub mod target;
pub mod txn;
pub mod varlink;
