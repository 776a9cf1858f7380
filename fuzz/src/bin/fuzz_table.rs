//! AFL entry point: [`warren_fuzz::table`] on each input.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        warren_fuzz::table(data);
    });
}
