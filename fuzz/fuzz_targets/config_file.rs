//! Config files (`config.toml`, X04) with `HEARTHNET_*` overrides, read as
//! `hearthnet_config::load` reads them.
//!
//! The input is the file; lines after a `0xff` byte are environment
//! variables (`NAME=value`). Asserts: reading never panics, and a config
//! that loads writes (`Config::to_toml`, what `save` writes) a file that
//! loads, without the environment, to the same config but for the LLM
//! backends' API keys, which come from the environment and are never
//! written.
#![no_main]

use hearthnet_config::{Env, fuzz_parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (file, env) = hearthnet_fuzz::split(data);
    let Ok(text) = std::str::from_utf8(file) else {
        return;
    };
    let env = String::from_utf8_lossy(env);
    let env = Env::from_pairs(env.lines().filter_map(|l| l.split_once('=')));
    let Ok(mut config) = fuzz_parse(text, &env) else {
        return;
    };
    let written = config.to_toml().expect("a loaded config encodes");
    for backend in &mut config.llm.backends {
        backend.api_key = None;
    }
    let back = fuzz_parse(&written, &Env::default())
        .unwrap_or_else(|e| panic!("{e}\n--- written:\n{written}"));
    assert_eq!(back, config, "written:\n{written}");
});
