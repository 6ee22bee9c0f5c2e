//! STUB: the C ABI is being written.
