//! The OR map's unit tests.

use super::*;
use abi_stable::std_types::ROption;
use hangar_core::merkle::OrMerkleTree;
use hangar_core::Timestamp;

fn rec(tag: &str, v: i64, m: u64, ttl: Option<u64>) -> OrRecord {
    OrRecord {
        value: RawValue::encode(&v).unwrap(),
        timestamp: Timestamp::new(m, 0, "n"),
        tag: tag.into(),
        ttl_ms: ttl.into(),
    }
}

fn vals(m: &OrMap, k: &str, now: u64) -> Vec<i64> {
    m.get(k, now)
        .into_iter()
        .map(|b| rmp_serde::from_slice(b).unwrap())
        .collect()
}

/// The core tree fed the map's stored records: the reference root.
fn reference_root(m: &OrMap) -> u32 {
    let mut t = OrMerkleTree::new();
    for k in m.keys() {
        t.update(k, &m.records(k));
    }
    t.root()
}

#[test]
fn t10_adds_accumulate_per_key_in_tag_order() {
    let mut m = OrMap::new();
    assert_eq!(m.apply("k", &rec("t2", 2, 2, None)), OrApplyOutcome::Added);
    assert_eq!(m.apply("k", &rec("t1", 1, 1, None)), OrApplyOutcome::Added);
    assert_eq!(m.apply("j", &rec("t3", 3, 3, None)), OrApplyOutcome::Added);
    assert_eq!(vals(&m, "k", 0), vec![1, 2]);
    assert_eq!((m.size(), m.total_records()), (2, 3));
    assert_eq!(m.key_of_tag("t3"), Some("j"));
    assert_eq!(m.merkle_root(), reference_root(&m));
}

#[test]
fn t11_a_known_tag_is_replaced_only_by_a_newer_version() {
    let mut m = OrMap::new();
    m.apply("k", &rec("t", 1, 5, None));
    assert_eq!(m.apply("k", &rec("t", 9, 4, None)), OrApplyOutcome::Stale);
    assert_eq!(
        m.apply("k", &rec("t", 1, 5, None)),
        OrApplyOutcome::Stale,
        "idempotent"
    );
    assert_eq!(
        m.apply("k", &rec("t", 2, 6, None)),
        OrApplyOutcome::Replaced {
            previous_key: "k".into(),
            previous: rec("t", 1, 5, None)
        }
    );
    assert_eq!(vals(&m, "k", 0), vec![2]);
    assert_eq!(m.total_records(), 1);
    // equal timestamps: the greater value bytes win, whatever the order
    let mut a = OrMap::new();
    let mut b = OrMap::new();
    a.apply("k", &rec("t", 1, 5, None));
    a.apply("k", &rec("t", 2, 5, None));
    b.apply("k", &rec("t", 2, 5, None));
    b.apply("k", &rec("t", 1, 5, None));
    assert_eq!(a.records("k"), b.records("k"));
    assert_eq!(a.merkle_root(), b.merkle_root());
}

#[test]
fn t12_a_tag_moving_keys_leaves_its_old_key() {
    let mut m = OrMap::new();
    m.apply("a", &rec("t", 1, 5, None));
    let out = m.apply("b", &rec("t", 1, 6, None));
    assert!(
        matches!(out, OrApplyOutcome::Replaced { ref previous_key, .. } if previous_key == "a")
    );
    assert!(m.records("a").is_empty());
    assert_eq!(m.size(), 1);
    assert_eq!(m.key_of_tag("t"), Some("b"));
    assert_eq!(m.merkle_root(), reference_root(&m));
}

#[test]
fn t20_tombstones_remove_the_tag_anywhere_and_refuse_it_later() {
    let mut m = OrMap::new();
    m.apply("k", &rec("t1", 1, 1, None));
    m.apply("k", &rec("t2", 2, 2, None));
    let out = m.apply_tombstone("t1");
    assert!(out.newly_tombstoned);
    assert_eq!(out.removed, Some(("k".into(), rec("t1", 1, 1, None))));
    assert!(!m.apply_tombstone("t1").newly_tombstoned);
    assert_eq!(
        m.apply("k", &rec("t1", 1, 9, None)),
        OrApplyOutcome::Tombstoned
    );
    assert_eq!(vals(&m, "k", 0), vec![2]);
    // tombstoning an unseen tag blocks its later add
    assert_eq!(m.apply_tombstone("t9").removed, None);
    assert_eq!(
        m.apply("x", &rec("t9", 9, 9, None)),
        OrApplyOutcome::Tombstoned
    );
    m.apply_tombstone("t2");
    assert_eq!(m.size(), 0, "a key without records is dropped");
    assert_eq!(m.merkle_root(), 0);
    assert!(!m.is_empty(), "tombstones remain");
}

#[test]
fn t21_merge_key_counts_and_purges_tags_under_other_keys() {
    let mut m = OrMap::new();
    m.apply("k", &rec("t1", 1, 1, None));
    m.apply("other", &rec("t5", 5, 5, None));
    let out = m.merge_key(
        "k",
        &[
            rec("t1", 10, 3, None),
            rec("t2", 2, 2, None),
            rec("t5", 5, 5, None),
        ],
        &["t5"],
    );
    assert_eq!(
        out,
        OrMergeKeyOutcome {
            added: 1,
            updated: 1,
            removed: 1
        }
    );
    assert!(
        m.records("other").is_empty(),
        "legacy quirk fixed: purged under other keys"
    );
    assert_eq!(vals(&m, "k", 0), vec![10, 2]);
    assert_eq!(m.merkle_root(), reference_root(&m));
}

#[test]
fn t22_expired_records_are_hidden_but_hashed() {
    let mut m = OrMap::new();
    m.apply("k", &rec("t1", 1, 1000, Some(100)));
    m.apply("k", &rec("t2", 2, 1000, None));
    assert_eq!(vals(&m, "k", 1100), vec![1, 2]);
    assert_eq!(vals(&m, "k", 1101), vec![2]);
    assert_eq!(m.get_records("k", 1101).len(), 1);
    assert_eq!(m.records("k").len(), 2);
    assert_eq!(m.records("k")[0].ttl_ms, ROption::RSome(100));
    assert_eq!(m.merkle_root(), reference_root(&m));
}

#[test]
fn t31_prune_tags_drops_only_the_named_tombstones() {
    let mut m = OrMap::new();
    m.apply("k", &rec("t1", 1, 1, None));
    m.apply_tombstone("t1");
    m.apply_tombstone("t2");
    m.apply_tombstone("t3");
    assert_eq!(m.prune_tags(&["t1", "t3", "never"]), vec!["t1", "t3"]);
    assert!(!m.is_tombstoned("t1") && !m.is_tombstoned("t3"));
    assert!(m.is_tombstoned("t2"), "an unnamed tombstone stays");
    assert_eq!(
        m.prune_tags(&["t1"]),
        Vec::<String>::new(),
        "twice is harmless"
    );
}

#[test]
fn t40_merkle_views_agree_with_the_core_tree() {
    let mut m = OrMap::new();
    let mut t = OrMerkleTree::new();
    for (i, k) in ["a", "b", "c"].iter().enumerate() {
        let r = rec(&format!("t{i}"), i as i64, i as u64, None);
        m.apply(k, &r);
        t.update(k, &[r]);
    }
    assert_eq!(m.merkle_root(), t.root());
    assert_eq!(m.merkle_buckets(""), t.buckets(""));
    let path = OrMap::leaf_path_of("b");
    assert!(m.is_leaf(&path));
    assert_eq!(m.keys_in_leaf(&path), t.keys_in_leaf(&path));
    assert_eq!(m.entry_hashes(&path), t.entry_hashes(&path));
    assert_eq!(m.entry_hash("b"), t.entry_hash("b"));
}

#[test]
fn t50_partition_keys_are_the_keys_holding_records_in_the_partition() {
    let mut m = OrMap::new();
    for i in 0..2_000u64 {
        m.apply(
            &format!("k{}", i % 900),
            &rec(&format!("t{i}"), 1, i + 1, None),
        );
    }
    // Removing every tag of a key removes the key.
    for i in (0..2_000u64).filter(|i| i % 900 == 5) {
        m.apply_tombstone(&format!("t{i}"));
    }
    assert!(m.records("k5").is_empty());
    let mut seen = 0;
    for p in 0..hangar_core::PARTITION_COUNT {
        let mut got: Vec<&str> = m.partition_keys(p);
        got.sort_unstable();
        let mut want: Vec<&str> = m
            .keys()
            .filter(|k| hangar_core::partition_of(k) == p)
            .collect();
        want.sort_unstable();
        assert_eq!(got, want, "partition {p}");
        seen += got.len();
    }
    assert_eq!(seen, m.size());
    assert_eq!(seen, 899);
}
