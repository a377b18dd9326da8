//! MQTT framing shared by the broker, the end-to-end tests and `chatbench`: the variable byte
//! integer (remaining length, property length), the fixed header, and two-byte-length fields.
//! One copy, so that the server and the clients that test it cannot disagree about the bytes.

pub mod field;
pub mod frame;
pub mod varint;

/// Runner settings of this crate's property tests: fixed seed and no failure files, unless the
/// environment asks otherwise (`PROPTEST_CASES`, `PROPTEST_RNG_SEED`), so runs are repeatable.
#[cfg(test)]
fn proptest_config(default_cases: u32) -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, RngSeed};
    let mut c = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = default_cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(0x6d71_7474);
    }
    c.failure_persistence = None;
    c
}
