use super::*;

use crate::workflow::Event;

const T0: i64 = 1_796_461_200_000;

/// Task, a five-second Wait, task, end.
const TWO_CALLS: &str = r#"{
  "StartAt": "First",
  "States": {
    "First": {"Type": "Task", "Resource": "arn:aws:lambda:ap-northeast-1:1:function:CallPatient", "Next": "Pause"},
    "Pause": {"Type": "Wait", "Seconds": 5, "Next": "Second"},
    "Second": {"Type": "Task", "Resource": "arn:aws:lambda:ap-northeast-1:1:function:NotifyCareTeam", "End": true}
  }
}"#;

async fn store() -> (Store, Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys =
        Arc::new(KeyRing::open(dir.path(), crate::keys::Supplied::default()).expect("key ring"));
    let db = Db::open(None, dir.path()).await.expect("database");
    (Store::new(db.clone(), keys), db, dir)
}

async fn started(s: &Store, id: &str) -> Vec<Invocation> {
    let digest = s.define("two-calls", TWO_CALLS, T0).await.expect("define");
    let def = Arc::new(Definition::load(TWO_CALLS).expect("loads"));
    let input = json!({"patient_id": "p-4711", "phone": "+81 3 1234 5678"});
    let input_digest = s.input_digest(&input);
    let mut e = Execution::start(def, id, input, T0, 1);
    s.create(
        "two-calls",
        &digest,
        Some("p-4711"),
        &input_digest,
        &mut e,
        T0,
    )
    .await
    .expect("create")
}

/// Loads the execution again from the database (as after a restart), applies `event`, stores.
async fn answer(s: &Store, inv: &Invocation, output: Value, now: i64) -> Vec<Invocation> {
    let stored = s
        .running(&inv.execution_id)
        .await
        .expect("read")
        .expect("running");
    let (mut e, transitions) = s.restore(stored).await.expect("restore");
    e.handle(
        Event::TaskSucceeded {
            task: inv.task.clone(),
            output,
        },
        now,
    );
    s.advance(&mut e, transitions, Some(&inv.task), now)
        .await
        .expect("advance")
}

#[tokio::test]
async fn an_execution_survives_losing_the_process_at_every_step() {
    let (s, _db, _dir) = store().await;
    let first = started(&s, "e-1").await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].key(), "e-1/First/1");
    // The process dies before the invocation was answered: the outbox still has it, with the
    // same key and input.
    assert_eq!(s.outbox().await.expect("outbox"), first);

    let next = answer(&s, &first[0], json!({"called": true}), T0 + 1_000).await;
    assert!(next.is_empty(), "waiting now");
    assert!(
        s.outbox().await.expect("outbox").is_empty(),
        "the answered task left the outbox"
    );
    // The wait is a timer in the database.
    assert_eq!(s.next_wake().await.expect("wake"), Some(T0 + 6_000));
    assert!(s.due(T0 + 5_999, 10).await.expect("due").is_empty());
    assert_eq!(
        s.due(T0 + 6_000, 10).await.expect("due"),
        vec!["e-1".to_string()]
    );

    let stored = s.running("e-1").await.expect("read").expect("running");
    let (mut e, transitions) = s.restore(stored).await.expect("restore");
    e.handle_timeout(T0 + 6_000);
    let second = s
        .advance(&mut e, transitions, None, T0 + 6_000)
        .await
        .expect("advance");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].key(), "e-1/Second/1");
    assert_eq!(second[0].input, json!({"called": true}));

    let done = answer(&s, &second[0], json!({"notified": true}), T0 + 7_000).await;
    assert!(done.is_empty());
    let summary = s.summary("e-1").await.expect("summary");
    assert_eq!(summary.status, SUCCEEDED);
    assert_eq!(summary.outcome, Some(json!({"notified": true})));
    assert_eq!(summary.patient_id.as_deref(), Some("p-4711"));
    assert!(s.running("e-1").await.expect("read").is_none());
    assert_eq!(s.next_wake().await.expect("wake"), None);

    let kinds: Vec<String> = s
        .history("e-1")
        .await
        .expect("history")
        .into_iter()
        .map(|h| h.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "ExecutionStarted",
            "TaskStateEntered",
            "TaskScheduled",
            "TaskSucceeded",
            "TaskStateExited",
            "WaitStateEntered",
            "WaitStateExited",
            "TaskStateEntered",
            "TaskScheduled",
            "TaskSucceeded",
            "TaskStateExited",
            "ExecutionSucceeded",
        ]
    );
}

#[tokio::test]
async fn an_answer_applied_twice_is_refused_the_second_time() {
    let (s, _db, _dir) = store().await;
    let first = started(&s, "e-2").await;
    // Two deliveries of the same answer, both read the execution before either stored.
    let a = s.running("e-2").await.expect("read").expect("running");
    let b = s.running("e-2").await.expect("read").expect("running");
    let (mut ea, ta) = s.restore(a).await.expect("restore");
    let (mut eb, tb) = s.restore(b).await.expect("restore");
    for e in [&mut ea, &mut eb] {
        e.handle(
            Event::TaskSucceeded {
                task: first[0].task.clone(),
                output: json!({}),
            },
            T0 + 1,
        );
    }
    s.advance(&mut ea, ta, Some(&first[0].task), T0 + 1)
        .await
        .expect("the first is applied");
    let err = s
        .advance(&mut eb, tb, Some(&first[0].task), T0 + 1)
        .await
        .expect_err("the second is not");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    let history = s.history("e-2").await.expect("history");
    assert_eq!(
        history.iter().filter(|h| h.kind == "TaskSucceeded").count(),
        1,
        "the answer is in the history once"
    );
}

#[tokio::test]
async fn patient_data_is_sealed_in_the_database() {
    let (s, db, _dir) = store().await;
    let first = started(&s, "e-3").await;
    answer(&s, &first[0], json!({"called": "+81 3 1234 5678"}), T0 + 1).await;
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT snapshot FROM workflow_executions UNION ALL SELECT input FROM workflow_tasks",
    )
    .fetch_all(db.pool())
    .await
    .expect("raw rows");
    assert!(!rows.is_empty());
    // A space is in neither hex nor base64: only the number itself, in clear, would match
    // (a bare "1234" turned up by chance in a random nonce now and then).
    for (text,) in rows {
        assert!(
            !text.contains("1234 5678"),
            "a phone number in clear: {text}"
        );
    }
}

#[tokio::test]
async fn an_execution_keeps_the_definition_it_started_with() {
    let (s, _db, _dir) = store().await;
    let first = started(&s, "e-4").await;
    // The file is edited: the second state renamed. The running execution still knows its own.
    let edited = TWO_CALLS.replace("Second", "Renamed");
    s.define("two-calls", &edited, T0 + 1)
        .await
        .expect("define");
    answer(&s, &first[0], json!({}), T0 + 2).await;
    let stored = s.running("e-4").await.expect("read").expect("running");
    let (mut e, t) = s.restore(stored).await.expect("restore");
    e.handle_timeout(T0 + 10_000);
    let next = s
        .advance(&mut e, t, None, T0 + 10_000)
        .await
        .expect("advance");
    assert_eq!(next[0].task.state, "Second");
}

#[tokio::test]
async fn key_rotation_reseals_every_workflow_value_and_they_still_open() {
    let (s, db, dir) = store().await;
    let first = started(&s, "e-5").await;
    answer(&s, &first[0], json!({"called": true}), T0 + 1).await;
    started(&s, "e-6").await;
    let before =
        Arc::new(KeyRing::open(dir.path(), crate::keys::Supplied::default()).expect("ring"));
    let care = crate::workflow::care_tasks::CareTasks::new(db.clone(), before);
    care.add(
        "e-6/Notify/1",
        "physician",
        &json!({"patient_id": "p-4711", "reason": "x"}),
        T0,
    )
    .await
    .expect("work-list item");
    let mut ring = KeyRing::open(dir.path(), crate::keys::Supplied::default()).expect("ring");
    ring.rotate().expect("rotate");
    let ring = Arc::new(ring);
    let rotated = Store::new(db.clone(), ring.clone());
    // Two snapshots, the outbox row of e-6 and the work-list item; e-5's task was answered,
    // nothing finished.
    assert_eq!(rotated.reseal_all().await.expect("reseal"), 4);
    assert_eq!(
        rotated.reseal_all().await.expect("again"),
        0,
        "all current now"
    );
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT snapshot FROM workflow_executions UNION ALL SELECT input FROM workflow_tasks",
    )
    .fetch_all(db.pool())
    .await
    .expect("raw rows");
    assert!(rows.iter().all(|(v,)| ring.is_current(v)));
    assert_eq!(rotated.outbox().await.expect("outbox").len(), 1);
    let stored = rotated
        .running("e-5")
        .await
        .expect("read")
        .expect("running");
    rotated
        .restore(stored)
        .await
        .expect("restores under the new key");
}

#[tokio::test]
async fn a_stopped_execution_takes_no_more_steps_and_a_late_answer_is_dropped() {
    let (s, _db, _dir) = store().await;
    let first = started(&s, "e-7").await;
    // The runner read the execution to apply an answer; meanwhile a person stops it.
    let stored = s.running("e-7").await.expect("read").expect("running");
    assert!(
        s.stop("e-7", "stopped by nurse", T0 + 1)
            .await
            .expect("stop")
    );
    assert!(!s.stop("e-7", "again", T0 + 2).await.expect("stop"), "once");
    let (mut e, t) = s.restore(stored).await.expect("restore");
    e.handle(
        Event::TaskSucceeded {
            task: first[0].task.clone(),
            output: json!({}),
        },
        T0 + 3,
    );
    let err = s
        .advance(&mut e, t, Some(&first[0].task), T0 + 3)
        .await
        .expect_err("the transition after the stop is refused");
    assert!(matches!(err, StoreError::Conflict { .. }));
    assert!(s.running("e-7").await.expect("read").is_none());
    assert!(
        s.outbox().await.expect("outbox").is_empty(),
        "nothing is called again"
    );
    let summary = s.summary("e-7").await.expect("summary");
    assert_eq!(summary.status, ABORTED);
    assert_eq!(
        summary.outcome,
        Some(json!({"error": "States.Aborted", "cause": "stopped by nurse"}))
    );
    let history = s.history("e-7").await.expect("history");
    assert_eq!(
        history.last().map(|h| h.kind.as_str()),
        Some("ExecutionAborted")
    );

    started(&s, "e-8").await;
    let running = s.list(Some(RUNNING), None, 10).await.expect("list");
    assert_eq!(
        running.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
        ["e-8"]
    );
    let of_patient = s.list(None, Some("p-4711"), 10).await.expect("list");
    assert_eq!(of_patient.len(), 2);
    assert!(of_patient.iter().all(|x| x.outcome.is_none()));
    assert!(
        s.list(None, Some("p-other"), 10)
            .await
            .expect("list")
            .is_empty()
    );
}

#[tokio::test]
async fn an_execution_id_is_taken_once() {
    let (s, _db, _dir) = store().await;
    started(&s, "e-9").await;
    let digest = s.define("two-calls", TWO_CALLS, T0).await.expect("define");
    let def = Arc::new(Definition::load(TWO_CALLS).expect("loads"));
    let input = json!({"patient_id": "p-4711", "phone": "+81 3 1234 5678"});
    let mut e = Execution::start(def, "e-9", input.clone(), T0 + 5, 1);
    let err = s
        .create(
            "two-calls",
            &digest,
            Some("p-4711"),
            &s.input_digest(&input),
            &mut e,
            T0 + 5,
        )
        .await
        .expect_err("taken");
    assert!(matches!(err, StoreError::Exists(_)), "{err}");
    assert_eq!(
        s.outbox().await.expect("outbox").len(),
        1,
        "nothing of the second start"
    );
    // The same input in another key order is the same input.
    let reordered: Value =
        serde_json::from_str(r#"{"phone": "+81 3 1234 5678", "patient_id": "p-4711"}"#)
            .expect("json");
    assert_eq!(
        s.stored_input_digest("e-9").await.expect("read"),
        Some(s.input_digest(&reordered))
    );
    assert_ne!(
        s.input_digest(&reordered),
        s.input_digest(&json!({"patient_id": "p-4712"}))
    );
}
