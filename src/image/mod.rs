//! Disk-image extensions. The on-disk formats are pure parsers over bytes (fuzzable,
//! no syscalls): GPT, file system superblocks, the dm-verity superblock and signature
//! partition, and systemd's image policy strings; [`open`] puts them together with
//! loop devices, dm-verity and the mount API to open an image as an extension.

pub mod crc;
pub mod fs;
pub mod gpt;
pub mod open;
pub mod policy;
pub mod verity;
