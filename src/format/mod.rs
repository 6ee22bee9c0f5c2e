//! Pure parsers and formats: bytes or text in, values out. No file is opened and no
//! state is changed here, so every module is unit-tested and fuzzed without root.

pub mod arch;
pub mod bytes;
pub mod class;
pub mod cmdline;
pub mod conf;
pub mod crc;
pub mod escape;
pub mod fs;
pub mod generator;
pub mod gpt;
pub mod json;
pub mod mountinfo;
pub mod name;
pub mod os_release;
pub mod policy;
pub(crate) mod strerror;
pub mod text;
pub mod unit;
pub mod varlink;
pub mod verity;
pub mod vpick;
