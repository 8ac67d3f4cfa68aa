//! Workflow timers in the embedded SQLite database: 10,000 executions waiting at once, 1,000 of
//! them due in the same second (issue 22's target: processed within 1 s).
//!
//! `cargo bench --bench workflow_timers` (CARELINE_BENCH_WORKFLOWS=N waiting, of which a tenth
//! fall due together; CARELINE_BENCH_DATABASE_URL=postgres://... runs it on PostgreSQL, whose
//! database must be empty). Each execution is started as the API starts one (one transaction:
//! the execution, its history, its sealed snapshot); then the due ones are fired as the
//! server's runner fires them: read the due ids, and for each restore the execution from its
//! sealed snapshot, fire its timer, and store the step (one transaction), which here ends it.

use std::sync::Arc;
use std::time::Instant;

use careline::db::Db;
use careline::keys::{KeyRing, Supplied};
use careline::workflow::runner::{Catalog, Started, Starter};
use careline::workflow::store::Store;
use serde_json::json;

/// Wait until the input's time, then end.
const DEFINITION: &str = r#"{
  "StartAt": "Wait",
  "States": {
    "Wait": {"Type": "Wait", "TimestampPath": "$.at", "Next": "Done"},
    "Done": {"Type": "Pass", "End": true}
  }
}"#;

/// 2026-12-05T09:00:00Z.
const T0: i64 = 1_796_547_600_000;

fn main() {
    let total: usize = std::env::var("CARELINE_BENCH_WORKFLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let due_count = (total / 10).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_string())
            )
            .unwrap_or_default()
    );
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = Arc::new(KeyRing::open(dir.path(), Supplied::default()).expect("keys"));
        let url = std::env::var("CARELINE_BENCH_DATABASE_URL").ok();
        let db = Db::open(url.as_deref(), dir.path()).await.expect("database");
        println!("database: {:?}", db.engine());
        let store = Store::new(db, keys);
        let defs = dir.path().join("workflows");
        std::fs::create_dir_all(&defs).expect("folder");
        std::fs::write(defs.join("timer.asl.json"), DEFINITION).expect("definition");
        let catalog = Catalog::load(&defs).expect("catalog");
        let starter = Starter::new(store.clone(), catalog, T0).await.expect("starter");

        // Every tenth execution waits until T0 + 60 s; the rest wait ten days.
        let fire_at = T0 + 60_000;
        let started = Instant::now();
        for i in 0..total {
            let at = if i % (total / due_count).max(1) == 0 {
                fire_at
            } else {
                T0 + 10 * 86_400_000
            };
            let input = json!({"patient_id": format!("p-{i:06}"), "at": careline::db::rfc3339(at)});
            let (s, _) = starter
                .start("timer", None, input, T0)
                .await
                .expect("start");
            assert!(matches!(s, Started::New(_)));
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "started {total} executions in {secs:.2} s ({:.0} starts/s, one transaction each)",
            total as f64 / secs
        );
        let waiting = store.count_by_status().await.expect("count");
        println!("waiting: {waiting:?}");

        let t = Instant::now();
        let due = store.due(fire_at, i64::MAX).await.expect("due");
        let query_ms = t.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(due.len(), due_count, "the due ones, and no other");
        let t = Instant::now();
        // As the server's runner fires them (store.parallel_steps() at a time).
        for (id, result) in careline::workflow::runner::fire_timers(&store, due, fire_at).await {
            if let Err(e) = result {
                panic!("{id}: {e}");
            }
        }
        let fire = t.elapsed().as_secs_f64();
        println!("steps at once: {}", store.parallel_steps());
        let done = store.count_by_status().await.expect("count");
        println!(
            "fired {due_count} due timers of {total} waiting in {:.3} s ({:.0} steps/s; finding them: {query_ms:.1} ms)",
            fire,
            due_count as f64 / fire
        );
        println!("after: {done:?}");
        assert!(done.iter().any(|(s, n)| s == "SUCCEEDED" && *n == due_count as i64));
    });
}
