//! The core's modules form layers: each imports (names `crate::<module>`) only modules of lower
//! layers, so the import graph has no cycle. The layers are listed here, lowest first; a new
//! module goes into the lowest layer its imports allow, and this test says when it does not.
//!
//! Test code (`#[cfg(test)]` onwards, `tests.rs` files, `testing/`) is not counted: tests may
//! reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Lowest first. A module is a file of `core/src` or a folder of them.
const LAYERS: &[&[&str]] = &[
    // Leaves: building blocks with no domain above them.
    &["time", "settings"],
    // WeChat's codecs: signatures, AES, XML, the JSON format.
    &["wire"],
    // The ports (the traits the shell implements); what an account is, every per-kind fact.
    &["ports", "account"],
    // The one HTTP-facing error, with WeChat's errcodes beside it.
    &["error"],
    // Normalized events and their ids; the account objects' rules (claims, nonces).
    &["event", "coordinator"],
    // Delivery (targets, attempts, jobs, the webhook signature, dead letters); the token service.
    &["delivery", "token"],
    // The aggregate of every setting.
    &["config"],
    // Callbacks (verify, decrypt, parse, passive replies); third-party platforms.
    &["callback", "component"],
    // The route table and the bearer keys.
    &["http"],
    // The flows over the ports.
    &["relay"],
];

/// Files left out of the graph: test code may reach anywhere.
fn is_test_file(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    name == "lib.rs"
        || name == "testing.rs"
        || name.starts_with("testing/")
        || file == "tests.rs"
        || file.ends_with("_tests.rs")
}

/// The code of a file before its tests.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.split("#[cfg(test)]").next().unwrap_or("").to_owned()
}

/// The names right after `prefix` (`crate::`, `super::`): `prefix` + `name`, or each top-level
/// item of a group, `prefix` + `{a, b::c, self}` giving `a`, `b` and `self`.
fn names_after(code: &str, prefix: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut names = Vec::new();
    for (i, _) in code.match_indices(prefix) {
        if i > 0 && code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        let Some(group) = rest.strip_prefix('{') else {
            let name: String = rest.chars().take_while(|&c| ident(c)).collect();
            if !name.is_empty() {
                names.push(name);
            }
            continue;
        };
        // The group's top-level items: the first name of each, up to its closing brace.
        let (mut depth, mut at_item, mut name) = (0usize, true, String::new());
        for c in group.chars() {
            if depth == 0 && at_item && ident(c) {
                name.push(c);
                continue;
            }
            if !name.is_empty() {
                names.push(std::mem::take(&mut name));
                at_item = false;
            }
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => at_item = true,
                _ => {}
            }
        }
    }
    names
}

/// Every `.rs` file under `core/src`, as (path from `src`, absolute path).
fn files() -> Vec<(String, std::path::PathBuf)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if name.ends_with(".rs") && !is_test_file(&name) {
                found.push((name, path));
            }
        }
    }
    found.sort();
    found
}

/// Each module of `core/src` (a file, or a folder's files together) and the modules it names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, path) in files() {
        let module = name
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_owned();
        let code = code_of(&path);
        let names = graph.entry(module.clone()).or_default();
        for target in names_after(&code, "crate::") {
            if target != module
                && target != "self"
                && target.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                names.insert(target);
            }
        }
    }
    graph
}

/// Inside each folder, each file and the files of the same folder it names (`super::x`,
/// `crate::<folder>::x`, and in `mod.rs` its children by name; `mod` is the folder's `mod.rs`).
fn folder_imports() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut folders: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let all = files();
    for (name, _) in &all {
        if let Some((folder, file)) = name.split_once('/') {
            folders
                .entry(folder.to_owned())
                .or_default()
                .insert(file.trim_end_matches(".rs").to_owned(), BTreeSet::new());
        }
    }
    for (name, path) in &all {
        let Some((folder, file)) = name.split_once('/') else {
            continue;
        };
        let file = file.trim_end_matches(".rs");
        let siblings: BTreeSet<String> = folders[folder].keys().cloned().collect();
        let code = code_of(path);
        // `mod x;` declares a child; it is not an import.
        let code: String = code
            .lines()
            .filter(|line| {
                let line = line.trim_start();
                !(line.starts_with("mod ") || line.starts_with("pub mod "))
            })
            .collect::<Vec<_>>()
            .join("\n");
        let prefix = format!("crate::{folder}::");
        let mut names: BTreeSet<String> = BTreeSet::new();
        let mut add = |target: String| {
            if siblings.contains(&target) {
                names.insert(target);
            } else if file != "mod" && siblings.contains("mod") {
                // An item of the folder's `mod.rs`.
                names.insert("mod".to_owned());
            }
        };
        for target in names_after(&code, "super::")
            .into_iter()
            .chain(names_after(&code, &prefix))
        {
            add(target);
        }
        if file == "mod" {
            for child in &siblings {
                if code.contains(&format!("{child}::")) {
                    names.insert(child.clone());
                }
            }
        }
        names.remove(file);
        folders
            .get_mut(folder)
            .unwrap()
            .insert(file.to_owned(), names);
    }
    folders
}

/// Panics with the path of the first cycle in `graph`.
fn assert_acyclic(graph: &BTreeMap<String, BTreeSet<String>>, what: &str) {
    fn visit<'a>(
        m: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
        what: &str,
    ) {
        match state.get(m) {
            Some(2) => return,
            Some(1) => panic!("import cycle in {what}: {} -> {m}", path.join(" -> ")),
            _ => {}
        }
        state.insert(m, 1);
        path.push(m);
        for next in graph.get(m).into_iter().flatten() {
            if graph.contains_key(next) {
                visit(next, graph, state, path, what);
            }
        }
        path.pop();
        state.insert(m, 2);
    }
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    for m in graph.keys() {
        visit(m, graph, &mut state, &mut Vec::new(), what);
    }
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
    assert_acyclic(&imports(), "core/src");
}

#[test]
fn the_files_of_each_folder_have_no_cycle() {
    for (folder, graph) in folder_imports() {
        assert_acyclic(&graph, &format!("core/src/{folder}"));
    }
}

#[test]
fn grouped_imports_are_edges_too() {
    assert_eq!(
        names_after(
            "use super::{a, b::{c, d}, self};\nlet x = super::e::f;",
            "super::"
        ),
        ["a", "b", "self", "e"]
    );
    assert_eq!(names_after("use crate::{wire};", "crate::"), ["wire"]);
    assert!(names_after("my_super::x", "super::").is_empty());
}

#[test]
fn the_checks_see_real_imports() {
    // The graphs are read from the sources: a parser that saw nothing would pass every test.
    let graph = imports();
    assert!(graph["relay"].contains("callback"), "{graph:?}");
    assert!(graph["config"].contains("delivery"), "{graph:?}");
    let folders = folder_imports();
    assert!(
        folders["token"]["passthrough"].contains("mod"),
        "{folders:?}"
    );
    assert!(
        folders["delivery"]["jobs"].contains("dead_letters"),
        "{folders:?}"
    );
    assert!(
        folders["token"]["mod"].contains("access_token"),
        "{folders:?}"
    );
}
