//! Roles and the one permission table (sans-IO). Deny by default: an action a role is not
//! listed for is refused, and so is an action whose scope the request does not meet.
//!
//! "Minimum necessary" (HIPAA §164.502(b)) is expressed by scopes: an agent reads a patient's
//! summary only while on a call with that patient; a clinician likewise, or after declaring a
//! break-glass reason; a supervisor for patients on any live call. The shell supplies the
//! facts (is this user on a call with this patient? is there a break-glass grant?); this
//! table decides.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Supervisor,
    Clinician,
    Agent,
    Auditor,
    Service,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::Supervisor,
        Role::Clinician,
        Role::Agent,
        Role::Auditor,
        Role::Service,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Supervisor => "supervisor",
            Role::Clinician => "clinician",
            Role::Agent => "agent",
            Role::Auditor => "auditor",
            Role::Service => "service",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "`{s}` is not a role (admin, supervisor, clinician, agent, auditor, service)"
                )
            })
    }
}

/// What a request wants to do. One per guarded endpoint family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Who is calling: id, preferred language, verified (no clinical data).
    PatientLookup,
    /// The screen-pop summary (clinical data).
    PatientSummary,
    /// The whole record as a FHIR Bundle.
    PatientExport,
    /// FHIR Bundle import.
    PatientImport,
    /// Append to a patient's contact history.
    ContactAppend,
    /// Tell Careline which patient and user a live call is about (routing layer).
    ActiveContactSet,
    /// Declare emergency access to a patient, with a reason.
    BreakGlass,
    AuditRead,
    UserManage,
    /// Listen to / download a recording (recording issue).
    RecordingRead,
    RecordingDelete,
    /// Start, pause, resume or stop recording a live call.
    RecordingControl,
    /// One's own identity.
    SelfRead,
    /// One's own API tokens: list, issue (rotate), revoke. Admins manage anyone's through
    /// `UserManage`.
    OwnTokens,
    /// Start a care-coordination workflow execution (its input names the patient).
    WorkflowStart,
    /// An execution's status, history and outcome.
    WorkflowRead,
    /// The care team's work list (what workflows asked of a physician or the care team).
    CareTaskRead,
    /// Mark a work-list item done.
    CareTaskDone,
    /// Approve or decline a refill request on the work list (an approved one goes to the
    /// pharmacy): a prescriber's decision.
    CareTaskDecide,
    /// Place a call from a browser into a contact flow (WHIP), when `[webrtc] public_calls`
    /// does not open it to anyone.
    CallPlace,
    /// Take the caller who has waited longest in a queue, from a browser (WHIP).
    CallAnswer,
    /// The contact center's live view: queues' figures and every agent's state.
    DeskRead,
    /// The notices owed to people and systems outside (webhook, e-mail, pharmacy): list
    /// them, send a failed one again. No patient data is shown.
    NotificationManage,
    /// The call records (one per answered call: queues, agents, times, wrap-up): reports.
    /// No patient data is shown.
    CallRecordsRead,
    /// The queued callbacks: list them (no number, no patient), cancel a queued one.
    CallbackManage,
    /// Listen in on an agent's call from the browser (silent monitoring), and speak into it
    /// (barge-in).
    CallMonitor,
    /// Book telehealth rooms, invite people to them (each invitee gets a signed link), see
    /// one's rooms, and run a visit one hosts (let in, mute, take out, end).
    RoomManage,
    /// Enter a room as a clinician (without an invitation link).
    RoomJoin,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::PatientLookup => "patient.lookup",
            Action::PatientSummary => "patient.summary",
            Action::PatientExport => "patient.export",
            Action::PatientImport => "patient.import",
            Action::ContactAppend => "contact.append",
            Action::ActiveContactSet => "contact.active",
            Action::BreakGlass => "break_glass",
            Action::AuditRead => "audit.read",
            Action::UserManage => "user.manage",
            Action::RecordingRead => "recording.read",
            Action::RecordingDelete => "recording.delete",
            Action::RecordingControl => "recording.control",
            Action::SelfRead => "self.read",
            Action::OwnTokens => "token.own",
            Action::WorkflowStart => "workflow.start",
            Action::WorkflowRead => "workflow.read",
            Action::CareTaskRead => "care_task.read",
            Action::CareTaskDone => "care_task.done",
            Action::CareTaskDecide => "care_task.decide",
            Action::CallPlace => "call.place",
            Action::CallAnswer => "call.answer",
            Action::DeskRead => "desk.read",
            Action::NotificationManage => "notification.manage",
            Action::CallRecordsRead => "call_records.read",
            Action::CallbackManage => "callback.manage",
            Action::CallMonitor => "call.monitor",
            Action::RoomManage => "room.manage",
            Action::RoomJoin => "room.join",
        }
    }
}

/// Under which condition a role may do an action on a patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Always (the action is still audited).
    Any,
    /// Only while on a live call with this patient.
    OnCall,
    /// On a call with the patient, or with a break-glass grant for them.
    OnCallOrBreakGlass,
    /// While the patient is on any live call (supervisors monitor calls).
    PatientOnAnyCall,
    /// Only on a call the user handles (the call's link to its patient names them).
    CallParty,
}

use Action as A;
use Role as R;
use Scope as S;

/// THE permission table. Anything not here is denied.
pub(crate) const PERMISSIONS: &[(Action, Role, Scope)] = &[
    (A::PatientLookup, R::Service, S::Any),
    (A::PatientLookup, R::Agent, S::Any),
    (A::PatientLookup, R::Clinician, S::Any),
    (A::PatientLookup, R::Supervisor, S::Any),
    (A::PatientSummary, R::Agent, S::OnCall),
    (A::PatientSummary, R::Clinician, S::OnCallOrBreakGlass),
    (A::PatientSummary, R::Supervisor, S::PatientOnAnyCall),
    (A::PatientExport, R::Clinician, S::OnCallOrBreakGlass),
    (A::PatientImport, R::Admin, S::Any),
    (A::PatientImport, R::Service, S::Any),
    (A::ContactAppend, R::Agent, S::OnCall),
    (A::ContactAppend, R::Clinician, S::OnCallOrBreakGlass),
    (A::ContactAppend, R::Supervisor, S::PatientOnAnyCall),
    (A::ContactAppend, R::Service, S::Any),
    // A call's patient link is earned by the call: the routing integration (service) links
    // any live call; a person only a live call they handle (to re-point it at the patient the
    // caller turned out to be), never a call they invent.
    (A::ActiveContactSet, R::Service, S::Any),
    (A::ActiveContactSet, R::Supervisor, S::CallParty),
    (A::ActiveContactSet, R::Clinician, S::CallParty),
    (A::ActiveContactSet, R::Agent, S::CallParty),
    (A::BreakGlass, R::Clinician, S::Any),
    (A::AuditRead, R::Auditor, S::Any),
    (A::UserManage, R::Admin, S::Any),
    (A::RecordingRead, R::Supervisor, S::Any),
    (A::RecordingRead, R::Clinician, S::OnCallOrBreakGlass),
    (A::RecordingDelete, R::Admin, S::Any),
    // Recording control decides what evidence of a call is kept, so not the people on the call
    // (an agent or clinician could erase their own call): supervisors (quality and compliance:
    // pause while a caller reads out card numbers) and services (the integrations that do
    // that automatically). It reveals nothing about the patient, so no patient scope.
    (A::RecordingControl, R::Supervisor, S::Any),
    (A::RecordingControl, R::Service, S::Any),
    (A::SelfRead, R::Admin, S::Any),
    (A::SelfRead, R::Supervisor, S::Any),
    (A::SelfRead, R::Clinician, S::Any),
    (A::SelfRead, R::Agent, S::Any),
    (A::SelfRead, R::Auditor, S::Any),
    (A::SelfRead, R::Service, S::Any),
    (A::OwnTokens, R::Admin, S::Any),
    (A::OwnTokens, R::Supervisor, S::Any),
    (A::OwnTokens, R::Clinician, S::Any),
    (A::OwnTokens, R::Agent, S::Any),
    (A::OwnTokens, R::Auditor, S::Any),
    (A::OwnTokens, R::Service, S::Any),
    // Care coordination is the care team's work, not a call's: clinicians and supervisors
    // start follow-ups and watch them (reaching the patient or not), and the discharge
    // integration (service) starts them as patients leave. Every start and read is audited
    // with the patient.
    // A browser call runs a contact flow as a phone call does and reveals nothing by
    // itself: staff who take calls (to try a flow from their desk) and the services that
    // place calls for patients (a portal's back end) may place one. Not admins or auditors.
    (A::CallPlace, R::Supervisor, S::Any),
    (A::CallPlace, R::Clinician, S::Any),
    (A::CallPlace, R::Agent, S::Any),
    (A::CallPlace, R::Service, S::Any),
    // Answering a queued caller is what nurses, clinicians and supervisors do; a service or
    // an auditor has no one to talk to the caller.
    (A::CallAnswer, R::Supervisor, S::Any),
    (A::CallAnswer, R::Clinician, S::Any),
    (A::CallAnswer, R::Agent, S::Any),
    // The live view of queues and agents is the supervisor's: it shows who works how, not
    // patients.
    (A::DeskRead, R::Supervisor, S::Any),
    // Operators see what did not go out, and send it again once the relay is fixed.
    (A::NotificationManage, R::Admin, S::Any),
    (A::NotificationManage, R::Supervisor, S::Any),
    // Reports on the contact center: who answered what, how long callers waited.
    (A::CallRecordsRead, R::Admin, S::Any),
    (A::CallRecordsRead, R::Supervisor, S::Any),
    (A::CallRecordsRead, R::Auditor, S::Any),
    // The callbacks owed to callers: who runs the contact center.
    (A::CallbackManage, R::Admin, S::Any),
    (A::CallbackManage, R::Supervisor, S::Any),
    // Listening in on a nurse's call (and barging in) is the supervisor's coaching tool; it
    // hears a patient, so each time is audited with the call (and its patient, when known).
    (A::CallMonitor, R::Supervisor, S::Any),
    // A telehealth visit is a clinician's: they book it, invite the patient and whoever
    // helps (an interpreter, family), enter it and run it. The scheduling integration
    // (service) books visits and sends the links. Entering a visit shows its patient, so
    // each entry is audited with them.
    (A::RoomManage, R::Clinician, S::Any),
    (A::RoomManage, R::Service, S::Any),
    (A::RoomJoin, R::Clinician, S::Any),
    (A::WorkflowStart, R::Clinician, S::Any),
    (A::WorkflowStart, R::Supervisor, S::Any),
    (A::WorkflowStart, R::Service, S::Any),
    (A::WorkflowRead, R::Clinician, S::Any),
    (A::WorkflowRead, R::Supervisor, S::Any),
    (A::WorkflowRead, R::Service, S::Any),
    // The work list is for the people who act on it.
    (A::CareTaskRead, R::Clinician, S::Any),
    (A::CareTaskRead, R::Supervisor, S::Any),
    (A::CareTaskDone, R::Clinician, S::Any),
    (A::CareTaskDone, R::Supervisor, S::Any),
    // A refill is a prescriber's decision: clinicians only.
    (A::CareTaskDecide, R::Clinician, S::Any),
];

/// The scope `role` has for `action`, or `None` (denied whatever the facts).
pub(crate) fn scope(role: Role, action: Action) -> Option<Scope> {
    PERMISSIONS
        .iter()
        .find(|(a, r, _)| *a == action && *r == role)
        .map(|(_, _, s)| *s)
}

/// Facts about the request that scopes depend on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts {
    /// The user handles a live call with this patient.
    pub on_call_with_patient: bool,
    /// The patient is on some live call.
    pub patient_on_any_call: bool,
    /// The user holds an unexpired break-glass grant for the patient.
    pub break_glass: bool,
    /// The user handles the call the request is about.
    pub party_to_call: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow { break_glass: bool },
    Deny(DenyReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// The role may never do this.
    Role,
    /// The role may, but only while on a call with the patient.
    NotOnCall,
    /// As above, or with break-glass, which was not declared.
    NeedsBreakGlass,
    /// The role's access is limited to certain patients, and the request concerns no known
    /// patient (a recording whose call was never linked to one).
    PatientUnknown,
    /// The request is about a call the user does not handle.
    NotParty,
    /// The request is about a call that is not live (never existed, or ended).
    CallNotLive,
}

impl DenyReason {
    pub fn message(self) -> &'static str {
        match self {
            DenyReason::Role => "your role does not allow this",
            DenyReason::NotOnCall => {
                "allowed only while you are on a call with this patient (minimum necessary)"
            }
            DenyReason::NeedsBreakGlass => {
                "allowed only while you are on a call with this patient, or after declaring break-glass access with a reason"
            }
            DenyReason::PatientUnknown => {
                "your role has access only to particular patients, and no patient is known for this request"
            }
            DenyReason::NotParty => "allowed only on a call you are handling",
            DenyReason::CallNotLive => "no live call with this id",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::Role => "role",
            DenyReason::NotOnCall => "not_on_call",
            DenyReason::NeedsBreakGlass => "needs_break_glass",
            DenyReason::PatientUnknown => "patient_unknown",
            DenyReason::NotParty => "not_party",
            DenyReason::CallNotLive => "call_not_live",
        }
    }
}

pub(crate) fn decide(role: Role, action: Action, facts: Facts) -> Decision {
    match scope(role, action) {
        None => Decision::Deny(DenyReason::Role),
        Some(Scope::Any) => Decision::Allow { break_glass: false },
        Some(Scope::OnCall) if facts.on_call_with_patient => Decision::Allow { break_glass: false },
        Some(Scope::OnCall) => Decision::Deny(DenyReason::NotOnCall),
        Some(Scope::PatientOnAnyCall) if facts.patient_on_any_call => {
            Decision::Allow { break_glass: false }
        }
        Some(Scope::PatientOnAnyCall) => Decision::Deny(DenyReason::NotOnCall),
        Some(Scope::OnCallOrBreakGlass) if facts.on_call_with_patient => {
            Decision::Allow { break_glass: false }
        }
        Some(Scope::OnCallOrBreakGlass) if facts.break_glass => {
            Decision::Allow { break_glass: true }
        }
        Some(Scope::OnCallOrBreakGlass) => Decision::Deny(DenyReason::NeedsBreakGlass),
        Some(Scope::CallParty) if facts.party_to_call => Decision::Allow { break_glass: false },
        Some(Scope::CallParty) => Decision::Deny(DenyReason::NotParty),
    }
}

/// As [`decide`], for a request that concerns no known patient: only an unscoped (`Any`) rule
/// can allow it, since there is nobody to check a patient scope against.
pub(crate) fn decide_without_patient(role: Role, action: Action) -> Decision {
    match scope(role, action) {
        None => Decision::Deny(DenyReason::Role),
        Some(Scope::Any) => Decision::Allow { break_glass: false },
        Some(_) => Decision::Deny(DenyReason::PatientUnknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlisted_is_denied_and_scopes_need_their_facts() {
        let none = Facts::default();
        assert_eq!(
            decide(Role::Auditor, Action::PatientSummary, none),
            Decision::Deny(DenyReason::Role)
        );
        assert_eq!(
            decide(Role::Admin, Action::PatientSummary, none),
            Decision::Deny(DenyReason::Role)
        );
        assert_eq!(
            decide(Role::Agent, Action::PatientSummary, none),
            Decision::Deny(DenyReason::NotOnCall)
        );
        let on_call = Facts {
            on_call_with_patient: true,
            patient_on_any_call: true,
            ..Facts::default()
        };
        assert_eq!(
            decide(Role::Agent, Action::PatientSummary, on_call),
            Decision::Allow { break_glass: false }
        );
        // Break-glass opens nothing for an agent.
        let glass = Facts {
            break_glass: true,
            ..Facts::default()
        };
        assert_eq!(
            decide(Role::Agent, Action::PatientSummary, glass),
            Decision::Deny(DenyReason::NotOnCall)
        );
        assert_eq!(
            decide(Role::Clinician, Action::PatientSummary, glass),
            Decision::Allow { break_glass: true }
        );
        assert_eq!(
            decide(Role::Clinician, Action::PatientSummary, none),
            Decision::Deny(DenyReason::NeedsBreakGlass)
        );
    }

    #[test]
    fn without_a_patient_only_unscoped_rules_allow() {
        assert_eq!(
            decide_without_patient(Role::Supervisor, Action::RecordingRead),
            Decision::Allow { break_glass: false }
        );
        assert_eq!(
            decide_without_patient(Role::Clinician, Action::RecordingRead),
            Decision::Deny(DenyReason::PatientUnknown)
        );
        assert_eq!(
            decide_without_patient(Role::Agent, Action::RecordingRead),
            Decision::Deny(DenyReason::Role)
        );
        for role in [Role::Agent, Role::Clinician, Role::Admin, Role::Auditor] {
            assert_eq!(
                decide_without_patient(role, Action::RecordingControl),
                Decision::Deny(DenyReason::Role),
                "{role}"
            );
        }
    }

    #[test]
    fn only_the_call_handler_or_a_service_links_a_call() {
        let party = Facts {
            party_to_call: true,
            ..Facts::default()
        };
        for role in [Role::Agent, Role::Clinician, Role::Supervisor] {
            assert_eq!(
                decide(role, Action::ActiveContactSet, Facts::default()),
                Decision::Deny(DenyReason::NotParty),
                "{role}"
            );
            assert_eq!(
                decide(role, Action::ActiveContactSet, party),
                Decision::Allow { break_glass: false },
                "{role}"
            );
        }
        // Being on a call with the patient, or break-glass, is not handling this call.
        let other = Facts {
            on_call_with_patient: true,
            patient_on_any_call: true,
            break_glass: true,
            party_to_call: false,
        };
        assert_eq!(
            decide(Role::Clinician, Action::ActiveContactSet, other),
            Decision::Deny(DenyReason::NotParty)
        );
        assert_eq!(
            decide(Role::Service, Action::ActiveContactSet, Facts::default()),
            Decision::Allow { break_glass: false }
        );
        for role in [Role::Admin, Role::Auditor] {
            assert_eq!(
                decide(role, Action::ActiveContactSet, party),
                Decision::Deny(DenyReason::Role)
            );
        }
    }

    #[test]
    fn every_role_reads_itself_and_each_action_has_someone() {
        for role in Role::ALL {
            assert!(scope(role, Action::SelfRead).is_some());
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().unwrap_err().contains("admin"));
    }
}
