//! Cluster formation, in its own test binary so that its 15 processes do
//! not run beside the timing-sensitive failover tests of `t40_cluster`.

use std::time::Duration;

use hangar_tests::cluster_harness::{Cluster, Settings};

fn fast() -> Settings {
    Settings {
        cluster_toml: "gossip_interval_ms = 100\nbootstrap_timeout_ms = 3000\n".into(),
        ..Settings::default()
    }
}

const FORM: Duration = Duration::from_secs(30);

#[test]
fn t10_three_nodes_started_at_once_form_one_cluster_every_time() {
    let runs: usize = std::env::var("HANGAR_FORMATION_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let parallel = 5;
    let mut done = 0;
    while done < runs {
        let batch = parallel.min(runs - done);
        let mut clusters: Vec<Cluster> = (0..batch)
            .map(|k| {
                Cluster::new(
                    3,
                    &Settings {
                        cluster_id: format!("form-{}", done + k),
                        ..fast()
                    },
                )
            })
            .collect();
        for c in &mut clusters {
            c.start_all();
        }
        for (k, c) in clusters.iter().enumerate() {
            let v = c.wait_formed(&[0, 1, 2], FORM).unwrap_or_else(|e| {
                panic!(
                    "run {}: 3 nodes started at once did not form one cluster:{e}",
                    done + k
                )
            });
            assert!(v >= 1);
        }
        done += batch;
    }
    eprintln!("{runs} of {runs} runs formed one cluster");
}
