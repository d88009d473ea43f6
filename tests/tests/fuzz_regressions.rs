//! The fuzz targets' checks (`fuzz/src/checks.rs`) in the ordinary test run: every saved input
//! of `fuzz/regressions/<target>/` (crashes once found, kept after their fix), the product's
//! own templates and expressions, and a few hundred generated inputs per target from a fixed
//! seed. The long runs are `bash fuzz/run.sh`; figures in docs/reliability.md.

#[path = "../../fuzz/src/checks.rs"]
#[allow(dead_code)]
mod checks;

use std::path::Path;

use shidao_core::sample::Rng;

fn saved(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions").join(target);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
            continue;
        }
        out.push((path.display().to_string(), std::fs::read(&path).expect("read")));
    }
    out
}

fn random_inputs(seed: u64, count: usize, max_len: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..count).map(|_| (0..rng.below(max_len)).map(|_| rng.below(256) as u8).collect()).collect()
}

fn templates() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/templates");
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .expect("templates")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("read"))
        .collect();
    assert!(out.len() >= 6, "the built-in templates are missing");
    out.sort();
    out
}

#[test]
fn protocol_inputs() {
    for (name, bytes) in saved("protocol") {
        println!("{name}");
        checks::protocol(&bytes);
    }
    for input in random_inputs(1, 300, 400) {
        checks::protocol(&input);
    }
}

#[test]
fn envelope_inputs() {
    for (name, bytes) in saved("envelope") {
        println!("{name}");
        checks::envelope(&bytes);
    }
    for input in random_inputs(5, 300, 400) {
        checks::envelope(&input);
    }
}

#[test]
fn template_inputs() {
    for (name, bytes) in saved("template") {
        println!("{name}");
        checks::template(&bytes);
    }
    for src in templates() {
        checks::template(src.as_bytes());
        // Damaged copies of a real template: cut short, a byte changed.
        let mut rng = Rng::new(src.len() as u64);
        for _ in 0..20 {
            let mut b = src.as_bytes().to_vec();
            let at = rng.below(b.len());
            if rng.below(2) == 0 {
                b.truncate(at);
            } else {
                b[at] = rng.below(128) as u8;
            }
            checks::template(&b);
        }
    }
}

#[test]
fn expression_inputs() {
    for (name, bytes) in saved("expression") {
        println!("{name}");
        checks::expression(&bytes);
    }
    let mut exprs = 0;
    for src in templates() {
        let json: serde_json::Value = serde_json::from_str(&src).expect("json");
        let mut stack = vec![&json];
        while let Some(v) = stack.pop() {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        if let (true, Some(s)) = (["compute", "required", "expr", "relevant", "constraint"].contains(&k.as_str()), v.as_str()) {
                            for extra in random_inputs(exprs, 4, 24) {
                                let mut input = s.as_bytes().to_vec();
                                input.push(0);
                                input.extend(extra);
                                checks::expression(&input);
                            }
                            exprs += 1;
                        }
                        stack.push(v);
                    }
                }
                serde_json::Value::Array(a) => stack.extend(a),
                _ => {}
            }
        }
    }
    assert!(exprs > 50, "only {exprs} expressions found in the templates");
    // Deep nesting must be an error or a value, never a stack overflow.
    for depth in [10, 1_000, 50_000] {
        let src = format!("{}1{}", "(".repeat(depth), ")".repeat(depth));
        checks::expression(src.as_bytes());
        let src = format!("{}1", "-".repeat(depth));
        checks::expression(src.as_bytes());
    }
}

#[test]
fn ingest_inputs() {
    for (name, bytes) in saved("ingest") {
        println!("{name}");
        checks::ingest(&bytes);
    }
    // Crafted operations (odd mode bytes) and raw bytes (even), on each template and state.
    for (i, mut input) in random_inputs(3, 120, 300).into_iter().enumerate() {
        input.splice(0..0, [(i % 3) as u8, (i / 3 % 6) as u8, (i % 8) as u8]);
        checks::ingest(&input);
    }
    checks::cleanup();
}
