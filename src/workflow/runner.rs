//! The workflow shell in the server: starts executions, carries out their task invocations,
//! fires their timers and applies every answer through the [`Store`], one transaction per
//! transition.
//!
//! One task (the loop) applies every answer and timer, so two transitions of one execution
//! never race; invocations run beside it, each in its own task, and send their answer back.
//! On start the loop first carries out again every invocation left in the outbox by a
//! process that stopped (killed or not) before it was answered, under the same idempotency
//! key, and fires every timer that fell due while no process ran.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::execution::{Definition, Event, Execution};
use super::store::{Invocation, Store, StoreError, Summary};
use crate::db::WallClock;
use crate::flow::lambda::Lambdas;

/// The longest the loop sleeps without looking at the database's timers: a timer written by
/// another process (a second server on the same PostgreSQL) is seen within this.
const MAX_SLEEP: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("no workflow named `{0}`")]
    NoWorkflow(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A workflow definition failed to load: the file and every problem, named by state.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {problems}")]
pub struct LoadError {
    pub file: String,
    pub problems: String,
}

/// The workflows the server runs, by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    by_name: BTreeMap<String, (Arc<Definition>, String)>,
}

impl Catalog {
    /// Loads every `*.json` in `dir` (the built-in workflows when [`crate::shipped`] says
    /// so); a workflow is named by its file name without `.asl.json` or `.json`.
    pub fn load(dir: &Path) -> Result<Catalog, LoadError> {
        let mut files: Vec<(String, String, String)> = Vec::new();
        if crate::shipped::built_in(dir, crate::shipped::WORKFLOWS_DIR) {
            for (name, text) in crate::shipped::workflows() {
                files.push((
                    format!("{}/{name}", crate::shipped::ORIGIN),
                    name.to_string(),
                    text.to_string(),
                ));
            }
        } else {
            let entries = std::fs::read_dir(dir).map_err(|e| LoadError {
                file: dir.display().to_string(),
                problems: e.to_string(),
            })?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).map_err(|e| LoadError {
                    file: path.display().to_string(),
                    problems: e.to_string(),
                })?;
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                files.push((path.display().to_string(), name, text));
            }
        }
        let mut by_name = BTreeMap::new();
        for (file, name, text) in files {
            let def = Definition::load(&text).map_err(|problems| LoadError {
                file: file.clone(),
                problems: problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            })?;
            let name = name
                .strip_suffix(".asl.json")
                .or_else(|| name.strip_suffix(".json"))
                .unwrap_or(&name)
                .to_string();
            by_name.insert(name, (Arc::new(def), text));
        }
        Ok(Catalog { by_name })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

enum Msg {
    Answer(Box<(Invocation, Event)>),
    /// A new timer may be earlier than the one the loop sleeps for.
    Wake,
}

/// The running shell: cheap to clone, shared by the API.
#[derive(Clone)]
pub struct Workflows {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    catalog: Catalog,
    /// Digest of each catalog entry's text, by name.
    digests: BTreeMap<String, String>,
    lambdas: Lambdas,
    task_timeout: Duration,
    clock: WallClock,
    tx: mpsc::UnboundedSender<Msg>,
}

impl Workflows {
    /// Stores the catalog's definitions, starts the loop, and carries out what the last
    /// process left undone.
    pub async fn start(
        store: Store,
        catalog: Catalog,
        lambdas: Lambdas,
        task_timeout: Duration,
        clock: WallClock,
    ) -> Result<Workflows, StoreError> {
        let mut digests = BTreeMap::new();
        for (name, (_, text)) in &catalog.by_name {
            digests.insert(
                name.clone(),
                store.define(name, text, clock.now_ms()).await?,
            );
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let w = Workflows {
            inner: Arc::new(Inner {
                store,
                catalog,
                digests,
                lambdas,
                task_timeout,
                clock,
                tx,
            }),
        };
        let pending = w.inner.store.outbox().await?;
        if !pending.is_empty() {
            info!(
                tasks = pending.len(),
                "workflow tasks left unanswered by the last process are carried out again"
            );
        }
        for invocation in pending {
            w.spawn_invocation(invocation);
        }
        tokio::spawn(run_loop(Arc::downgrade(&w.inner), rx));
        Ok(w)
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Starts an execution of `workflow` with `input`; it is stored before this returns.
    pub async fn start_execution(
        &self,
        workflow: &str,
        input: Value,
    ) -> Result<Summary, RunnerError> {
        let inner = &self.inner;
        let (def, _) = inner
            .catalog
            .by_name
            .get(workflow)
            .ok_or_else(|| RunnerError::NoWorkflow(workflow.to_string()))?;
        let digest = inner
            .digests
            .get(workflow)
            .ok_or_else(|| RunnerError::NoWorkflow(workflow.to_string()))?;
        let id = format!("{workflow}-{}", hex::encode(rand::random::<[u8; 8]>()));
        let patient = input
            .get("patient_id")
            .and_then(Value::as_str)
            .map(str::to_string);
        let now = inner.clock.now_ms();
        let mut e = Execution::start(def.clone(), &id, input, now, rand::random());
        let invocations = inner
            .store
            .create(workflow, digest, patient.as_deref(), &mut e, now)
            .await?;
        info!(execution = %id, workflow, "workflow execution started");
        for inv in invocations {
            self.spawn_invocation(inv);
        }
        let _ = inner.tx.send(Msg::Wake);
        Ok(inner.store.summary(&id).await?)
    }

    fn spawn_invocation(&self, invocation: Invocation) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let function = super::function_name(&invocation.resource).to_string();
            let key = invocation.key();
            let timeout = invocation
                .timeout_secs
                .map_or(inner.task_timeout, Duration::from_secs);
            let result = inner
                .lambdas
                .invoke_task(&function, &invocation.input, &key, timeout)
                .await;
            let task = invocation.task.clone();
            let event = match result {
                Ok(output) => Event::TaskSucceeded { task, output },
                Err(e) => {
                    // The error's name only: its cause may carry the patient's data.
                    warn!(execution = %invocation.execution_id, state = %task.state, attempt = task.attempt, function, error = %e.error, "workflow task failed");
                    Event::TaskFailed {
                        task,
                        error: e.error,
                        cause: e.cause,
                    }
                }
            };
            let _ = inner.tx.send(Msg::Answer(Box::new((invocation, event))));
        });
    }
}

async fn run_loop(inner: std::sync::Weak<Inner>, mut rx: mpsc::UnboundedReceiver<Msg>) {
    loop {
        let Some(w) = inner.upgrade().map(|inner| Workflows { inner }) else {
            return;
        };
        // Every timer due now (those that fell due while no process ran included).
        if let Err(e) = fire_due(&w).await {
            warn!(error = %e, "workflow timers could not be read; trying again shortly");
        }
        let now = w.inner.clock.now_ms();
        let sleep = match w.inner.store.next_wake().await {
            Ok(Some(at)) => Duration::from_millis((at - now).clamp(0, i64::MAX) as u64),
            _ => MAX_SLEEP,
        }
        .min(MAX_SLEEP);
        drop(w);
        let msg = tokio::select! {
            m = rx.recv() => match m {
                Some(m) => Some(m),
                None => return,
            },
            _ = tokio::time::sleep(sleep) => None,
        };
        let Some(w) = inner.upgrade().map(|inner| Workflows { inner }) else {
            return;
        };
        if let Some(Msg::Answer(answer)) = msg
            && let Err(e) = apply_answer(&w, answer.0, answer.1).await
        {
            warn!(error = %e, "a workflow task's answer could not be stored; it is asked again on restart");
        }
    }
}

async fn fire_due(w: &Workflows) -> Result<(), StoreError> {
    let store = &w.inner.store;
    let mut fired = std::collections::HashSet::new();
    loop {
        let now = w.inner.clock.now_ms();
        // Each execution once per round: one whose timer would not move cannot spin here.
        let due: Vec<String> = store
            .due(now, 100)
            .await?
            .into_iter()
            .filter(|id| fired.insert(id.clone()))
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        for id in due {
            let Some(stored) = store.running(&id).await? else {
                continue;
            };
            let (mut e, transitions) = store.restore(stored).await?;
            e.handle_timeout(now);
            for inv in store.advance(&mut e, transitions, None, now).await? {
                w.spawn_invocation(inv);
            }
        }
    }
}

async fn apply_answer(
    w: &Workflows,
    invocation: Invocation,
    event: Event,
) -> Result<(), StoreError> {
    let store = &w.inner.store;
    let Some(stored) = store.running(&invocation.execution_id).await? else {
        return Ok(());
    };
    let (mut e, transitions) = store.restore(stored).await?;
    let now = w.inner.clock.now_ms();
    e.handle(event, now);
    for inv in store
        .advance(&mut e, transitions, Some(&invocation.task), now)
        .await?
    {
        w.spawn_invocation(inv);
    }
    Ok(())
}
