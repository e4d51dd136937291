//! The configuration's unit tests.

use super::*;
use std::collections::HashMap;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    move |k| m.get(k).cloned()
}

#[test]
fn t10_file_then_env_override_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("hangar.toml");
    std::fs::write(
        &f,
        "node_id = \"alpha\"\nport = 9000\n[storage]\nwrite_ack_timeout_ms = 1234\n[plugins]\nstorage_version = \">=0.1\"\n",
    )
    .unwrap();
    let mut c = HangarConfig::from_file(&f).unwrap();
    assert_eq!((c.node_id.as_str(), c.port), ("alpha", 9000));
    assert_eq!(c.storage.write_ack_timeout_ms, 1234);
    c.apply_env(env(&[("HANGAR_PORT", "0")])).unwrap();
    c.finish().unwrap();
    assert_eq!(c.port, 0);
    let s = c.storage_module_config();
    assert_eq!(
        (s.node_id.as_str(), s.write_ack_timeout_ms),
        ("alpha", 1234)
    );
    assert_eq!(s.data_dir, PathBuf::from("./data/alpha/storage"));
    let cl = c.cluster_module_config();
    assert_eq!(cl.node_id, "alpha");
    assert_eq!(cl.data_dir, Some(PathBuf::from("./data/alpha/cluster")));
}

#[test]
fn t11_unknown_keys_and_bad_values_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(&f, "prot = 1\n").unwrap();
    let e = HangarConfig::from_file(&f).unwrap_err().to_string();
    assert!(e.contains("prot"), "{e}");
    let mut c = HangarConfig::default();
    let e = c
        .apply_env(env(&[("HANGAR_PORT", "lots")]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("HANGAR_PORT") && e.contains("port number"),
        "{e}"
    );
    let mut c = HangarConfig {
        node_id: "a:b".into(),
        ..Default::default()
    };
    assert!(c.finish().unwrap_err().to_string().contains("node_id"));
    let mut c = HangarConfig::default();
    c.plugins.cluster_version = "not a req".into();
    assert!(c
        .finish()
        .unwrap_err()
        .to_string()
        .contains("plugins.cluster_version"));
}

#[test]
fn t13_storage_settings_pass_through_unread_and_moved_keys_say_where_they_went() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("hangar.toml");
    std::fs::write(
        &f,
        "[storage]\nbackend = \"memory\"\nmax_key_bytes = 64\n[storage.full_text_search.docs]\nfields = [\"title\"]\n",
    )
    .unwrap();
    let mut c = HangarConfig::from_file(&f).unwrap();
    c.finish().unwrap();
    let s = c.storage_module_config();
    assert_eq!(s.settings.section, "storage");
    let rmpv::Value::Map(got) = s.settings.values else {
        panic!("a map")
    };
    let get = |k: &str| {
        got.iter()
            .find(|(key, _)| key.as_str() == Some(k))
            .map(|e| e.1.clone())
    };
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(get("backend"), Some("memory".into()));
    assert_eq!(get("max_key_bytes"), Some(64.into()));
    let fts = get("full_text_search").unwrap();
    assert_eq!(fts["docs"]["fields"][0], rmpv::Value::from("title"));

    for key in ["data_dir", "node_id"] {
        std::fs::write(&f, format!("[storage]\n{key} = \"x\"\n")).unwrap();
        let mut c = HangarConfig::from_file(&f).unwrap();
        let e = c.finish().unwrap_err().to_string();
        assert!(
            e.contains(&format!("storage.{key}"))
                && e.contains(&format!("set the top-level {key}")),
            "{e}"
        );
    }
}

#[test]
fn t14_cluster_settings_pass_through_unread_with_the_flags_variables() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("hangar.toml");
    std::fs::write(
        &f,
        "[cluster]\nadvertise_host = \"10.0.0.1\"\ncluster_port = \"not a port\"\nbackup_count = 2\n[cluster.migration]\nmax_bytes_per_sec = 0\n",
    )
    .unwrap();
    let mut c = HangarConfig::from_file(&f).unwrap();
    c.cluster
        .flags
        .insert("HANGAR_SEED_NODES".into(), "a:1,b:2".into());
    c.finish().unwrap();
    let m = c.cluster_module_config();
    assert_eq!(m.advertise_host.as_deref(), Some("10.0.0.1"));
    assert_eq!(m.settings.section, "cluster");
    assert_eq!(m.settings.env["HANGAR_SEED_NODES"], "a:1,b:2");
    let rmpv::Value::Map(got) = &m.settings.values else {
        panic!("a map")
    };
    let mut keys: Vec<&str> = got.iter().filter_map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["backup_count", "cluster_port", "migration"]);
    assert_eq!(m.settings.values["cluster_port"], "not a port".into());

    std::fs::write(&f, "[cluster]\nnode_id = \"x\"\n").unwrap();
    let mut c = HangarConfig::from_file(&f).unwrap();
    let e = c.finish().unwrap_err().to_string();
    assert!(
        e.contains("cluster.node_id") && e.contains("set the top-level node_id"),
        "{e}"
    );
}

#[test]
fn t12_auth_switches() {
    let mut c = HangarConfig::default();
    c.apply_env(env(&[("JWT_SECRET", "s3cret")])).unwrap();
    assert_eq!(c.auth.jwt_secret.as_deref(), Some("s3cret"));
    c.apply_env(env(&[("TOPGUN_NO_AUTH", "true")])).unwrap();
    assert_eq!(c.auth.jwt_secret, None);
    c.apply_env(env(&[("JWT_SECRET", "x"), ("HANGAR_NO_AUTH", "1")]))
        .unwrap();
    assert_eq!(c.auth.jwt_secret, None);
}
