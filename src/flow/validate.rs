//! Checking a flow as a whole and compiling it: every problem is collected (not only the
//! first), each naming file, action Identifier and Type, and the reason.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::condition::{Condition, Operator};
use super::diagnostic::Diagnostic;
use super::load::Source;
use super::model::{MAX_ACTIONS, RawAction, VERSIONS, scalar};
use super::params::{self, Context};
use super::program::{Action, Conditions, Flow, KNOWN_UNSUPPORTED, Kind, type_info};
use super::resources::Resources;

/// Characters Connect forbids in an Identifier.
const FORBIDDEN_ID_CHARS: &[char] = &[
    '%', ':', '(', '\\', '/', ')', '=', '$', ',', ';', '[', ']', '{', '}',
];
const RESERVED_IDS: &[&str] = &[
    "__proto__",
    "constructor",
    "__defineGetter__",
    "__defineSetter__",
    "toString",
    "hasOwnProperty",
    "isPrototypeOf",
    "propertyIsEnumerable",
    "toLocaleString",
    "valueOf",
];
const MAX_ID_CHARS: usize = 50;

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Unsupported action types stop the load (true) or take their error branch (false).
    pub strict: bool,
}

/// Checks `source`; returns the compiled flow when there is no error, and every diagnostic.
pub(crate) fn check(
    source: Source,
    resources: &Resources,
    opts: Options,
) -> (Option<Flow>, Vec<Diagnostic>) {
    let file = source.file.as_str();
    let mut out = Vec::new();
    let doc = &source.document;
    match doc.version.as_deref() {
        None => out.push(Diagnostic::error(
            file,
            format!("`Version` is missing (write \"{}\")", VERSIONS[0]),
        )),
        Some(v) if !VERSIONS.contains(&v) => out.push(Diagnostic::error(
            file,
            format!("Version `{v}` is not one of {}", VERSIONS.join(", ")),
        )),
        _ => {}
    }
    let Some(values) = doc.actions.as_ref() else {
        out.push(Diagnostic::error(file, "`Actions` is missing"));
        return (None, out);
    };
    if values.len() > MAX_ACTIONS {
        out.push(Diagnostic::error(
            file,
            format!(
                "{} actions: a flow may hold at most {MAX_ACTIONS} (split it with InvokeFlowModule or TransferToFlow)",
                values.len()
            ),
        ));
    }

    // 1. Read each action on its own, so one bad action does not hide the others.
    let mut raws: Vec<RawAction> = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        match serde_json::from_value::<RawAction>(v.clone()) {
            Ok(a) => raws.push(a),
            Err(e) => {
                let id = v.get("Identifier").and_then(scalar);
                let ty = v.get("Type").and_then(scalar).unwrap_or_default();
                let d = Diagnostic::error(file, format!("malformed action: {e}"));
                out.push(match id {
                    Some(id) => d.at(&id, &ty),
                    None => Diagnostic::error(file, format!("action #{} is malformed: {e}", i + 1)),
                });
            }
        }
    }

    // 2. Identifiers.
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(raws.len());
    for (i, a) in raws.iter().enumerate() {
        let id = a.identifier.as_str();
        let at = |d: Diagnostic| d.at(id, &a.action_type);
        if id.is_empty() {
            out.push(at(Diagnostic::error(file, "the Identifier is empty")));
        } else if id.chars().count() > MAX_ID_CHARS {
            out.push(at(Diagnostic::error(
                file,
                format!("the Identifier is longer than {MAX_ID_CHARS} characters"),
            )));
        }
        if let Some(c) = id.chars().find(|c| FORBIDDEN_ID_CHARS.contains(c)) {
            out.push(at(Diagnostic::error(
                file,
                format!(
                    "the Identifier contains `{c}`; these characters are not allowed: % : ( \\ / ) = $ , ; [ ] {{ }}"
                ),
            )));
        }
        if RESERVED_IDS.contains(&id) {
            out.push(at(Diagnostic::error(
                file,
                format!("`{id}` is a reserved word and cannot be an Identifier"),
            )));
        }
        if index.insert(id, i).is_some() {
            out.push(at(Diagnostic::error(
                file,
                "the Identifier is used by more than one action",
            )));
        }
    }

    // 3. StartAction.
    let start = match doc.start_action.as_deref() {
        None => {
            out.push(Diagnostic::error(file, "`StartAction` is missing"));
            None
        }
        Some(s) => match index.get(s) {
            Some(i) => Some(*i),
            None => {
                out.push(Diagnostic::error(
                    file,
                    format!("StartAction `{s}` is not the Identifier of any action"),
                ));
                None
            }
        },
    };

    // Literal flow attributes, for checking `$.FlowAttributes.x` references.
    let mut flow_attributes: HashMap<String, Vec<String>> = HashMap::new();
    for a in raws
        .iter()
        .filter(|a| a.action_type == "UpdateFlowAttributes")
    {
        if let Some(Value::Object(map)) = a.parameters.get("FlowAttributes") {
            for (k, v) in map {
                if let Some(s) = scalar(v.get("Value").unwrap_or(v)) {
                    flow_attributes.entry(k.clone()).or_default().push(s);
                }
            }
        }
    }
    let ctx = Context {
        file,
        resources,
        flow_attributes: &flow_attributes,
    };

    // 4. Each action: type, transitions, parameters.
    let mut actions = Vec::with_capacity(raws.len());
    for a in &raws {
        actions.push(action(a, &index, &ctx, opts, &mut out));
    }

    // 5. Reachability (a warning: Connect allows parked blocks).
    if let Some(start) = start {
        let mut seen = HashSet::new();
        let mut stack = vec![start];
        while let Some(i) = stack.pop() {
            if !seen.insert(i) {
                continue;
            }
            let a: &Action = &actions[i];
            stack.extend(a.next);
            stack.extend(a.conditions.iter().map(|(_, n)| *n));
            stack.extend(a.errors.iter().map(|(_, n)| *n));
        }
        for (i, a) in raws.iter().enumerate() {
            if !seen.contains(&i) {
                out.push(
                    Diagnostic::warning(file, "unreachable from StartAction")
                        .at(&a.identifier, &a.action_type),
                );
            }
        }
    }

    let failed = out.iter().any(Diagnostic::is_error);
    let flow = match (failed, start) {
        (false, Some(start)) => Some(Flow {
            name: Arc::from(source.name.as_str()),
            file: source.file.clone(),
            flow_type: source.flow_type.clone(),
            start,
            actions,
        }),
        _ => None,
    };
    (flow, out)
}

fn action(
    a: &RawAction,
    index: &HashMap<&str, usize>,
    ctx: &Context,
    opts: Options,
    out: &mut Vec<Diagnostic>,
) -> Action {
    let file = ctx.file;
    let id = a.identifier.as_str();
    let ty = a.action_type.as_str();
    let err = |msg: String| Diagnostic::error(file, msg).at(id, ty);
    let target = |what: &str, to: Option<&str>, out: &mut Vec<Diagnostic>| -> Option<usize> {
        let to = to?;
        match index.get(to) {
            Some(i) => Some(*i),
            None => {
                out.push(err(format!(
                    "{what} `{to}` is not the Identifier of any action"
                )));
                None
            }
        }
    };
    let info = type_info(ty);
    let t = &a.transitions;
    let next = target("NextAction", t.next_action.as_deref(), out);
    let mut errors = Vec::with_capacity(t.errors.len());
    for e in &t.errors {
        if let Some(info) = info
            && !info.errors.contains(&e.error_type.as_str())
        {
            out.push(err(format!(
                "error type `{}` is not one {ty} takes ({})",
                e.error_type,
                if info.errors.is_empty() {
                    "none".to_string()
                } else {
                    info.errors.join(", ")
                }
            )));
        }
        if e.next_action.is_none() {
            out.push(err(format!(
                "the `{}` error branch has no NextAction",
                e.error_type
            )));
        }
        if let Some(n) = target(
            &format!("the `{}` error branch's NextAction", e.error_type),
            e.next_action.as_deref(),
            out,
        ) {
            errors.push((e.error_type.clone().into_boxed_str(), n));
        }
    }
    let mut conditions = Vec::with_capacity(t.conditions.len());
    if let Some(info) = info
        && info.conditions == Conditions::Forbidden
        && !t.conditions.is_empty()
    {
        out.push(err(format!("conditions are not allowed on {ty}")));
    }
    for c in &t.conditions {
        let op_name = c.condition.operator.as_str();
        let Some(op) = Operator::parse(op_name) else {
            out.push(err(format!(
                "condition operator `{op_name}` is not one of {}",
                Operator::all_names()
            )));
            continue;
        };
        if info.is_some_and(|i| i.conditions == Conditions::EqualsOnly) && op != Operator::Equals {
            out.push(err(format!(
                "{ty} conditions only take Equals, not `{op_name}`"
            )));
        }
        let operand = match c.condition.operands.as_slice() {
            [v] => scalar(v),
            _ => None,
        };
        let Some(operand) = operand else {
            out.push(err(format!(
                "condition `{op_name}` needs exactly one operand (a string or number)"
            )));
            continue;
        };
        if op.is_numeric() && super::condition::number(&operand).is_none() {
            out.push(err(format!(
                "condition `{op_name}` compares numbers, but its operand `{operand}` is not one"
            )));
        }
        check_operand(ty, &operand, &err, out);
        if c.next_action.is_none() {
            out.push(err(format!(
                "the condition `{op_name} {operand}` has no NextAction"
            )));
        }
        if let Some(n) = target(
            &format!("the condition `{op_name} {operand}`'s NextAction"),
            c.next_action.as_deref(),
            out,
        ) {
            conditions.push((Condition::new(op, operand), n));
        }
    }

    let kind = match info {
        Some(info) => {
            // Branching types may leave every outcome to conditions and error branches.
            let branches = info.conditions != Conditions::Forbidden && !t.conditions.is_empty();
            if !info.terminal
                && t.next_action.is_none()
                && !branches
                && ty != "MessageParticipantIteratively"
            {
                out.push(err("NextAction is missing".into()));
            }
            params::kind_of(a, ctx, out)
        }
        None => {
            let known = KNOWN_UNSUPPORTED.contains(&ty);
            let what = if known {
                "is not supported by Careline"
            } else {
                "is not a flow language action type Careline knows"
            };
            if opts.strict {
                out.push(err(format!(
                    "action type {what} (set flows.strict = false to load the flow with this \
                     action taking its error branch)"
                )));
            } else {
                out.push(
                    Diagnostic::warning(
                        file,
                        format!("action type {what}: it will take its error branch"),
                    )
                    .at(id, ty),
                );
            }
            Kind::Unsupported(ty.into())
        }
    };
    Action {
        id: id.into(),
        type_name: ty.into(),
        kind,
        next,
        conditions,
        errors,
    }
}

/// Operands some types define exactly.
fn check_operand(
    ty: &str,
    operand: &str,
    err: &dyn Fn(String) -> Diagnostic,
    out: &mut Vec<Diagnostic>,
) {
    let allowed: &[&str] = match ty {
        "Loop" => &["ContinueLooping", "DoneLooping"],
        "CheckHoursOfOperation" => &["True", "False"],
        "CheckOutboundCallStatus" => &[
            "CallAnswered",
            "VoicemailBeep",
            "VoicemailNoBeep",
            "NotDetected",
        ],
        "GetParticipantInput" | "GetUserInput" => {
            if operand.chars().count() != 1 || !"0123456789*#".contains(operand) {
                out.push(err(format!(
                    "menu condition `{operand}` is not a single key (0-9, *, #)"
                )));
            }
            return;
        }
        _ => return,
    };
    if !allowed.contains(&operand) {
        out.push(err(format!(
            "condition operand `{operand}` is not one of {}",
            allowed.join(", ")
        )));
    }
}
