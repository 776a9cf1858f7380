//! AFL entry point: [`warren_fuzz::frame`] on each input.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        warren_fuzz::frame(data);
    });
}
