//! Reading a root, its extensions and its hierarchies: files are opened (safely inside
//! the root) and read, nothing is changed. What is found is plain data plus the open
//! handles that the plan's application uses, so what was checked is what is mounted.

pub mod cgroup;
pub mod conf;
pub mod discover;
pub mod error;
pub mod facts;
pub mod firstboot;
pub mod fsutil;
pub mod image;
pub mod metadata;
pub mod release;
pub mod stamp;
pub mod units;

pub use facts::{
    inspect, Candidate, DirOpener, Facts, Handles, HierarchyFacts, HostFacts, Inspection,
    MutableDir, OnUnusable, Opener,
};
