//! AFL entry point: [`warren_fuzz::method`] on each input.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        warren_fuzz::method(data);
    });
}
