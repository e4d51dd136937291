//! The repository explains itself: every path that `docs/` and
//! `INVARIANTS.md` name exists, and every test `INVARIANTS.md` cites as
//! enforcing an invariant still exists (see `INVARIANTS.md` for the citation
//! form), and every test file and test follows the one naming scheme of
//! `docs/testing.md`. The checker's own negative controls (`t10`–`t13` on
//! made-up input) show that it reports what is wrong.

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
/// exist and define the test (`fn name(` or `fn name<` in Rust, a `test(` titled `name…`
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
            // A suite case may be generic over its harness (`fn name<H: ...>(`).
            source.contains(&format!("fn {name}(")) || source.contains(&format!("fn {name}<"))
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

/// A numbered name: `t`, two digits, an optional lowercase letter, `_`,
/// then a non-empty snake-case rest (`t42_cluster_migration`, `t29b_x`).
fn numbered(name: &str) -> bool {
    let b = name.as_bytes();
    if b.len() < 5 || b[0] != b't' || !b[1].is_ascii_digit() || !b[2].is_ascii_digit() {
        return false;
    }
    let rest = if b[3].is_ascii_lowercase() {
        &name[4..]
    } else {
        &name[3..]
    };
    rest.len() > 1
        && rest.starts_with('_')
        && rest[1..]
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// Files of a multi-file test target that are not tests themselves.
const SHARED_TEST_FILES: &[&str] = &["main", "support", "harness"];

/// Problems with the names in one crate's `tests/` folder: each test target
/// (a file, or a folder with a `main.rs`) and each file of a folder target
/// is numbered; helper modules (a folder with a `mod.rs`), fixtures and
/// non-Rust files are left alone.
fn misnamed_test_files(tests_dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(tests_dir) else {
        return problems;
    };
    for entry in entries {
        let path = entry.expect("readable tests/ entry").path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if path.is_dir() {
            if !path.join("main.rs").exists() {
                continue;
            }
            if !numbered(&name) {
                problems.push(format!(
                    "{}: a test target must be tNN_<topic>",
                    path.display()
                ));
            }
            for inner in std::fs::read_dir(&path).expect("readable test folder") {
                let inner = inner.expect("readable entry").path();
                let Some(stem) = inner.file_stem().map(|s| s.to_string_lossy().to_string()) else {
                    continue;
                };
                let is_rs = inner.extension().is_some_and(|e| e == "rs");
                if is_rs && !SHARED_TEST_FILES.contains(&stem.as_str()) && !numbered(&stem) {
                    problems.push(format!(
                        "{}: a test file must be tNN_<topic>.rs",
                        inner.display()
                    ));
                }
            }
        } else if let Some(stem) = name.strip_suffix(".rs") {
            if !numbered(stem) {
                problems.push(format!(
                    "{}: a test file must be tNN_<topic>.rs",
                    path.display()
                ));
            }
        }
    }
    problems
}

/// Problems with the test functions of a Rust source: every `#[test]`,
/// `#[tokio::test]` or `#[proptest]` function is numbered (`tNN_<claim>`),
/// except `child_*`, the ignored entry points of re-executed test binaries.
fn misnamed_test_fns(source: &str, file: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut pending = false;
    for (i, line) in source.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("#[test]") || t.starts_with("#[tokio::test") || t.starts_with("#[proptest")
        {
            pending = true;
            continue;
        }
        if !pending {
            continue;
        }
        let t = t.strip_prefix("pub ").unwrap_or(t);
        let t = t.strip_prefix("async ").unwrap_or(t);
        if let Some(rest) = t.strip_prefix("fn ") {
            // A macro's `fn $case()`: the test takes a case's name, and the
            // cases are named where they are listed.
            if rest.starts_with('$') {
                pending = false;
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !numbered(&name) && !name.starts_with("child_") {
                problems.push(format!(
                    "{file}:{}: test `{name}` is not tNN_<claim>",
                    i + 1
                ));
            }
            pending = false;
        }
    }
    problems
}

/// Every folder the walk visits: the repository without build output,
/// dependencies, version control and the separate fuzz workspace.
fn source_dirs(root: &Path) -> Vec<PathBuf> {
    const SKIP: &[&str] = &["target", "node_modules", ".git", "fuzz", "fixtures"];
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        out.push(dir.clone());
        for entry in std::fs::read_dir(&dir).expect("readable folder").flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if path.is_dir() && !SKIP.contains(&name.as_str()) {
                stack.push(path);
            }
        }
    }
    out
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
fn t03_every_test_file_and_test_is_numbered() {
    let root = repo_root();
    let mut problems = Vec::new();
    let (mut folders, mut tests) = (0, 0);
    for dir in source_dirs(&root) {
        if dir.join("Cargo.toml").exists() && dir.join("tests").is_dir() {
            folders += 1;
            problems.extend(misnamed_test_files(&dir.join("tests")));
        }
        for entry in std::fs::read_dir(&dir).expect("readable folder").flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "rs") {
                let source = std::fs::read_to_string(&path).expect("readable source");
                tests +=
                    source.matches("#[test]").count() + source.matches("#[tokio::test").count();
                let file = path
                    .strip_prefix(&root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                problems.extend(misnamed_test_fns(&source, &file));
            }
        }
    }
    let js = std::fs::read_dir(root.join("tests/js/test")).expect("tests/js/test");
    for entry in js.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(stem) = name.strip_suffix(".test.mjs") {
            if !numbered(stem) {
                problems.push(format!(
                    "tests/js/test/{name}: must be tNN_<topic>.test.mjs"
                ));
            }
        }
    }
    assert!(
        folders >= 6 && tests > 500,
        "found {folders} test folders and {tests} tests: is the walk broken?"
    );
    assert!(
        problems.is_empty(),
        "names outside the scheme (docs/testing.md):\n{}",
        problems.join("\n")
    );
}

#[test]
fn t13_negative_control_unnumbered_tests_and_files_are_reported() {
    for good in [
        "t10_x",
        "t42_cluster_migration",
        "t29b_nested_paths",
        "t01_a1",
    ] {
        assert!(numbered(good), "{good}");
    }
    for bad in [
        "t1_x",
        "t10",
        "t10_",
        "t2a_x",
        "protocol_ops",
        "t10_Caps",
        "t10-x",
    ] {
        assert!(!numbered(bad), "{bad}");
    }
    let source = "#[test]\nfn t10_fine() {}\n#[tokio::test(flavor = \"multi_thread\")]\n\
                  #[ignore]\nasync fn stray_name() {}\n#[test]\n#[ignore]\nfn child_writer() {}\n";
    assert_eq!(
        misnamed_test_fns(source, "x.rs"),
        vec!["x.rs:5: test `stray_name` is not tNN_<claim>".to_string()]
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("t10_ok.rs"), "").unwrap();
    std::fs::write(dir.path().join("loose.rs"), "").unwrap();
    std::fs::create_dir(dir.path().join("t20_suite")).unwrap();
    std::fs::write(dir.path().join("t20_suite/main.rs"), "").unwrap();
    std::fs::write(dir.path().join("t20_suite/gc.rs"), "").unwrap();
    std::fs::create_dir(dir.path().join("helpers")).unwrap();
    std::fs::write(dir.path().join("helpers/mod.rs"), "").unwrap();
    let mut problems = misnamed_test_files(dir.path());
    problems.sort();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].ends_with("loose.rs: a test file must be tNN_<topic>.rs"),
        "{problems:?}"
    );
    assert!(
        problems[1].ends_with("gc.rs: a test file must be tNN_<topic>.rs"),
        "{problems:?}"
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
