//! AFL entry point: [`warren_fuzz::properties`] on each input.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        warren_fuzz::properties(data);
    });
}
