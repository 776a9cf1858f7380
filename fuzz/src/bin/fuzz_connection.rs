//! AFL entry point: [`warren_fuzz::connection`] on each input.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        warren_fuzz::connection(data);
    });
}
