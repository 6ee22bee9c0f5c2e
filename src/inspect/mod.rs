//! Reading a root, its extensions and its hierarchies: files are opened (safely inside
//! the root) and read, nothing is changed. What is found is plain data plus the open
//! handles that the plan's application uses, so what was checked is what is mounted.

pub mod discover;
pub mod fsutil;
pub mod metadata;
pub mod release;
