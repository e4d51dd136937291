//! The repository explains itself: every path that `docs/` and
//! `INVARIANTS.md` name exists, and every test `INVARIANTS.md` cites as
//! enforcing an invariant still exists (see `INVARIANTS.md` for the citation
//! form). The checker's own negative controls (`t10`–`t12` on made-up
//! text) show that it reports what is missing.

use std::path::{Path, PathBuf};

/// Top-level folders of the repository: a backticked token starting with
/// one of these and a `/` is read as a path inside the repository.
const ROOTS: &[&str] = &[
    "core/",
    "host/",
    "plugins/",
    "tests/",
    "plugin-template/",
    "scripts/",
    "docs/",
    ".ci/",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Backticked tokens of a markdown text, in order.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// A repository path named in a token, with any `::test` citation cut off;
/// `None` for tokens that are not repository paths (commands, names,
/// placeholders such as `<data_dir>/x`).
fn path_of(token: &str) -> Option<&str> {
    let path = token.split("::").next()?;
    let is_path = ROOTS.iter().any(|r| path.starts_with(r))
        && !path.contains(char::is_whitespace)
        && !path.contains(['<', '*', '{']);
    is_path.then_some(path)
}

/// Problems with the paths a text names: one line per missing path.
fn missing_paths(text: &str, root: &Path) -> Vec<String> {
    backticked(text)
        .into_iter()
        .filter_map(path_of)
        .filter(|p| !root.join(p).exists())
        .map(|p| format!("`{p}` does not exist"))
        .collect()
}

/// Problems with the test citations (`path::name`) of a text: the file must
/// exist and define the test (`fn name` in Rust, a `test(` titled `name…`
/// in JavaScript).
fn missing_tests(text: &str, root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for token in backticked(text) {
        let Some((path, name)) = token.split_once("::") else {
            continue;
        };
        if path_of(token).is_none() || name.is_empty() {
            continue;
        }
        let Ok(source) = std::fs::read_to_string(root.join(path)) else {
            problems.push(format!("`{token}`: no file {path}"));
            continue;
        };
        let found = if path.ends_with(".rs") {
            source.contains(&format!("fn {name}("))
        } else {
            ["test('", "test(\"", "test(`"]
                .iter()
                .any(|open| source.contains(&format!("{open}{name} ")))
        };
        if !found {
            problems.push(format!("`{token}`: {path} has no test `{name}`"));
        }
    }
    problems
}

/// The documents this check covers: `INVARIANTS.md` and every `docs/*.md`.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut docs = vec![root.join("INVARIANTS.md")];
    let dir = std::fs::read_dir(root.join("docs")).expect("docs/ exists");
    for entry in dir {
        let path = entry.expect("readable docs/ entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    docs.sort();
    docs
}

#[test]
fn t01_every_path_named_in_docs_and_invariants_exists() {
    let root = repo_root();
    let mut problems = Vec::new();
    let mut named = 0;
    for doc in documents(&root) {
        let text = std::fs::read_to_string(&doc).expect("readable document");
        named += backticked(&text).into_iter().filter_map(path_of).count();
        for p in missing_paths(&text, &root) {
            problems.push(format!("{}: {p}", doc.display()));
        }
    }
    assert!(
        named > 50,
        "the documents name only {named} paths: is the parser broken?"
    );
    assert!(problems.is_empty(), "stale paths:\n{}", problems.join("\n"));
}

#[test]
fn t02_every_test_cited_in_invariants_exists() {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("INVARIANTS.md")).expect("INVARIANTS.md");
    let cited = backticked(&text)
        .iter()
        .filter(|t| t.contains("::"))
        .count();
    assert!(
        cited > 20,
        "INVARIANTS.md cites only {cited} tests: is the parser broken?"
    );
    let problems = missing_tests(&text, &root);
    assert!(
        problems.is_empty(),
        "stale citations:\n{}",
        problems.join("\n")
    );
}

#[test]
fn t10_negative_control_a_missing_path_is_reported() {
    let root = repo_root();
    let text = "see `core/src/hash.rs` and `core/src/no_such_file.rs`, not `cargo test`";
    assert_eq!(
        missing_paths(text, &root),
        vec!["`core/src/no_such_file.rs` does not exist".to_string()]
    );
}

#[test]
fn t11_negative_control_a_missing_rust_test_is_reported() {
    let root = repo_root();
    let text = "`core/src/hash.rs::t10_known_vectors_match_the_typescript_client` \
                `core/src/hash.rs::t99_no_such_test` `core/src/gone.rs::t10`";
    assert_eq!(
        missing_tests(text, &root),
        vec![
            "`core/src/hash.rs::t99_no_such_test`: core/src/hash.rs has no test `t99_no_such_test`"
                .to_string(),
            "`core/src/gone.rs::t10`: no file core/src/gone.rs".to_string(),
        ]
    );
}

#[test]
fn t12_negative_control_a_missing_javascript_test_is_reported() {
    let root = repo_root();
    let text = "`tests/js/test/t90_limits.test.mjs::t92` `tests/js/test/t90_limits.test.mjs::t9`";
    assert_eq!(
        missing_tests(text, &root),
        vec!["`tests/js/test/t90_limits.test.mjs::t9`: tests/js/test/t90_limits.test.mjs has no test `t9`".to_string()]
    );
}
