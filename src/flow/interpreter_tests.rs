//! Every action type and branch of the interpreter, fed events by hand.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::*;
use crate::flow::catalog::Catalog;
use crate::flow::hours::{Hours, HoursConfig};
use crate::flow::queues::QueuePriority;
use crate::flow::validate::Options;
use crate::media::prompt::PromptLibrary;

fn now() -> Now {
    Now::new(Instant::now(), "2026-04-27T01:00:00Z".parse().unwrap()) // Monday 10:00 Tokyo
}

fn a(id: &str, ty: &str, params: Value, next: Option<&str>) -> Value {
    let mut t = json!({});
    if let Some(n) = next {
        t["NextAction"] = json!(n);
    }
    t["Errors"] = json!([{"NextAction": "err", "ErrorType": "NoMatchingError"}]);
    json!({"Identifier": id, "Type": ty, "Parameters": params, "Transitions": t})
}

fn cond(mut action: Value, conds: &[(&str, &str, &str)], errors: &[(&str, &str)]) -> Value {
    action["Transitions"]["Conditions"] = conds
        .iter()
        .map(|(op, v, n)| json!({"NextAction": n, "Condition": {"Operator": op, "Operands": [v]}}))
        .collect();
    let mut e: Vec<Value> = errors
        .iter()
        .map(|(t, n)| json!({"NextAction": n, "ErrorType": t}))
        .collect();
    e.push(json!({"NextAction": "err", "ErrorType": "NoMatchingError"}));
    action["Transitions"]["Errors"] = json!(e);
    action
}

/// Standard tail actions: `ok` and `err` say their name, then disconnect.
fn tail() -> Vec<Value> {
    vec![
        a(
            "ok",
            "MessageParticipant",
            json!({"Text": "ok"}),
            Some("end"),
        ),
        a(
            "err",
            "MessageParticipant",
            json!({"Text": "err"}),
            Some("end"),
        ),
        json!({"Identifier": "end", "Type": "DisconnectParticipant", "Parameters": {}, "Transitions": {}}),
    ]
}

fn flow_json(start: &str, mut actions: Vec<Value>) -> String {
    actions.extend(tail());
    json!({"Version": "2019-10-30", "StartAction": start, "Actions": actions}).to_string()
}

struct Setup {
    flows: Vec<(&'static str, String)>,
    queues: Vec<(&'static str, Option<&'static str>, Option<&'static str>)>,
}

fn env(setup: Setup) -> Arc<Env> {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, text) in &setup.flows {
        let p: PathBuf = dir.path().join(format!("{name}.json"));
        std::fs::write(&p, text).unwrap();
        files.push(p);
    }
    let mut lib = PromptLibrary::empty().unwrap();
    lib.insert(Prompt::from_pcm("en", "welcome", &[100; 800], 8000).unwrap());
    let mut res = Resources {
        prompts: Some(Arc::new(lib)),
        prompt_language: "en".into(),
        ..Default::default()
    };
    for (q, _, _) in &setup.queues {
        res.queues.insert(q.to_string());
    }
    res.hours.insert("clinic".into());
    res.lambdas.insert("verify".into());
    let (catalog, _) = Catalog::load(&files, &mut res, Options { strict: false })
        .unwrap_or_else(|e| panic!("{e}"));
    let mut weekly = BTreeMap::new();
    weekly.insert("mon".to_string(), "09:00-17:00".to_string());
    let mut hours = HashMap::new();
    hours.insert(
        "clinic".to_string(),
        Hours::compile(
            "clinic",
            &HoursConfig {
                time_zone: "Asia/Tokyo".into(),
                weekly,
                holidays: vec![],
            },
        )
        .unwrap(),
    );
    Arc::new(Env {
        catalog,
        resources: res,
        hours,
        queues: setup
            .queues
            .iter()
            .map(|(q, f, h)| (q.to_string(), (f.map(String::from), h.map(String::from))))
            .collect(),
        voices: Voices::new("Joanna", &HashMap::new()),
        log_all: true,
    })
}

fn run(flow: String) -> FlowRun {
    run_with(Setup {
        flows: vec![("main", flow)],
        queues: vec![],
    })
}

fn run_with(setup: Setup) -> FlowRun {
    let env = env(setup);
    let main = env.catalog.get("main").unwrap().clone();
    let contact = ContactData {
        contact_id: "c1".into(),
        customer_address: "+15551230000".into(),
        system_address: "200".into(),
        ..Default::default()
    };
    let mut r = FlowRun::new(env, main, contact);
    r.handle(Event::Started, now());
    r
}

/// Drains effects; plays are answered as finished. Returns what was said (speech texts and
/// prompt names) up to the first effect that needs an answer other than PlayDone.
fn said(r: &mut FlowRun) -> (Vec<String>, Option<Effect>) {
    let mut out = Vec::new();
    loop {
        let Some(e) = r.poll_effect() else {
            return (out, None);
        };
        match e {
            Effect::Play { audio, .. } => {
                for x in audio {
                    out.push(match x {
                        Audio::Prompt(p) => p.key(),
                        Audio::Speech { text, .. } => text.to_string(),
                    });
                }
                r.handle(Event::PlayDone { interrupted: false }, now());
            }
            Effect::Disconnect | Effect::Ended => {
                out.push("<bye>".into());
                return (out, None);
            }
            other => return (out, Some(other)),
        }
    }
}

fn key(r: &mut FlowRun, digits: &str) {
    r.handle(
        Event::Collected(CollectOutcome::Complete(digits.into())),
        now(),
    );
}

#[test]
fn message_prompt_text_ssml_and_interpolation() {
    let mut r = run(flow_json(
        "m1",
        vec![
            a(
                "m1",
                "MessageParticipant",
                json!({"PromptId": "welcome"}),
                Some("set"),
            ),
            a(
                "set",
                "UpdateContactAttributes",
                json!({"Attributes": {"who": "Ann"}}),
                Some("m2"),
            ),
            a(
                "m2",
                "MessageParticipant",
                json!({"Text": "Hi $.Attributes.who from $.CustomerEndpoint.Address"}),
                Some("m3"),
            ),
            a(
                "m3",
                "MessageParticipant",
                json!({"SSML": "<speak>Bye</speak>"}),
                Some("end"),
            ),
        ],
    ));
    let (s, _) = said(&mut r);
    assert_eq!(
        s,
        vec![
            "en/welcome",
            "Hi Ann from +15551230000",
            "<speak>Bye</speak>",
            "<bye>"
        ]
    );
}

#[test]
fn menu_input_conditions_timeout_and_no_match() {
    let menu = || {
        cond(
            a(
                "menu",
                "GetParticipantInput",
                json!({"Text": "Press 1", "InputTimeLimitSeconds": "4"}),
                Some("ok"),
            ),
            &[("Equals", "1", "ok")],
            &[
                ("InputTimeLimitExceeded", "timeout"),
                ("NoMatchingCondition", "nomatch"),
            ],
        )
    };
    let flow = || {
        flow_json(
            "menu",
            vec![
                menu(),
                a(
                    "timeout",
                    "MessageParticipant",
                    json!({"Text": "timeout"}),
                    Some("end"),
                ),
                a(
                    "nomatch",
                    "MessageParticipant",
                    json!({"Text": "nomatch"}),
                    Some("end"),
                ),
            ],
        )
    };
    let mut r = run(flow());
    let (s, e) = said(&mut r);
    assert_eq!(s, vec!["Press 1"]);
    match e {
        Some(Effect::Collect(spec)) => {
            assert_eq!(spec.max_digits, 1);
            assert_eq!(spec.first_timeout, Duration::from_secs(4));
        }
        other => panic!("{other:?}"),
    }
    key(&mut r, "1");
    assert_eq!(said(&mut r).0, vec!["ok", "<bye>"]);

    let mut r = run(flow());
    said(&mut r);
    key(&mut r, "7");
    assert_eq!(said(&mut r).0, vec!["nomatch", "<bye>"]);

    let mut r = run(flow());
    said(&mut r);
    r.handle(
        Event::Collected(CollectOutcome::Timeout(String::new())),
        now(),
    );
    assert_eq!(said(&mut r).0, vec!["timeout", "<bye>"]);
}

#[test]
fn store_input_terminator_cancel_and_phone_validation() {
    let store = |validation: Value| {
        flow_json(
            "in",
            vec![
                cond(
                    a(
                        "in",
                        "GetParticipantInput",
                        json!({
                        "Text": "Number?", "StoreInput": "True", "InputTimeLimitSeconds": "5",
                        "DTMFConfiguration": {"InputTerminationSequence": "#", "DisableCancelKey": "False"},
                        "InputValidation": validation}),
                        Some("say"),
                    ),
                    &[],
                    &[
                        ("InvalidPhoneNumber", "bad"),
                        ("InputTimeLimitExceeded", "timeout"),
                    ],
                ),
                a(
                    "say",
                    "MessageParticipant",
                    json!({"Text": "got $.StoredCustomerInput"}),
                    Some("end"),
                ),
                a(
                    "bad",
                    "MessageParticipant",
                    json!({"Text": "bad"}),
                    Some("end"),
                ),
                a(
                    "timeout",
                    "MessageParticipant",
                    json!({"Text": "timeout"}),
                    Some("end"),
                ),
            ],
        )
    };
    let mut r = run(store(json!({"CustomValidation": {"MaximumLength": "6"}})));
    let (_, e) = said(&mut r);
    match e {
        Some(Effect::Collect(spec)) => {
            assert_eq!(spec.max_digits, 6);
            assert_eq!(spec.terminator, Digit::from_char('#'));
            assert_eq!(spec.cancel, Digit::from_char('*'));
        }
        other => panic!("{other:?}"),
    }
    r.handle(
        Event::Collected(CollectOutcome::Terminated("1234".into())),
        now(),
    );
    assert_eq!(said(&mut r).0, vec!["got 1234", "<bye>"]);

    let phone = json!({"PhoneNumberValidation": {"NumberFormat": "Local", "CountryCode": "JP"}});
    let mut r = run(store(phone.clone()));
    said(&mut r);
    r.handle(
        Event::Collected(CollectOutcome::Terminated("0312345678".into())),
        now(),
    );
    assert_eq!(said(&mut r).0, vec!["got +81312345678", "<bye>"]);
    let mut r = run(store(phone.clone()));
    said(&mut r);
    r.handle(
        Event::Collected(CollectOutcome::Terminated("123".into())),
        now(),
    );
    assert_eq!(said(&mut r).0, vec!["bad", "<bye>"]);
    let mut r = run(store(phone));
    said(&mut r);
    r.handle(
        Event::Collected(CollectOutcome::Timeout(String::new())),
        now(),
    );
    assert_eq!(said(&mut r).0, vec!["timeout", "<bye>"]);
}

#[test]
fn compare_every_operator_first_true_wins_and_no_match() {
    let f = |value: &str| {
        flow_json(
            "set",
            vec![
                a(
                    "set",
                    "UpdateContactAttributes",
                    json!({"Attributes": {"v": value}}),
                    Some("cmp"),
                ),
                cond(
                    a(
                        "cmp",
                        "Compare",
                        json!({"ComparisonValue": "$.Attributes.v"}),
                        None,
                    ),
                    &[
                        ("NumberGreaterThan", "100", "big"),
                        ("NumberGreaterThan", "10", "ok"),
                        ("TextStartsWith", "urg", "urgent"),
                    ],
                    &[("NoMatchingCondition", "none")],
                ),
                a(
                    "big",
                    "MessageParticipant",
                    json!({"Text": "big"}),
                    Some("end"),
                ),
                a(
                    "urgent",
                    "MessageParticipant",
                    json!({"Text": "urgent"}),
                    Some("end"),
                ),
                a(
                    "none",
                    "MessageParticipant",
                    json!({"Text": "none"}),
                    Some("end"),
                ),
            ],
        )
    };
    assert_eq!(said(&mut run(f("500"))).0[0], "big", "first true wins");
    assert_eq!(said(&mut run(f("50"))).0[0], "ok");
    assert_eq!(said(&mut run(f("urgent care"))).0[0], "urgent");
    assert_eq!(said(&mut run(f("5"))).0[0], "none");
}

#[test]
fn flow_attributes_hours_voice_logging_and_contact_data() {
    let mut r = run(flow_json(
        "log",
        vec![
            a(
                "log",
                "UpdateFlowLoggingBehavior",
                json!({"FlowLoggingBehavior": "Enabled"}),
                Some("fa"),
            ),
            a(
                "fa",
                "UpdateFlowAttributes",
                json!({"FlowAttributes": {"x": {"Value": "7"}}}),
                Some("voice"),
            ),
            a(
                "voice",
                "UpdateContactTextToSpeechVoice",
                json!({"TextToSpeechVoice": "Mizuki"}),
                Some("data"),
            ),
            a(
                "data",
                "UpdateContactData",
                json!({"LanguageCode": "ja-JP"}),
                Some("hours"),
            ),
            cond(
                a(
                    "hours",
                    "CheckHoursOfOperation",
                    json!({"Hours": "clinic"}),
                    None,
                ),
                &[("Equals", "True", "open"), ("Equals", "False", "closed")],
                &[],
            ),
            a(
                "open",
                "MessageParticipant",
                json!({"Text": "open $.FlowAttributes.x $.LanguageCode"}),
                Some("end"),
            ),
            a(
                "closed",
                "MessageParticipant",
                json!({"Text": "closed"}),
                Some("end"),
            ),
        ],
    ));
    assert_eq!(said(&mut r).0[0], "open 7 ja-JP");
    assert_eq!(&*r.voice().name, "Mizuki");
}

#[test]
fn lambda_string_map_json_and_errors() {
    let f = |rt: &str| {
        flow_json(
            "call",
            vec![
                a(
                    "call",
                    "InvokeLambdaFunction",
                    json!({
                    "LambdaFunctionARN": "arn:aws:lambda:us-east-1:1:function:verify",
                    "InvocationTimeLimitSeconds": "2",
                    "LambdaInvocationAttributes": {"sel": "$.Attributes.none"},
                    "ResponseValidation": {"ResponseType": rt}}),
                    Some("say"),
                ),
                a(
                    "say",
                    "MessageParticipant",
                    json!({"Text": "name $.External.name $.External.visit.room"}),
                    Some("end"),
                ),
            ],
        )
    };
    let mut r = run(f("STRING_MAP"));
    let (_, e) = said(&mut r);
    match e {
        Some(Effect::Invoke {
            function,
            event,
            timeout,
        }) => {
            assert_eq!(&*function, "verify");
            assert_eq!(timeout, Duration::from_secs(2));
            assert_eq!(event["Name"], "ContactFlowEvent");
            assert_eq!(event["Details"]["Parameters"]["sel"], "");
        }
        other => panic!("{other:?}"),
    }
    r.handle(Event::Invoked(Ok(json!({"name": "Ann", "n": 3}))), now());
    assert_eq!(said(&mut r).0[0], "name Ann ");

    let mut r = run(f("STRING_MAP"));
    said(&mut r);
    r.handle(Event::Invoked(Ok(json!({"visit": {"room": 7}}))), now());
    assert_eq!(said(&mut r).0[0], "err", "STRING_MAP refuses nested values");

    let mut r = run(f("JSON"));
    said(&mut r);
    r.handle(
        Event::Invoked(Ok(json!({"name": "Bo", "visit": {"room": 7}}))),
        now(),
    );
    assert_eq!(said(&mut r).0[0], "name Bo 7");

    for failure in [Err("timeout".to_string()), Ok(json!([1, 2]))] {
        let mut r = run(f("JSON"));
        said(&mut r);
        r.handle(Event::Invoked(failure), now());
        assert_eq!(said(&mut r).0[0], "err");
    }
}

#[test]
fn get_customer_profile_by_caller_number_and_by_mrn_with_every_branch() {
    let by_phone = |errors: &[(&str, &str)]| {
        let mut act = a(
            "who",
            "GetCustomerProfile",
            json!({"ProfileRequestData": {
                "IdentifierName": "_phone",
                "IdentifierValue": "$.CustomerEndpoint.Address"},
                "ProfileResponseData": ["FirstName", "BirthDate"]}),
            Some("say"),
        );
        let mut e: Vec<Value> = errors
            .iter()
            .map(|(t, n)| json!({"NextAction": n, "ErrorType": t}))
            .collect();
        e.push(json!({"NextAction": "err", "ErrorType": "NoMatchingError"}));
        act["Transitions"]["Errors"] = json!(e);
        flow_json(
            "who",
            vec![
                act,
                a(
                    "say",
                    "MessageParticipant",
                    json!({"Text": "id $.External.patient_id $.External.verified"}),
                    Some("end"),
                ),
                a(
                    "none",
                    "MessageParticipant",
                    json!({"Text": "none"}),
                    Some("end"),
                ),
                a(
                    "many",
                    "MessageParticipant",
                    json!({"Text": "many"}),
                    Some("end"),
                ),
            ],
        )
    };
    let branches = [("NoneFoundError", "none"), ("MultipleFoundError", "many")];
    let mut r = run(by_phone(&branches));
    match said(&mut r).1 {
        Some(Effect::Identify { event, .. }) => {
            assert_eq!(event["Details"]["Parameters"]["phone"], "+15551230000");
        }
        other => panic!("{other:?}"),
    }
    let found = json!({"patient_found": "true", "patient_id": "p-7", "preferred_language": "ja",
        "verified": "false", "lookup_result": "found"});
    r.handle(Event::Invoked(Ok(found)), now());
    assert_eq!(said(&mut r).0[0], "id p-7 false");

    for (answer, heard) in [
        (Ok(json!({"lookup_result": "not_found"})), "none"),
        (Ok(json!({"lookup_result": "ambiguous"})), "many"),
        (Err("store down".to_string()), "err"),
        (Ok(json!("odd")), "err"),
    ] {
        let mut r = run(by_phone(&branches));
        said(&mut r);
        r.handle(Event::Invoked(answer), now());
        assert_eq!(said(&mut r).0[0], heard);
    }
    // Without the specific branches, NoMatchingError catches them.
    let mut r = run(by_phone(&[]));
    said(&mut r);
    r.handle(
        Event::Invoked(Ok(json!({"lookup_result": "ambiguous"}))),
        now(),
    );
    assert_eq!(said(&mut r).0[0], "err");

    // MRN and date of birth as keyed in, through SearchCriteria.
    let mrn = flow_json(
        "who",
        vec![a(
            "who",
            "GetCustomerProfile",
            json!({"ProfileRequestData": {"LogicalOperator": "AND", "SearchCriteria": [
                {"IdentifierName": "AccountNumber", "IdentifierValue": "$.Attributes.mrn"},
                {"IdentifierName": "BirthDate", "IdentifierValue": "$.StoredCustomerInput"}]}}),
            Some("ok"),
        )],
    );
    let mut r = run(mrn);
    match said(&mut r).1 {
        Some(Effect::Identify { event, .. }) => {
            let p = &event["Details"]["Parameters"];
            assert!(p.get("mrn").is_some() && p.get("dob").is_some(), "{p}");
            assert!(p.get("phone").is_none());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn get_customer_profile_refuses_what_the_patient_store_cannot_search() {
    let dir = tempfile::tempdir().unwrap();
    let bad = |request: Value| {
        let text = flow_json(
            "who",
            vec![a(
                "who",
                "GetCustomerProfile",
                json!({ "ProfileRequestData": request }),
                Some("ok"),
            )],
        );
        let p = dir.path().join("bad.json");
        std::fs::write(&p, text).unwrap();
        let mut res = Resources::default();
        // Refused: the load fails, or reports an error (a warning would still run the flow).
        match Catalog::load(&[p], &mut res, Options { strict: false }) {
            Ok((_, diags)) => {
                assert!(
                    diags.iter().any(|d| d.is_error()),
                    "accepted with only warnings: {diags:?}"
                );
                diags
                    .iter()
                    .filter(|d| d.is_error())
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            Err(e) => e.to_string(),
        }
    };
    let out = bad(json!({"IdentifierName": "EmailAddress", "IdentifierValue": "x"}));
    assert!(
        out.contains("`EmailAddress`") && out.contains("who"),
        "{out}"
    );
    let out = bad(json!({"IdentifierName": "AccountNumber", "IdentifierValue": "1"}));
    assert!(out.contains("go together"), "{out}");
    let out = bad(json!({"LogicalOperator": "OR", "SearchCriteria": [
        {"IdentifierName": "_phone", "IdentifierValue": "1"}]}));
    assert!(out.contains("AND only"), "{out}");
    let out = bad(json!({}));
    assert!(out.contains("IdentifierName"), "{out}");
}

#[test]
fn loop_counts_then_done() {
    let mut r = run(flow_json(
        "loop",
        vec![
            cond(
                a("loop", "Loop", json!({"LoopCount": "2"}), Some("ok")),
                &[
                    ("Equals", "ContinueLooping", "again"),
                    ("Equals", "DoneLooping", "ok"),
                ],
                &[],
            ),
            a(
                "again",
                "MessageParticipant",
                json!({"Text": "again"}),
                Some("loop"),
            ),
        ],
    ));
    assert_eq!(said(&mut r).0, vec!["again", "again", "ok", "<bye>"]);
}

#[test]
fn queue_transfer_hold_flow_capacity_and_metrics() {
    let main = flow_json(
        "q",
        vec![
            a(
                "q",
                "UpdateContactTargetQueue",
                json!({"QueueId": "arn:aws:connect:r:1:instance/i/queue/nurses"}),
                Some("metric"),
            ),
            cond(
                a(
                    "metric",
                    "CheckMetricData",
                    json!({"MetricType": "NumberOfContactsInQueue"}),
                    None,
                ),
                &[("NumberGreaterThan", "5", "busy")],
                &[("NoMatchingCondition", "xfer")],
            ),
            cond(
                a("xfer", "TransferContactToQueue", json!({}), Some("end")),
                &[],
                &[("QueueAtCapacity", "full")],
            ),
            a(
                "busy",
                "MessageParticipant",
                json!({"Text": "busy"}),
                Some("end"),
            ),
            a(
                "full",
                "MessageParticipant",
                json!({"Text": "full"}),
                Some("end"),
            ),
        ],
    );
    let hold = json!({"Name": "hold", "Type": "CUSTOMER_QUEUE", "Content": json!({
        "Version": "2019-10-30", "StartAction": "loop", "Actions": [
            {"Identifier": "loop", "Type": "MessageParticipantIteratively",
             "Parameters": {"Messages": [{"Text": "please hold $.Queue.Name"}]}, "Transitions": {}}]}).to_string()})
    .to_string();
    let setup = || Setup {
        flows: vec![("main", main.clone()), ("hold", hold.clone())],
        queues: vec![("nurses", Some("hold"), None)],
    };
    let mut r = run_with(setup());
    let (_, e) = said(&mut r);
    assert!(matches!(e, Some(Effect::QueueMetrics { ref queue }) if &**queue == "nurses"));
    r.handle(
        Event::QueueMetrics(Some(QueueMetrics {
            contacts: 2,
            ..Default::default()
        })),
        now(),
    );
    let (_, e) = said(&mut r);
    assert!(matches!(e, Some(Effect::Enqueue { .. })));
    r.handle(Event::Enqueued(Ok(())), now());
    let e = r.poll_effect();
    match e {
        Some(Effect::Play { audio, .. }) => {
            assert!(
                matches!(&audio[0], Audio::Speech { text, .. } if &**text == "please hold nurses")
            )
        }
        other => panic!("{other:?}"),
    }
    r.handle(Event::PlayDone { interrupted: false }, now());
    assert!(
        matches!(r.poll_effect(), Some(Effect::Play { .. })),
        "hold messages loop"
    );

    let mut r = run_with(setup());
    said(&mut r);
    r.handle(
        Event::QueueMetrics(Some(QueueMetrics {
            contacts: 9,
            ..Default::default()
        })),
        now(),
    );
    assert_eq!(said(&mut r).0[0], "busy");

    let mut r = run_with(setup());
    said(&mut r);
    r.handle(Event::QueueMetrics(Some(QueueMetrics::default())), now());
    said(&mut r);
    r.handle(Event::Enqueued(Err(AtCapacity)), now());
    assert_eq!(said(&mut r).0[0], "full");
}

/// A customer queue flow announces the caller's place and the queue's size from
/// GetMetricData (`$.Metrics.*`), and branches on them with Compare.
#[test]
fn get_metric_data_puts_the_queue_figures_and_the_callers_place_under_metrics() {
    let main = flow_json(
        "q",
        vec![
            a(
                "q",
                "UpdateContactTargetQueue",
                json!({"QueueId": "arn:aws:connect:r:1:instance/i/queue/nurses"}),
                Some("get"),
            ),
            a("get", "GetMetricData", json!({}), Some("say")),
            a(
                "say",
                "MessageParticipant",
                json!({"Text": "You are number $.Metrics.Contact.PositionInQueue of $.Metrics.Queue.Size; $.Metrics.Agents.Available.Count free in $.Metrics.Queue.Name; about $.Metrics.Contact.EstimatedWaitTime s."}),
                Some("end"),
            ),
        ],
    );
    let setup = || Setup {
        flows: vec![("main", main.clone())],
        queues: vec![("nurses", None, None)],
    };
    let mut r = run_with(setup());
    let (_, e) = said(&mut r);
    assert!(matches!(e, Some(Effect::QueueMetrics { ref queue }) if &**queue == "nurses"));
    r.handle(
        Event::QueueMetrics(Some(QueueMetrics {
            contacts: 4,
            agents_available: 0,
            position: Some(3),
            estimated_wait_secs: Some(150),
            ..Default::default()
        })),
        now(),
    );
    assert_eq!(
        said(&mut r).0[0],
        "You are number 3 of 4; 0 free in nurses; about 150 s."
    );
    // An unknown queue: the error branch, as Connect.
    let mut r = run_with(setup());
    said(&mut r);
    r.handle(Event::QueueMetrics(None), now());
    let (lines, _) = said(&mut r);
    assert!(lines.iter().all(|l| !l.contains("You are")), "{lines:?}");
}

#[test]
fn transfer_to_flow_modules_event_hooks_recording_streaming() {
    let main = flow_json(
        "rec",
        vec![
            a(
                "rec",
                "UpdateContactRecordingBehavior",
                json!({"RecordingBehavior": {"RecordedParticipants": ["Customer"]}}),
                Some("stream"),
            ),
            a(
                "stream",
                "StartMediaStreaming",
                json!({"MediaStreamTypes": ["AUDIO"]}),
                Some("hooks"),
            ),
            a(
                "hooks",
                "UpdateContactEventHooks",
                json!({"EventHooks": {"CustomerQueue": "second"}}),
                Some("mod"),
            ),
            a(
                "mod",
                "InvokeFlowModule",
                json!({"FlowModuleId": "module"}),
                Some("xfer"),
            ),
            a(
                "xfer",
                "TransferToFlow",
                json!({"ContactFlowId": "arn:aws:connect:r:1:instance/i/contact-flow/second"}),
                Some("err"),
            ),
        ],
    );
    let module = flow_json(
        "m",
        vec![
            a(
                "m",
                "MessageParticipant",
                json!({"Text": "in module"}),
                Some("back"),
            ),
            json!({"Identifier": "back", "Type": "EndFlowModuleExecution", "Parameters": {}, "Transitions": {}}),
        ],
    );
    let second = flow_json(
        "s",
        vec![
            a(
                "s",
                "MessageParticipant",
                json!({"Text": "second flow"}),
                Some("fin"),
            ),
            json!({"Identifier": "fin", "Type": "EndFlowExecution", "Parameters": {}, "Transitions": {}}),
        ],
    );
    let mut r = run_with(Setup {
        flows: vec![("main", main), ("module", module), ("second", second)],
        queues: vec![],
    });
    assert!(matches!(r.poll_effect(), Some(Effect::SetRecording(_))));
    assert!(matches!(
        r.poll_effect(),
        Some(Effect::MediaStreaming { enabled: true })
    ));
    assert_eq!(said(&mut r).0, vec!["in module", "second flow", "<bye>"]);
}

#[test]
fn unsupported_types_take_their_error_branch_in_lenient_mode() {
    let mut r = run(flow_json(
        "lex",
        vec![a(
            "lex",
            "ConnectParticipantWithLexBot",
            json!({"Text": "Say something"}),
            Some("ok"),
        )],
    ));
    assert_eq!(said(&mut r).0, vec!["err", "<bye>"]);
}

#[test]
fn a_flow_that_never_waits_is_stopped() {
    let mut r = run(flow_json(
        "x",
        vec![
            a(
                "x",
                "UpdateContactAttributes",
                json!({"Attributes": {"a": "1"}}),
                Some("y"),
            ),
            a(
                "y",
                "UpdateContactAttributes",
                json!({"Attributes": {"a": "2"}}),
                Some("x"),
            ),
        ],
    ));
    assert_eq!(said(&mut r).0, vec!["<bye>"]);
}

/// UpdateContactRoutingBehavior: the contact's priority and time adjustment go with it into
/// the queue (and to its queue at once, when it already waits); a dynamic value that is not a
/// number takes the error branch; RoutingCriteria and bad literals are refused at load.
#[test]
fn routing_behavior_sets_the_contacts_priority_in_its_queue() {
    let main = flow_json(
        "set",
        vec![
            a(
                "set",
                "UpdateContactRoutingBehavior",
                json!({"QueuePriority": "1", "QueueTimeAdjustmentSeconds": "90"}),
                Some("bad"),
            ),
            cond(
                a(
                    "bad",
                    "UpdateContactRoutingBehavior",
                    json!({"QueuePriority": "$.Attributes.missing"}),
                    Some("end"),
                ),
                &[],
                &[("NoMatchingError", "xfer")],
            ),
            a(
                "xfer",
                "TransferContactToQueue",
                json!({"QueueId": "arn:aws:connect:r:1:instance/i/queue/nurses"}),
                Some("end"),
            ),
        ],
    );
    let mut r = run_with(Setup {
        flows: vec![("main", main)],
        queues: vec![("nurses", None, None)],
    });
    let (_, e) = said(&mut r);
    let urgent = QueuePriority {
        priority: 1,
        time_adjustment: Duration::from_secs(90),
    };
    assert!(
        matches!(e, Some(Effect::Reprioritize(p)) if p == urgent),
        "{e:?}"
    );
    let (_, e) = said(&mut r);
    assert!(
        matches!(e, Some(Effect::Enqueue { ref queue }) if &**queue == "nurses"),
        "the bad value took the error branch: {e:?}"
    );
    assert_eq!(r.contact().priority, urgent, "kept for the queue");

    for (params, why) in [
        (json!({"QueuePriority": "0"}), "QueuePriority `0`"),
        (
            json!({"QueueTimeAdjustmentSeconds": "-5"}),
            "QueueTimeAdjustmentSeconds `-5`",
        ),
        (json!({}), "is missing"),
        (
            json!({"QueuePriority": "2", "RoutingCriteria": {"Steps": []}}),
            "RoutingCriteria",
        ),
    ] {
        let flow = flow_json(
            "set",
            vec![a("set", "UpdateContactRoutingBehavior", params, None)],
        );
        let e = load_error(flow);
        assert!(e.contains(why), "{why}: {e}");
    }
    // UpdateRoutingCriteria: written out in the flow, each fault named at load.
    for (params, why) in [
        (json!({}), "`RoutingCriteria` is missing"),
        (
            json!({"RoutingCriteria": "$.Attributes.criteria"}),
            "not set from an attribute",
        ),
        (json!({"RoutingCriteria": {"Steps": []}}), "1 to 10 steps"),
        (
            json!({"RoutingCriteria": {"Steps": [{"Expression": {"AttributeCondition": {
                "Name": "Language", "Value": "Japanese", "ProficiencyLevel": 7}}}]}}),
            "Steps[0]: AttributeCondition.ProficiencyLevel",
        ),
    ] {
        let flow = flow_json("set", vec![a("set", "UpdateRoutingCriteria", params, None)]);
        let e = load_error(flow);
        assert!(e.contains(why), "{why}: {e}");
    }
}

/// Why a flow (as main.json) is refused at load in strict mode.
fn load_error(flow: String) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("main.json");
    std::fs::write(&p, flow).unwrap();
    let mut res = Resources::default();
    match Catalog::load(&[p], &mut res, Options { strict: true }) {
        Ok(_) => panic!("the flow loaded"),
        Err(e) => e.to_string(),
    }
}

/// CheckOutboundCallStatus ("Check call progress"): asks who answered, waits, and branches
/// on Connect's four outcomes; one without a condition, or a call not placed by Careline
/// (nothing to tell), takes NoMatchingError.
#[test]
fn check_call_progress_waits_then_branches_on_who_answered() {
    let flow = || {
        flow_json(
            "who",
            vec![
                json!({"Identifier": "who", "Type": "CheckOutboundCallStatus", "Parameters": {},
                    "Transitions": {
                        "Conditions": [
                            {"NextAction": "ok", "Condition": {"Operator": "Equals", "Operands": ["CallAnswered"]}},
                            {"NextAction": "vm", "Condition": {"Operator": "Equals", "Operands": ["VoicemailNoBeep"]}},
                            {"NextAction": "vm", "Condition": {"Operator": "Equals", "Operands": ["VoicemailBeep"]}}],
                        "Errors": [{"NextAction": "err", "ErrorType": "NoMatchingError"}]}}),
                a(
                    "vm",
                    "MessageParticipant",
                    json!({"Text": "please call us back"}),
                    Some("end"),
                ),
            ],
        )
    };
    for (progress, heard) in [
        (Some(CallProgress::CallAnswered), "ok"),
        (Some(CallProgress::VoicemailNoBeep), "please call us back"),
        (Some(CallProgress::VoicemailBeep), "please call us back"),
        (Some(CallProgress::NotDetected), "err"),
        (None, "err"),
    ] {
        let mut r = run(flow());
        let (said_first, waiting) = said(&mut r);
        assert!(
            said_first.is_empty(),
            "nothing is said before: {said_first:?}"
        );
        assert!(
            matches!(waiting, Some(Effect::CheckCallProgress)),
            "{waiting:?}"
        );
        r.handle(Event::PlayDone { interrupted: false }, now());
        assert_eq!(r.poll_effect().map(|_| ()), None, "it waits for the answer");
        r.handle(Event::CallProgress(progress), now());
        assert_eq!(said(&mut r).0, vec![heard, "<bye>"], "{progress:?}");
    }
}

/// UpdateContactCallbackNumber checks and keeps the number a callback calls; an invalid one
/// takes InvalidCallbackNumber. CreateCallbackContact asks for the callback with Connect's
/// static parameters, in the contact's queue and urgency, and goes on once it is kept; a
/// refusal takes NoMatchingError.
#[test]
fn callback_number_and_queued_callback() {
    let flow = |number: &str| {
        flow_json(
            "q",
            vec![
                a(
                    "q",
                    "UpdateContactTargetQueue",
                    json!({"QueueId": "nurses"}),
                    Some("number"),
                ),
                cond(
                    a(
                        "number",
                        "UpdateContactCallbackNumber",
                        json!({"CallbackNumber": number}),
                        Some("cb"),
                    ),
                    &[],
                    &[("InvalidCallbackNumber", "bad")],
                ),
                a(
                    "cb",
                    "CreateCallbackContact",
                    json!({"InitialCallDelaySeconds": "5", "MaximumConnectionAttempts": 3,
                           "RetryDelaySeconds": "600"}),
                    Some("ok"),
                ),
                a(
                    "bad",
                    "MessageParticipant",
                    json!({"Text": "bad number $.CustomerCallbackNumber"}),
                    Some("end"),
                ),
            ],
        )
    };
    let setup = |f: String| Setup {
        flows: vec![("main", f)],
        queues: vec![("nurses", None, None)],
    };
    // A number the caller keyed in, written loosely.
    let mut r = run_with(setup(flow("+1 (555) 010-0199")));
    let (heard, effect) = said(&mut r);
    assert!(heard.is_empty(), "{heard:?}");
    let Some(Effect::CreateCallback(req)) = effect else {
        panic!("{effect:?}")
    };
    assert_eq!(&*req.queue, "nurses");
    assert_eq!(req.number, "+15550100199");
    assert_eq!(req.initial_delay, Duration::from_secs(5));
    assert_eq!(req.retry_delay, Duration::from_secs(600));
    assert_eq!(req.max_attempts, 3);
    assert!(req.flow.is_none());
    assert_eq!(
        r.poll_effect().map(|_| ()),
        None,
        "it waits for the callback"
    );
    r.handle(Event::CallbackCreated(Ok(())), now());
    assert_eq!(said(&mut r).0, vec!["ok", "<bye>"]);

    // Refused (no database, queue full): the error branch.
    let mut r = run_with(setup(flow("$.CustomerEndpoint.Address")));
    let Some(Effect::CreateCallback(req)) = said(&mut r).1 else {
        panic!("no callback asked")
    };
    assert_eq!(req.number, "+15551230000", "the caller's own number");
    r.handle(
        Event::CallbackCreated(Err("queue nurses is at capacity".into())),
        now(),
    );
    assert_eq!(said(&mut r).0, vec!["err", "<bye>"]);

    // Not a phone number: nothing kept, the caller's number still the callback number.
    let mut r = run_with(setup(flow("call me maybe")));
    assert_eq!(said(&mut r).0, vec!["bad number +15551230000", "<bye>"]);
}

/// CreateCallbackContact's parameters are Connect's: static, whole, in range; an AgentId
/// (agent queues) is refused with the reason.
#[test]
fn create_callback_parameters_are_checked_at_load() {
    let flow = |params: Value| {
        flow_json(
            "cb",
            vec![a("cb", "CreateCallbackContact", params, Some("ok"))],
        )
    };
    let err = load_error(flow(json!({"InitialCallDelaySeconds": "0",
        "MaximumConnectionAttempts": "2", "RetryDelaySeconds": "60"})));
    assert!(err.contains("InitialCallDelaySeconds `0`"), "{err}");
    let err = load_error(flow(json!({"InitialCallDelaySeconds": "5",
        "MaximumConnectionAttempts": "0", "RetryDelaySeconds": "60"})));
    assert!(err.contains("MaximumConnectionAttempts `0`"), "{err}");
    let err = load_error(flow(json!({"InitialCallDelaySeconds": "5",
        "MaximumConnectionAttempts": "2", "RetryDelaySeconds": "259201"})));
    assert!(err.contains("RetryDelaySeconds `259201`"), "{err}");
    let err = load_error(flow(json!({"InitialCallDelaySeconds": "5",
        "MaximumConnectionAttempts": "2"})));
    assert!(err.contains("`RetryDelaySeconds` is missing"), "{err}");
    let err = load_error(flow(json!({"InitialCallDelaySeconds": "5",
        "MaximumConnectionAttempts": "2", "RetryDelaySeconds": "60", "AgentId": "x"})));
    assert!(err.contains("`AgentId`"), "{err}");
}

/// A flow that runs to its end says so (a callback's greeting joins the agent then), which
/// DisconnectParticipant does not.
#[test]
fn running_to_the_end_is_told_apart_from_disconnecting() {
    let ended = json!({"Version": "2019-10-30", "StartAction": "hi", "Actions": [
        {"Identifier": "hi", "Type": "MessageParticipant", "Parameters": {"Text": "hi"},
         "Transitions": {"NextAction": "end"}},
        {"Identifier": "end", "Type": "EndFlowExecution", "Parameters": {}, "Transitions": {}}]})
    .to_string();
    let mut r = run(ended);
    assert!(matches!(r.poll_effect(), Some(Effect::Play { .. })));
    r.handle(Event::PlayDone { interrupted: false }, now());
    assert!(matches!(r.poll_effect(), Some(Effect::Ended)));
    let mut r = run(flow_json("end", vec![]));
    assert!(matches!(r.poll_effect(), Some(Effect::Disconnect)));
}
