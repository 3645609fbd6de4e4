//! Helpers shared by the integration tests: the data files under the repository's `tests/`.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests")
}

pub fn read_json(relative: &str) -> serde_json::Value {
    let path = data_dir().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn str_of<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// Every `tests/samples/<name>.xml` with its expected `<name>.json`.
pub fn samples() -> Vec<(String, Vec<u8>, serde_json::Value)> {
    let dir = data_dir().join("samples");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tests/samples") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "xml") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let xml = std::fs::read(&path).unwrap();
            let expected = read_json(&format!("samples/{name}.json"));
            out.push((name, xml, expected));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
