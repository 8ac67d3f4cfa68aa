//! Prometheus metrics, one registry for the process, served at `/metrics`.
//!
//! Hot paths (RTP packets) count locally and flush here once per media tick, so thousands of
//! calls do not contend on one atomic per packet.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;
/// Labels whose value comes from configuration (queue names).
type NamedLabels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    pub calls_active: Gauge,
    pub calls_started: Counter,
    /// By cause: caller_bye, server_bye, cancel, rtp_timeout, drain, error, ...
    pub calls_ended: Family<Labels, Counter>,
    /// INVITEs refused, by status code.
    pub calls_rejected: Family<Labels, Counter>,
    /// Calls Careline placed, by outcome when they ended: `answered`, or why not (`busy`,
    /// `no_answer`, `declined`, `not_found`, `unreachable`, `trunk_auth`, ...).
    pub outbound_calls: Family<Labels, Counter>,
    /// Answering-machine detection on calls Careline placed, by verdict: `person`,
    /// `machine`, `not_sure`.
    pub answered_by: Family<Labels, Counter>,
    /// Voicemail greetings on placed calls, by how their end was told (beep, silence).
    pub voicemail_greetings: Family<Labels, Counter>,
    /// Agents by state (available, unavailable, offered, on_contact, after_contact_work,
    /// missed; offline ones are not counted).
    pub agents: Family<Labels, Gauge>,
    /// Offers of contacts to agents, by how they ended: accepted, declined, timed_out,
    /// contact_left, agent_left.
    pub agent_offers: Family<Labels, Counter>,
    /// Calls wrapped up by agents, by wrap-up code (`[routing] wrap_up_codes`).
    pub wrap_ups: Family<NamedLabels, Counter>,
    /// Queued callbacks, by event: `created` (a caller asked), `reached` (the patient
    /// answered), `retry` (a call nobody answered; another follows), `given_up` (the last
    /// attempt failed), `restored` (kept across a restart).
    pub callbacks: Family<Labels, Counter>,
    /// Browser callers' connections, by event: `lost` (the call waits for the browser to
    /// come back), `reconnected` (a new connection took the leg over), `refused` (a
    /// reconnect that was not allowed).
    pub browser_connections: Family<Labels, Counter>,
    /// Agents' consultations (warm transfers), by event: `started` (the number rings),
    /// `answered`, `failed` (busy, no answer), `conferenced` (the caller brought in),
    /// `handed_over`, `dropped`.
    pub consultations: Family<Labels, Counter>,
    /// Supervisors listening in, by event: `listen` (joined), `barge` (spoke into the call).
    pub monitoring: Family<Labels, Counter>,
    /// Telehealth rooms, by event: `opened` (live for its first participant), `joined` (one
    /// entered at once, a clinician or without a waiting room), `waiting` (one knocked at the
    /// waiting room), `admitted` (let in from it), `refused` (full, over, turned away),
    /// `rejoined`, `lost`, `recording`, `call_out`, `call_out_failed`, `ended`,
    /// `link_refused` (a forged, expired or withdrawn invitation link).
    pub rooms: Family<Labels, Counter>,
    /// Notices to people outside Careline (care-task webhook and e-mail), by channel
    /// (`webhook`, `mail`) and outcome: `sent`, `retry` (a try failed; another follows),
    /// `failed` (refused for good, or out of tries).
    pub notifications: Family<Labels, Counter>,
    pub dtmf_digits: Family<Labels, Counter>,
    pub rtp_packets_sent: Counter,
    pub rtp_packets_received: Counter,
    pub rtp_packets_lost: Counter,
    /// Datagrams on RTP ports that were not valid RTP for the call.
    pub rtp_packets_invalid: Counter,
    /// SRTP/SRTCP packets dropped (`kind` rtp or rtcp): a failed tag, a replay, cut short,
    /// plain, or a source too many.
    pub srtp_packets_refused: Family<Labels, Counter>,
    /// Media ticks that started more than one tick late (the machine is overloaded).
    pub media_ticks_late: Counter,
    pub media_legs: Gauge,
    /// SIP datagrams refused before the stack, by reason.
    pub sip_rejected: Family<Labels, Counter>,
    /// Digest authentication of INVITEs and REGISTERs, by result: accepted, challenged (401),
    /// refused (403: wrong or unknown credentials), throttled (403 while locked out).
    pub sip_auth: Family<Labels, Counter>,
    /// Users with at least one registered phone.
    pub sip_registered_users: Gauge,
    pub prompts_loaded: Gauge,
    pub draining: Gauge,
    /// Recordings being written.
    pub recordings_active: Gauge,
    pub recordings_started: Counter,
    /// Recordings stored as WAV instead of Opus because the writers were behind.
    pub recordings_overload_wav: Counter,
    /// Frames the recorder dropped because its writer was behind (silence stands in).
    pub recording_frames_dropped: Counter,
    /// S3 requests for recordings that failed (each is retried).
    pub recording_upload_failures: Counter,
    /// Recordings whose upload the object store refuses (bucket missing, access denied).
    pub recording_uploads_refused: Gauge,
    /// Recordings deleted by the retention policy.
    pub recordings_deleted: Counter,
    /// Logins by outcome (success, failure).
    pub auth_logins: Family<Labels, Counter>,
    /// Accounts locked after repeated failed logins: alert on any increase.
    pub auth_lockouts: Counter,
    /// Requests refused for want of valid credentials (bad token, no session, unknown name).
    pub auth_unauthenticated: Counter,
    /// HTTP connections closed at once: their source already had the most it may.
    pub http_connections_refused: Counter,
    /// Contacts waiting in each queue now.
    pub queue_contacts: Family<NamedLabels, Gauge>,
    /// Contacts placed in each queue.
    pub queue_entered: Family<NamedLabels, Counter>,
    /// Contacts a full queue turned away (the flow's QueueAtCapacity branch).
    pub queue_refused: Family<NamedLabels, Counter>,
    /// Contacts that left each queue without an agent (hung up, or moved on by their flow).
    /// Callers who waited past their queue's `alert_after_secs` unanswered, by queue: the
    /// urgent line's alarm (alert on any).
    pub queue_wait_alerts: Family<NamedLabels, Counter>,
    pub queue_abandoned: Family<NamedLabels, Counter>,
    /// How long answered contacts waited in each queue before an agent was with them, in
    /// seconds (a contact center's "speed of answer"); its count is the contacts answered.
    pub queue_answer_wait: Family<NamedLabels, Histogram, fn() -> Histogram>,
    /// Workflow executions by status (RUNNING, SUCCEEDED, FAILED, ABORTED), as stored.
    pub workflow_executions: Family<Labels, Gauge>,
    /// Workflow steps stored (one transaction each).
    pub workflow_transitions: Counter,
    /// Failed workflow task invocations, by error: `States.Timeout`, `Lambda.Unknown`, or
    /// `function` (an error the function named itself).
    pub workflow_task_failures: Family<Labels, Counter>,
    /// Running executions whose timer is more than a minute past due: alert on any.
    pub workflow_timers_overdue: Gauge,
    /// Care-coordination turnaround: from a workflow execution's start (the discharge that
    /// started it) to the first call in which the patient answered, in seconds.
    pub care_first_contact: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Waits from 1 s to about an hour, doubling.
fn answer_wait_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 12))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("careline");
        let m = Metrics {
            calls_active: Gauge::default(),
            calls_started: Counter::default(),
            outbound_calls: Family::default(),
            answered_by: Family::default(),
            voicemail_greetings: Family::default(),
            agents: Family::default(),
            agent_offers: Family::default(),
            wrap_ups: Family::default(),
            callbacks: Family::default(),
            browser_connections: Family::default(),
            consultations: Family::default(),
            monitoring: Family::default(),
            rooms: Family::default(),
            notifications: Family::default(),
            calls_ended: Family::default(),
            calls_rejected: Family::default(),
            dtmf_digits: Family::default(),
            rtp_packets_sent: Counter::default(),
            rtp_packets_received: Counter::default(),
            rtp_packets_lost: Counter::default(),
            rtp_packets_invalid: Counter::default(),
            srtp_packets_refused: Family::default(),
            media_ticks_late: Counter::default(),
            media_legs: Gauge::default(),
            sip_rejected: Family::default(),
            sip_auth: Family::default(),
            sip_registered_users: Gauge::default(),
            workflow_executions: Family::default(),
            workflow_transitions: Counter::default(),
            workflow_task_failures: Family::default(),
            workflow_timers_overdue: Gauge::default(),
            // A minute to about three weeks, doubling.
            care_first_contact: Histogram::new(exponential_buckets(60.0, 2.0, 15)),
            prompts_loaded: Gauge::default(),
            draining: Gauge::default(),
            recordings_active: Gauge::default(),
            recordings_started: Counter::default(),
            recordings_overload_wav: Counter::default(),
            recording_frames_dropped: Counter::default(),
            recording_upload_failures: Counter::default(),
            recording_uploads_refused: Gauge::default(),
            recordings_deleted: Counter::default(),
            auth_logins: Family::default(),
            auth_lockouts: Counter::default(),
            http_connections_refused: Counter::default(),
            queue_contacts: Family::default(),
            queue_entered: Family::default(),
            queue_refused: Family::default(),
            queue_abandoned: Family::default(),
            queue_wait_alerts: Family::default(),
            queue_answer_wait: Family::new_with_constructor(answer_wait_histogram),
            auth_unauthenticated: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("calls_active", "Calls in progress", m.calls_active.clone());
        registry.register("calls_started", "Calls answered", m.calls_started.clone());
        registry.register(
            "outbound_calls",
            "Calls Careline placed, by outcome",
            m.outbound_calls.clone(),
        );
        registry.register(
            "answered_by",
            "Answering-machine detection on calls Careline placed, by verdict",
            m.answered_by.clone(),
        );
        registry.register(
            "voicemail_greetings",
            "Voicemail greetings on calls Careline placed, by how their end was told (beep, silence)",
            m.voicemail_greetings.clone(),
        );
        registry.register("agents", "Agents by state", m.agents.clone());
        registry.register(
            "agent_offers",
            "Offers of contacts to agents, by how they ended",
            m.agent_offers.clone(),
        );
        registry.register(
            "wrap_ups",
            "Calls agents wrapped up, by wrap-up code",
            m.wrap_ups.clone(),
        );
        registry.register(
            "callbacks",
            "Queued callbacks, by event (created, reached, retry, given_up, restored)",
            m.callbacks.clone(),
        );
        registry.register(
            "browser_connections",
            "Browser connections, by event: a caller's lost or reconnected, an agent's agent_lost or agent_reconnected, a reconnect refused",
            m.browser_connections.clone(),
        );
        registry.register(
            "consultations",
            "Agents' consultations (warm transfers), by event (started, answered, failed, conferenced, handed_over, dropped)",
            m.consultations.clone(),
        );
        registry.register(
            "monitoring",
            "Supervisors listening in on calls, by event (listen, barge)",
            m.monitoring.clone(),
        );
        registry.register(
            "rooms",
            "Telehealth rooms, by event (opened, joined, waiting, admitted, rejoined, refused, lost, recording, call_out, call_out_failed, ended, link_refused)",
            m.rooms.clone(),
        );
        registry.register(
            "notifications",
            "Notices to people outside Careline (webhook, e-mail), by channel and outcome",
            m.notifications.clone(),
        );
        registry.register(
            "queue_wait_alerts",
            "Callers who waited past their queue's alert limit unanswered, by queue",
            m.queue_wait_alerts.clone(),
        );
        registry.register(
            "calls_ended",
            "Calls ended, by cause",
            m.calls_ended.clone(),
        );
        registry.register(
            "calls_rejected",
            "INVITEs refused, by SIP status",
            m.calls_rejected.clone(),
        );
        registry.register(
            "dtmf_digits",
            "DTMF digits detected, by method",
            m.dtmf_digits.clone(),
        );
        registry.register(
            "rtp_packets_sent",
            "RTP packets sent",
            m.rtp_packets_sent.clone(),
        );
        registry.register(
            "rtp_packets_received",
            "RTP packets received",
            m.rtp_packets_received.clone(),
        );
        registry.register(
            "rtp_packets_lost",
            "RTP packets lost (RFC 3550 cumulative, at call end)",
            m.rtp_packets_lost.clone(),
        );
        registry.register(
            "rtp_packets_invalid",
            "Datagrams on RTP ports dropped as invalid",
            m.rtp_packets_invalid.clone(),
        );
        registry.register(
            "srtp_packets_refused",
            "SRTP (kind=rtp) and SRTCP (kind=rtcp) packets dropped: failed authentication, \
             replays, plain packets, cut short",
            m.srtp_packets_refused.clone(),
        );
        registry.register(
            "media_ticks_late",
            "Media clock ticks that ran late",
            m.media_ticks_late.clone(),
        );
        registry.register(
            "media_legs",
            "Media legs on the media clock",
            m.media_legs.clone(),
        );
        registry.register(
            "sip_rejected",
            "SIP datagrams refused before the stack, by reason",
            m.sip_rejected.clone(),
        );
        registry.register(
            "sip_auth",
            "Digest authentication of INVITEs and REGISTERs, by result",
            m.sip_auth.clone(),
        );
        registry.register(
            "sip_registered_users",
            "Users with at least one registered phone",
            m.sip_registered_users.clone(),
        );
        registry.register(
            "workflow_executions",
            "Workflow executions by status",
            m.workflow_executions.clone(),
        );
        registry.register(
            "workflow_transitions",
            "Workflow steps stored",
            m.workflow_transitions.clone(),
        );
        registry.register(
            "workflow_task_failures",
            "Failed workflow task invocations, by error",
            m.workflow_task_failures.clone(),
        );
        registry.register(
            "workflow_timers_overdue",
            "Running workflow executions whose timer is over a minute past due",
            m.workflow_timers_overdue.clone(),
        );
        registry.register(
            "prompts_loaded",
            "Prompts loaded and encoded",
            m.prompts_loaded.clone(),
        );
        registry.register(
            "draining",
            "1 while shutting down (new calls refused)",
            m.draining.clone(),
        );
        registry.register(
            "recordings_active",
            "Recordings being written",
            m.recordings_active.clone(),
        );
        registry.register(
            "recordings_started",
            "Recordings started",
            m.recordings_started.clone(),
        );
        registry.register(
            "recording_frames_dropped",
            "Recorded frames dropped because the writer was behind",
            m.recording_frames_dropped.clone(),
        );
        registry.register(
            "recordings_overload_wav",
            "Recordings stored as WAV instead of Opus because the writer threads were behind (recording.overload_wav)",
            m.recordings_overload_wav.clone(),
        );
        registry.register(
            "recording_upload_failures",
            "Failed (and retried) object-store requests for recordings",
            m.recording_upload_failures.clone(),
        );
        registry.register(
            "recording_uploads_refused",
            "Recordings whose upload the object store refuses (bucket missing, access denied, bad credentials); retried at most a minute apart, the audio waits in the encrypted spool",
            m.recording_uploads_refused.clone(),
        );
        registry.register(
            "recordings_deleted",
            "Recordings deleted by the retention policy",
            m.recordings_deleted.clone(),
        );
        registry.register(
            "auth_logins",
            "Password logins, by outcome",
            m.auth_logins.clone(),
        );
        registry.register(
            "auth_lockouts",
            "Sign-ins from one address to a real account slowed after repeated failures",
            m.auth_lockouts.clone(),
        );
        registry.register(
            "auth_unauthenticated",
            "Requests refused for want of valid credentials (summarised per source in the audit trail)",
            m.auth_unauthenticated.clone(),
        );
        registry.register(
            "http_connections_refused",
            "HTTP connections closed at once because their source had too many open",
            m.http_connections_refused.clone(),
        );
        registry.register(
            "queue_contacts",
            "Contacts waiting in each queue",
            m.queue_contacts.clone(),
        );
        registry.register(
            "queue_entered",
            "Contacts placed in each queue",
            m.queue_entered.clone(),
        );
        registry.register(
            "queue_refused",
            "Contacts a full queue turned away",
            m.queue_refused.clone(),
        );
        registry.register(
            "queue_abandoned",
            "Contacts that left each queue without an agent",
            m.queue_abandoned.clone(),
        );
        registry.register(
            "care_first_contact_seconds",
            "From a workflow's start (a discharge) to the first call the patient answered",
            m.care_first_contact.clone(),
        );
        registry.register(
            "queue_answer_wait_seconds",
            "How long answered contacts waited in each queue before an agent was with them",
            m.queue_answer_wait.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Handles on one queue's metrics (waiting now, entered, refused, answered after how
    /// long), for the queue registry.
    pub fn queue_meters(&self, queue: &str) -> (Gauge, Counter, Counter, Counter, Histogram) {
        let labels = vec![("queue", queue.to_string())];
        (
            self.queue_contacts.get_or_create(&labels).clone(),
            self.queue_entered.get_or_create(&labels).clone(),
            self.queue_refused.get_or_create(&labels).clone(),
            self.queue_abandoned.get_or_create(&labels).clone(),
            self.queue_answer_wait.get_or_create(&labels).clone(),
        )
    }

    pub fn call_ended(&self, cause: &'static str) {
        self.calls_ended
            .get_or_create(&vec![("cause", cause)])
            .inc();
    }

    pub fn browser_connection(&self, event: &'static str) {
        self.browser_connections
            .get_or_create(&vec![("event", event)])
            .inc();
    }

    pub fn consultation(&self, event: &'static str) {
        self.consultations
            .get_or_create(&vec![("event", event)])
            .inc();
    }

    pub fn monitoring(&self, event: &'static str) {
        self.monitoring.get_or_create(&vec![("event", event)]).inc();
    }

    pub fn room(&self, event: &'static str) {
        self.rooms.get_or_create(&vec![("event", event)]).inc();
    }

    pub fn callback(&self, event: &'static str) {
        self.callbacks.get_or_create(&vec![("event", event)]).inc();
    }

    pub fn voicemail_greeting(&self, ended: &'static str) {
        self.voicemail_greetings
            .get_or_create(&vec![("ended", ended)])
            .inc();
    }

    pub fn answered_by(&self, verdict: &'static str) {
        self.answered_by
            .get_or_create(&vec![("verdict", verdict)])
            .inc();
    }

    pub fn outbound_call(&self, outcome: &'static str) {
        self.outbound_calls
            .get_or_create(&vec![("outcome", outcome)])
            .inc();
    }

    pub fn call_rejected(&self, code: &'static str) {
        self.calls_rejected
            .get_or_create(&vec![("code", code)])
            .inc();
    }

    pub fn digit(&self, method: &'static str) {
        self.dtmf_digits
            .get_or_create(&vec![("method", method)])
            .inc();
    }

    pub fn sip_auth(&self, result: &'static str) {
        self.sip_auth.get_or_create(&vec![("result", result)]).inc();
    }

    pub fn sip_rejected(&self, reason: &'static str) {
        self.sip_rejected
            .get_or_create(&vec![("reason", reason)])
            .inc();
    }

    pub fn workflow_task_failed(&self, error: &str) {
        let bucket = match error {
            "States.Timeout" => "States.Timeout",
            "Lambda.Unknown" => "Lambda.Unknown",
            _ => "function",
        };
        self.workflow_task_failures
            .get_or_create(&vec![("error", bucket)])
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
