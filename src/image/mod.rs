//! On-disk formats of disk-image extensions, as pure parsers over bytes (fuzzable, no
//! syscalls): GPT, file system superblocks, the dm-verity superblock and signature
//! partition, and systemd's image policy strings.

pub mod fs;
pub mod gpt;
pub mod open;
pub mod policy;
pub mod verity;
