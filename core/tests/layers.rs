//! The core's modules form layers: each imports (names `crate::<module>`) only modules of lower
//! layers, so the import graph has no cycle. The layers are listed here, lowest first; a new
//! module goes into the lowest layer its imports allow, and this test says when it does not.
//!
//! Test code (`#[cfg(test)]` onwards, `tests.rs` files, `testing/`) is not counted: tests may
//! reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Lowest first. Modules of one layer may not import each other.
const LAYERS: &[&[&str]] = &[
    // Leaves: building blocks with no domain above them.
    &["time", "settings", "signature", "xml", "kind"],
    // WeChat's codecs, the webhook signature, WeChat's errcodes.
    &["crypto", "json_body", "webhook", "api_error"],
    // The ports, and the one HTTP-facing error.
    &["ports", "error"],
    // Rules over the ports and the error: events, delivery attempts, upstream calls, replies.
    &[
        "single_flight",
        "upstream",
        "delivery",
        "event",
        "jssdk",
        "auth",
        "reply",
    ],
    &["accounts"],
    &["targets", "access_token", "component_state"],
    &["dead_letters"],
    &["jobs"],
    &["config"],
    &["callback", "token_service"],
    &["passthrough"],
    &["routes", "component"],
    &["relay"],
];

/// Each module of `core/src` (a file, or a folder's files together) and the modules it names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let relative = path.strip_prefix(&src).unwrap();
            let name = relative.to_string_lossy().replace('\\', "/");
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".rs")
                || name == "lib.rs"
                || name == "testing.rs"
                || name.starts_with("testing/")
                || file == "tests.rs"
                || file.ends_with("_tests.rs")
            {
                continue;
            }
            let module = name
                .split('/')
                .next()
                .unwrap()
                .trim_end_matches(".rs")
                .to_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let names = graph.entry(module.clone()).or_default();
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + "crate::".len()..];
                let target: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                if !target.is_empty() && target != module {
                    names.insert(target);
                }
            }
        }
    }
    graph
}

#[test]
fn every_import_points_to_a_lower_layer() {
    let graph = imports();
    let layer_of = |m: &str| LAYERS.iter().position(|layer| layer.contains(&m));
    let mut problems = Vec::new();
    for module in graph.keys() {
        if layer_of(module).is_none() {
            problems.push(format!("{module} is in no layer: add it to LAYERS"));
        }
    }
    for (module, names) in &graph {
        let Some(from) = layer_of(module) else {
            continue;
        };
        for target in names {
            let Some(to) = layer_of(target) else {
                // `crate::testing` and the like are not modules of the graph.
                if graph.contains_key(target) {
                    problems.push(format!("{module} -> {target}: {target} is in no layer"));
                }
                continue;
            };
            if to >= from {
                problems.push(format!(
                    "{module} (layer {from}) imports {target} (layer {to}): only lower layers"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_graph_has_no_cycle() {
    // Implied by the layers, checked on its own so that a bad LAYERS list cannot hide one.
    let graph = imports();
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        m: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) {
        match state.get(m) {
            Some(2) => return,
            Some(1) => panic!("import cycle: {} -> {m}", path.join(" -> ")),
            _ => {}
        }
        state.insert(m, 1);
        path.push(m);
        for next in graph.get(m).into_iter().flatten() {
            if graph.contains_key(next) {
                visit(next, graph, state, path);
            }
        }
        path.pop();
        state.insert(m, 2);
    }
    for m in graph.keys() {
        visit(m, &graph, &mut state, &mut Vec::new());
    }
}
