#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| shidao_fuzz::checks::envelope(data));
