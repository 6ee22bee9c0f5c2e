//! The Varlink wire format on arbitrary bytes from a peer: framed at NULs, each message
//! parsed as a call and its parameters checked as the service does. Never a panic; a
//! call that parses has a method and never both `more` and `oneway`.
#![no_main]

use extmerge::format::varlink::{check_parameters, parse_call, Framer, Kind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut f = Framer::default();
    // Fed in two reads split where the first byte says, as a socket may deliver it.
    let cut = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    for part in [&data[..cut], &data[cut..]] {
        f.push(part);
        while let Ok(Some(msg)) = f.next_message() {
            if let Ok(call) = parse_call(&msg) {
                assert!(!(call.more && call.oneway));
                let kinds = [("class", Kind::Str), ("force", Kind::Bool), ("resources", Kind::Resources)];
                let _ = check_parameters(&call, &kinds, call.oneway);
            }
        }
    }
});
