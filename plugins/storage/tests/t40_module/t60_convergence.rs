//! The convergence law through the whole module: any order, batching and
//! repetition of the same ops gives the same reads and Merkle roots.

use std::sync::Arc;

use abi_stable::std_types::ROption;
use hangar_core::module::storage::StorageModule;
use hangar_core::module::storage_types::RecordState;
use hangar_core::{KeyedOp, LwwRecord, MapKind, MapOp, OrRecord, Timestamp, WriteConcern};
use hangar_storage::persistence::MemoryStore;
use hangar_storage::DefaultStorage;
use proptest::prelude::*;

use super::support::{apply, config, module_on, read, v};

fn arb_op() -> impl Strategy<Value = KeyedOp> {
    let key = prop::sample::select(vec!["a", "b", "c"]);
    let node = prop::sample::select(vec!["x", "y"]);
    prop_oneof![
        // One timestamp is one write: its value follows from it (two
        // different writes with equal timestamps do not exist).
        (key.clone(), 1u64..6, node.clone()).prop_map(|(k, m, nd)| {
            let n = m as i64 * 2 + i64::from(nd == "y");
            KeyedOp {
                map: "lww".into(),
                key: k.into(),
                op: MapOp::Lww(LwwRecord {
                    value: if n % 3 == 0 {
                        ROption::RNone
                    } else {
                        ROption::RSome(v(n))
                    },
                    timestamp: Timestamp::new(m, 0, nd),
                    ttl_ms: ROption::RNone,
                }),
            }
        }),
        (key.clone(), 0i64..5, 1u64..6, node.clone()).prop_map(|(k, n, m, nd)| {
            let timestamp = Timestamp::new(m, 0, nd);
            KeyedOp {
                map: "or".into(),
                key: k.into(),
                op: MapOp::OrAdd(OrRecord {
                    value: v(n),
                    tag: timestamp.to_string().into(),
                    timestamp,
                    ttl_ms: ROption::RNone,
                }),
            }
        }),
        (key, 1u64..6, node).prop_map(|(k, m, nd)| KeyedOp {
            map: "or".into(),
            key: k.into(),
            op: MapOp::OrRemove(Timestamp::new(m, 0, nd).to_string().into()),
        }),
    ]
}

async fn fingerprint(m: &DefaultStorage) -> (u32, u32, Vec<RecordState>) {
    let mut states = Vec::new();
    for map in ["lww", "or"] {
        for k in ["a", "b", "c"] {
            states.push(read(m, map, k).await);
        }
    }
    (
        m.merkle_root("lww".into(), MapKind::Lww).await.unwrap(),
        m.merkle_root("or".into(), MapKind::Or).await.unwrap(),
        states,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Applying the same ops in any order, in any batches, with repeats,
    /// gives the same reads and Merkle roots through the whole module.
    #[test]
    fn t60_prop_any_order_and_batching_gives_the_same_state(
        ops in prop::collection::vec(arb_op(), 1..25),
        seed in any::<u64>(),
        split in 1usize..6,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let (a, _) = module_on(&MemoryStore::new(), config(), Arc::default());
            let (b, _) = module_on(&MemoryStore::new(), config(), Arc::default());
            a.start().await.unwrap();
            b.start().await.unwrap();
            apply(&a, ops.clone(), WriteConcern::Memory).await;
            let mut shuffled = ops.clone();
            shuffled.extend(ops.iter().take(3).cloned());
            let mut s = seed | 1;
            for i in (1..shuffled.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                shuffled.swap(i, (s % (i as u64 + 1)) as usize);
            }
            for chunk in shuffled.chunks(split) {
                apply(&b, chunk.to_vec(), WriteConcern::Memory).await;
            }
            let (fa, fb) = (fingerprint(&a).await, fingerprint(&b).await);
            a.shutdown().await.unwrap();
            b.shutdown().await.unwrap();
            prop_assert_eq!(fa, fb);
            Ok(())
        })?;
    }
}
