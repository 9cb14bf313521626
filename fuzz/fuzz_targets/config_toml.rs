//! The TOML config: parsing never panics; an accepted config validates, survives a
//! serialise / parse round trip unchanged, and builds the server state.
#![no_main]

use abacus_server::{AppState, Config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_toml_str(text) else {
        return;
    };
    config.validate().expect("from_toml_str validated it");
    let _ = (
        config.windows_retained(),
        config.evict_after_idle(),
        config.window(),
    );
    let again = toml::to_string(&config).expect("a parsed config serialises");
    let back = Config::from_toml_str(&again)
        .unwrap_or_else(|e| panic!("re-parsing {again:?} failed: {e}"));
    assert_eq!(back, config, "round trip changed the config");
    // Every accepted config must start (no sockets are opened here).
    if let Err(e) = AppState::new(config) {
        panic!("accepted config does not build: {e}");
    }
});
