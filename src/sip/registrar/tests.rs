use super::*;

fn req(contacts: &[&str], expires: Option<u32>, call_id: &str, cseq: u32) -> Request {
    let values: Vec<String> = contacts.iter().map(|s| s.to_string()).collect();
    Request::parse(&values, expires, call_id, cseq).unwrap()
}

fn bindings(o: Outcome) -> Vec<(String, u64)> {
    match o {
        Outcome::Bindings(b) => b.into_iter().map(|g| (g.contact, g.expires_in)).collect(),
        other => panic!("not a 200: {other:?}"),
    }
}

#[test]
fn contact_lists_are_split_and_read_as_rfc_3261_writes_them() {
    let r = Request::parse(
        &[
            "\"Nina, RN\" <sip:nina@192.0.2.7:5062;transport=tcp>;expires=60;q=0.7, sip:nina@198.51.100.2;expires=120".into(),
            "<sips:nina@[2001:db8::1]:5061>".into(),
        ],
        Some(300),
        "c",
        1,
    )
    .unwrap();
    assert_eq!(
        r.contacts,
        vec![
            ContactSpec {
                contact: "<sip:nina@192.0.2.7:5062;transport=tcp>".into(),
                expires: Some(60)
            },
            ContactSpec {
                contact: "<sip:nina@198.51.100.2>".into(),
                expires: Some(120)
            },
            ContactSpec {
                contact: "<sips:nina@[2001:db8::1]:5061>".into(),
                expires: None
            },
        ]
    );
    for bad in [
        "<sip:nina@192.0.2.7",
        "<tel:+15551234>",
        "<sip:>",
        "<sip:a@b>;expires=soon",
        "<sip:a@b>,,<sip:c@d>",
        "\"unterminated <sip:a@b>",
    ] {
        assert_eq!(
            Request::parse(&[bad.into()], None, "c", 1),
            Err(RequestError::Contact),
            "{bad}"
        );
    }
    assert_eq!(
        Request::parse(&["*".into()], Some(3600), "c", 1),
        Err(RequestError::Wildcard)
    );
    assert_eq!(
        Request::parse(&["*, <sip:a@b>".into()], Some(0), "c", 1),
        Err(RequestError::Wildcard)
    );
    assert!(
        Request::parse(&["*".into()], Some(0), "c", 1)
            .unwrap()
            .wildcard
    );
}

#[test]
fn a_phone_registers_refreshes_and_unregisters() {
    let mut r = Registrar::new(60, 3600);
    // No Expires anywhere: one hour. Longer than the maximum: cut to it.
    let b = bindings(r.register("nina", req(&["<sip:nina@192.0.2.7>"], None, "c1", 1), 0));
    assert_eq!(b, vec![("<sip:nina@192.0.2.7>".into(), 3600)]);
    let b = bindings(r.register(
        "nina",
        req(&["<sip:nina@192.0.2.7>"], Some(86_400), "c1", 2),
        10,
    ));
    assert_eq!(
        b,
        vec![("<sip:nina@192.0.2.7>".into(), 3600)],
        "refreshed, not added"
    );
    // A second phone of the same user; the host compares case-insensitively.
    let b = bindings(r.register(
        "nina",
        req(&["<sip:nina@Desk.example>;expires=600"], None, "c2", 1),
        20,
    ));
    assert_eq!(b.len(), 2);
    let b = bindings(r.register(
        "nina",
        req(&["<sip:nina@desk.EXAMPLE>"], Some(0), "c2", 2),
        30,
    ));
    assert_eq!(
        b,
        vec![("<sip:nina@192.0.2.7>".into(), 3580)],
        "one phone unregistered"
    );
    // Only nina's bindings were touched; expiry ends a binding on time.
    assert!(r.contacts("omar", 30).is_empty());
    assert_eq!(r.contacts("nina", 3609).len(), 1);
    assert!(r.contacts("nina", 3610).is_empty());
    r.expire(3610);
    assert_eq!(r.registered_users(), 0);
}

#[test]
fn too_brief_out_of_order_and_wildcard_requests() {
    let mut r = Registrar::new(60, 3600);
    assert_eq!(
        r.register("nina", req(&["<sip:nina@192.0.2.7>"], Some(30), "c1", 1), 0),
        Outcome::TooBrief { min_expires: 60 }
    );
    assert!(
        r.contacts("nina", 0).is_empty(),
        "nothing bound by a refused request"
    );
    bindings(r.register(
        "nina",
        req(&["<sip:nina@192.0.2.7>"], Some(600), "c1", 5),
        0,
    ));
    // A delayed retransmission of an older request of the same call changes nothing.
    let o = r.register("nina", req(&["<sip:nina@192.0.2.7>"], Some(0), "c1", 4), 1);
    assert!(
        matches!(o, Outcome::OutOfOrder(ref b) if b.len() == 1),
        "{o:?}"
    );
    assert_eq!(r.contacts("nina", 1).len(), 1);
    // A query (no Contact) lists the bindings.
    assert_eq!(
        bindings(r.register("nina", req(&[], None, "q", 1), 2)).len(),
        1
    );
    // Contact: * with Expires: 0 removes all.
    bindings(r.register("nina", req(&["<sip:nina@b>"], None, "c3", 1), 3));
    assert_eq!(r.contacts("nina", 3).len(), 2);
    assert_eq!(
        bindings(r.register("nina", req(&["*"], Some(0), "c4", 1), 4)),
        vec![]
    );
    assert!(r.contacts("nina", 4).is_empty());
}

#[test]
fn a_user_keeps_at_most_ten_contacts() {
    let mut r = Registrar::new(60, 3600);
    for i in 0..15u64 {
        let contact = format!("<sip:nina@192.0.2.{i}>");
        bindings(r.register("nina", req(&[&contact], Some(600), &format!("c{i}"), 1), i));
    }
    let live = r.contacts("nina", 20);
    assert_eq!(live.len(), 10);
    assert!(
        live.iter().all(|b| b.expires_at >= 605),
        "the oldest went first"
    );
}

proptest::proptest! {
    /// Any Contact text is parsed or refused, never a panic.
    #[test]
    fn any_contact_text_is_parsed_or_refused(s in "\\PC{0,120}", e in proptest::option::of(0u32..5000)) {
        let _ = Request::parse(&[s], e, "c", 1);
    }
}
