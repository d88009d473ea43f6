//! `uniffi-bindgen`: generates the Kotlin, Swift and Python sources of the bindings from the built
//! library (`cargo run -p shidao-bindings --features cli --bin uniffi-bindgen -- generate …`; see
//! `bindings/README.md` for the one command that generates all three).

fn main() {
    uniffi::uniffi_bindgen_main()
}
