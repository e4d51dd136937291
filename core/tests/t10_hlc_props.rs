//! Property tests of the hybrid logical clock: whatever the wall clock does
//! and whatever remote timestamps arrive, local timestamps only go forward.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hangar_core::hlc::{Hlc, HlcOptions};
use hangar_core::Timestamp;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    /// Move the wall clock to this value (forwards or backwards).
    Wall(u64),
    /// Take a local timestamp.
    Now,
    /// Fold in a remote timestamp.
    Update(u64, u32),
}

fn step() -> impl Strategy<Value = Step> {
    // Small ranges make equal-millisecond collisions, the interesting case;
    // counters include the extremes.
    let counter = prop_oneof![0u32..4, Just(u32::MAX - 1), Just(u32::MAX)];
    prop_oneof![
        (0u64..40).prop_map(Step::Wall),
        Just(Step::Now),
        Just(Step::Now),
        ((0u64..40), counter).prop_map(|(m, c)| Step::Update(m, c)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn t10_now_is_strictly_increasing_and_after_every_accepted_remote(
        steps in proptest::collection::vec(step(), 1..80)
    ) {
        let wall = Arc::new(AtomicU64::new(0));
        let w = wall.clone();
        let hlc = Hlc::with_options("local", HlcOptions {
            clock: Arc::new(move || w.load(Ordering::SeqCst)),
            ..HlcOptions::default()
        }).unwrap();
        let mut last: Option<Timestamp> = None;
        let mut max_remote: Option<Timestamp> = None;
        for s in steps {
            match s {
                Step::Wall(t) => wall.store(t, Ordering::SeqCst),
                Step::Update(m, c) => {
                    let r = Timestamp::new(m, c, "remote");
                    hlc.update(&r).unwrap();
                    if max_remote.as_ref().is_none_or(|x| *x < r) {
                        max_remote = Some(r);
                    }
                }
                Step::Now => {
                    let t = hlc.now();
                    if let Some(prev) = &last {
                        prop_assert!(t > *prev, "now went from {prev} to {t}");
                    }
                    if let Some(r) = &max_remote {
                        prop_assert!(
                            (t.millis, t.counter) > (r.millis, r.counter),
                            "now {t} does not order after remote {r}"
                        );
                    }
                    last = Some(t);
                }
            }
        }
    }
}
