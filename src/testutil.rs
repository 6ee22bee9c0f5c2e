//! Helpers shared by the unit tests' randomized loops (built only for `cargo test`).

/// xorshift64: a tiny deterministic generator, so a failing iteration can be replayed.
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// How many iterations a randomized test runs: `n`, or a thousandth of it under miri,
/// which interprets every instruction (the loops are there for coverage, miri for UB).
pub(crate) const fn iterations(n: usize) -> usize {
    if cfg!(miri) {
        n / 1000 + 1
    } else {
        n
    }
}
