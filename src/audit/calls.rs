//! Call start and end into the audit trail, and the end of a call's active-contact
//! association (so an agent's access to the patient ends with the call). Calls appear by
//! their SIP Call-ID only: the caller's number is PHI and never written here.

use std::sync::Arc;

use serde_json::json;

use super::{Audit, Event, action};
use crate::auth::Auth;
use crate::call::CallHooks;

pub struct CallEvents {
    pub audit: Audit,
    pub auth: Arc<Auth>,
}

impl CallHooks for CallEvents {
    fn call_started(&self, call_id: &str) {
        let audit = self.audit.clone();
        let call_id = call_id.to_string();
        tokio::spawn(async move {
            audit
                .record(
                    Event::new("system", action::CALL_START, "success")
                        .detail(json!({"call_id": call_id})),
                )
                .await;
        });
    }

    fn call_ended(&self, call_id: &str, cause: &str) {
        let audit = self.audit.clone();
        let auth = self.auth.clone();
        let call_id = call_id.to_string();
        let cause = cause.to_string();
        tokio::spawn(async move {
            let contact = auth.clear_active_contact(&call_id, "system").await;
            let mut event = Event::new("system", action::CALL_END, "success")
                .detail(json!({"call_id": call_id, "cause": cause}));
            match contact {
                Ok(Some(c)) => event = event.patient(&c.patient_id),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "could not end the call's active contact"),
            }
            audit.record(event).await;
        });
    }
}
