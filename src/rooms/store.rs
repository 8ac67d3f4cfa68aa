//! Rooms and their invitees in the database (SQLite or PostgreSQL): a room outlives the
//! process that opened it (a visit booked for next week; a restart during the day), and so do
//! its invitations. The live state of a visit (who is in it now) is the room core's, in memory:
//! after a restart participants simply join again.
//!
//! What may say who is seen for what is sealed with the data keys: the title, the patient's
//! id, each invitee's label ([`crate::keys::KeyRing::seal`]).

use std::sync::Arc;

use super::room::{HostLeaves, Policy, Role};
use crate::db::Db;
use crate::keys::KeyRing;

#[derive(Debug, thiserror::Error)]
pub enum RoomStoreError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("room {0}: a sealed field does not open with the current keys")]
    Sealed(String),
}

/// A room as booked.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoomRecord {
    pub id: String,
    pub title: String,
    /// The clinician who opened it.
    pub host: String,
    /// The patient the visit is about, when known.
    pub patient: Option<String>,
    pub scheduled_at_ms: i64,
    pub waiting_room: bool,
    pub max_participants: usize,
    pub host_leaves: HostLeaves,
    pub created_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub end_reason: Option<String>,
}

impl RoomRecord {
    /// The room core's rules for this room.
    pub fn policy(&self, rejoin_grace: std::time::Duration) -> Policy {
        Policy {
            waiting_room: self.waiting_room,
            max_participants: self.max_participants,
            rejoin_grace,
            host_leaves: self.host_leaves,
        }
    }
}

/// One invitation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Invitee {
    pub id: String,
    pub role: Role,
    pub label: String,
    pub expires_at_ms: i64,
    pub revoked: bool,
}

type RoomRow = (
    String,
    String,
    String,
    Option<String>,
    i64,
    i64,
    i64,
    String,
    i64,
    Option<i64>,
    Option<String>,
);

const ROOM_COLUMNS: &str = "id, title, host, patient, scheduled_at, waiting_room, \
    max_participants, host_leaves, created_at, ended_at, end_reason";

fn title_context(id: &str) -> String {
    format!("room-title:{id}")
}
fn patient_context(id: &str) -> String {
    format!("room-patient:{id}")
}
fn label_context(room: &str, id: &str) -> String {
    format!("room-invitee:{room}:{id}")
}

fn role_str(role: Role) -> &'static str {
    match role {
        Role::Clinician => "clinician",
        Role::Patient => "patient",
        Role::Guest => "guest",
    }
}

fn role_of(s: &str) -> Role {
    match s {
        "clinician" => Role::Clinician,
        "patient" => Role::Patient,
        _ => Role::Guest,
    }
}

fn leaves_str(h: HostLeaves) -> &'static str {
    match h {
        HostLeaves::HandOver => "hand_over",
        HostLeaves::End => "end",
    }
}

#[derive(Clone)]
pub struct RoomStore {
    db: Db,
    keys: Arc<KeyRing>,
}

impl std::fmt::Debug for RoomStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoomStore")
    }
}

impl RoomStore {
    pub fn new(db: Db, keys: Arc<KeyRing>) -> RoomStore {
        RoomStore { db, keys }
    }

    fn open(&self, context: &str, sealed: &str, room: &str) -> Result<String, RoomStoreError> {
        let plain = self
            .keys
            .open_sealed(context, sealed)
            .map_err(|_| RoomStoreError::Sealed(room.to_string()))?;
        Ok(String::from_utf8_lossy(&plain).into_owned())
    }

    pub async fn create(&self, room: &RoomRecord) -> Result<(), RoomStoreError> {
        sqlx::query(&format!(
            "INSERT INTO rooms ({ROOM_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL)"
        ))
        .bind(&room.id)
        .bind(
            self.keys
                .seal(&title_context(&room.id), room.title.as_bytes()),
        )
        .bind(&room.host)
        .bind(
            room.patient
                .as_ref()
                .map(|p| self.keys.seal(&patient_context(&room.id), p.as_bytes())),
        )
        .bind(room.scheduled_at_ms)
        .bind(i64::from(room.waiting_room))
        .bind(room.max_participants as i64)
        .bind(leaves_str(room.host_leaves))
        .bind(room.created_at_ms)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<Option<RoomRecord>, RoomStoreError> {
        let row: Option<RoomRow> =
            sqlx::query_as(&format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE id = $1"))
                .bind(id)
                .fetch_optional(self.db.pool())
                .await?;
        row.map(|r| self.room(r)).transpose()
    }

    /// Rooms not ended, hosted by `host` (all hosts when None), soonest first.
    pub async fn open_rooms(&self, host: Option<&str>) -> Result<Vec<RoomRecord>, RoomStoreError> {
        let rows: Vec<RoomRow> = sqlx::query_as(&format!(
            "SELECT {ROOM_COLUMNS} FROM rooms WHERE ended_at IS NULL \
             AND ($1 IS NULL OR host = $1) ORDER BY scheduled_at, id LIMIT 500"
        ))
        .bind(host)
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter().map(|r| self.room(r)).collect()
    }

    fn room(&self, r: RoomRow) -> Result<RoomRecord, RoomStoreError> {
        let (id, title, host, patient, scheduled, waiting, max, leaves, created, ended, why) = r;
        let title = self.open(&title_context(&id), &title, &id)?;
        let patient = patient
            .map(|p| self.open(&patient_context(&id), &p, &id))
            .transpose()?;
        Ok(RoomRecord {
            title,
            host,
            patient,
            scheduled_at_ms: scheduled,
            waiting_room: waiting != 0,
            max_participants: usize::try_from(max).unwrap_or(2),
            host_leaves: if leaves == "end" {
                HostLeaves::End
            } else {
                HostLeaves::HandOver
            },
            created_at_ms: created,
            ended_at_ms: ended,
            end_reason: why,
            id,
        })
    }

    /// Marks the room over: its links open nothing more. False if it had ended already.
    pub async fn end(&self, id: &str, reason: &str, now_ms: i64) -> Result<bool, RoomStoreError> {
        let done = sqlx::query(
            "UPDATE rooms SET ended_at = $1, end_reason = $2 WHERE id = $3 AND ended_at IS NULL",
        )
        .bind(now_ms)
        .bind(reason)
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Keeps an invitation; `pin` is its visit PIN (`rooms::link`), kept only as a blind
    /// index that [`RoomStore::by_pin`] finds it by.
    pub async fn invite(
        &self,
        room: &str,
        inv: &Invitee,
        pin: &str,
        now_ms: i64,
    ) -> Result<(), RoomStoreError> {
        sqlx::query(
            "INSERT INTO room_invitees \
             (room_id, id, role, label, expires_at, revoked, created_at, pin_index) \
             VALUES ($1, $2, $3, $4, $5, 0, $6, $7)",
        )
        .bind(room)
        .bind(&inv.id)
        .bind(role_str(inv.role))
        .bind(
            self.keys
                .seal(&label_context(room, &inv.id), inv.label.as_bytes()),
        )
        .bind(inv.expires_at_ms)
        .bind(now_ms)
        .bind(self.keys.blind_index("room-pin", pin))
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// The invitation a keyed visit PIN opens: its room and invitee (a withdrawn one
    /// included, so the caller can be told why); None for a PIN nobody was given. Two
    /// invitations sharing a PIN (one chance in a billion each) go to the newest valid one.
    pub async fn by_pin(&self, pin: &str) -> Result<Option<(String, Invitee)>, RoomStoreError> {
        let row: Option<(String, String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT room_id, id, role, label, expires_at, revoked FROM room_invitees \
             WHERE pin_index = $1 ORDER BY revoked, created_at DESC, id LIMIT 1",
        )
        .bind(self.keys.blind_index("room-pin", pin))
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|(room, id, role, label, expires, revoked)| {
            Ok((
                room.clone(),
                Invitee {
                    label: self.open(&label_context(&room, &id), &label, &room)?,
                    role: role_of(&role),
                    expires_at_ms: expires,
                    revoked: revoked != 0,
                    id,
                },
            ))
        })
        .transpose()
    }

    pub async fn invitees(&self, room: &str) -> Result<Vec<Invitee>, RoomStoreError> {
        let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT id, role, label, expires_at, revoked FROM room_invitees \
             WHERE room_id = $1 ORDER BY created_at, id",
        )
        .bind(room)
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter()
            .map(|(id, role, label, expires, revoked)| {
                Ok(Invitee {
                    label: self.open(&label_context(room, &id), &label, room)?,
                    role: role_of(&role),
                    expires_at_ms: expires,
                    revoked: revoked != 0,
                    id,
                })
            })
            .collect()
    }

    pub async fn invitee(&self, room: &str, id: &str) -> Result<Option<Invitee>, RoomStoreError> {
        Ok(self.invitees(room).await?.into_iter().find(|i| i.id == id))
    }

    /// Withdraws an invitation: its link opens nothing more. False if there is none.
    pub async fn revoke(&self, room: &str, id: &str) -> Result<bool, RoomStoreError> {
        let done =
            sqlx::query("UPDATE room_invitees SET revoked = 1 WHERE room_id = $1 AND id = $2")
                .bind(room)
                .bind(id)
                .execute(self.db.pool())
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Re-wraps every sealed field not under the current master key (`careline keys
    /// rotate`); returns how many.
    pub async fn reseal_all(&self) -> Result<u64, RoomStoreError> {
        let rooms: Vec<(String, String, Option<String>)> =
            sqlx::query_as("SELECT id, title, patient FROM rooms")
                .fetch_all(self.db.pool())
                .await?;
        let mut n = 0;
        for (id, title, patient) in rooms {
            n += self
                .reseal(
                    "rooms",
                    "title",
                    "id = $2",
                    &title_context(&id),
                    &title,
                    &[&id],
                )
                .await?;
            if let Some(p) = patient {
                n += self
                    .reseal(
                        "rooms",
                        "patient",
                        "id = $2",
                        &patient_context(&id),
                        &p,
                        &[&id],
                    )
                    .await?;
            }
        }
        let invitees: Vec<(String, String, String)> =
            sqlx::query_as("SELECT room_id, id, label FROM room_invitees")
                .fetch_all(self.db.pool())
                .await?;
        for (room, id, label) in invitees {
            n += self
                .reseal(
                    "room_invitees",
                    "label",
                    "room_id = $2 AND id = $3",
                    &label_context(&room, &id),
                    &label,
                    &[&room, &id],
                )
                .await?;
        }
        Ok(n)
    }

    async fn reseal(
        &self,
        table: &str,
        column: &str,
        key: &str,
        context: &str,
        sealed: &str,
        ids: &[&str],
    ) -> Result<u64, RoomStoreError> {
        if self.keys.is_current(sealed) {
            return Ok(0);
        }
        let Ok(new) = self.keys.reseal(context, sealed) else {
            tracing::warn!(table, "a room's sealed field does not open under any key");
            return Ok(0);
        };
        let last = ids.len() + 2;
        let sql = format!("UPDATE {table} SET {column} = $1 WHERE {key} AND {column} = ${last}");
        let mut q = sqlx::query(&sql).bind(new);
        for id in ids {
            q = q.bind(*id);
        }
        Ok(q.bind(sealed)
            .execute(self.db.pool())
            .await?
            .rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (RoomStore, Arc<KeyRing>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(None, dir.path()).await.unwrap();
        let keys = Arc::new(KeyRing::open(dir.path(), crate::keys::Supplied::default()).unwrap());
        (RoomStore::new(db, keys.clone()), keys, dir)
    }

    fn booked(id: &str) -> RoomRecord {
        RoomRecord {
            id: id.into(),
            title: "Follow-up: Ann Lee, heart failure".into(),
            host: "dr-a".into(),
            patient: Some("pat-1".into()),
            scheduled_at_ms: 5_000,
            waiting_room: true,
            max_participants: 4,
            host_leaves: HostLeaves::End,
            created_at_ms: 1_000,
            ended_at_ms: None,
            end_reason: None,
        }
    }

    fn invitee(role: Role, label: &str) -> Invitee {
        Invitee {
            id: "i1".into(),
            role,
            label: label.into(),
            expires_at_ms: 9_000,
            revoked: false,
        }
    }

    #[tokio::test]
    async fn a_room_and_its_invitees_are_kept_sealed_and_read_back() {
        let (store, _keys, dir) = store().await;
        store.create(&booked("r1")).await.unwrap();
        let inv = invitee(Role::Patient, "Ann Lee");
        store.invite("r1", &inv, "123456789", 1_000).await.unwrap();
        let got = store.get("r1").await.unwrap().unwrap();
        assert_eq!(got.title, "Follow-up: Ann Lee, heart failure");
        assert_eq!(got.patient.as_deref(), Some("pat-1"));
        assert_eq!(got.host_leaves, HostLeaves::End);
        assert_eq!(got.max_participants, 4);
        assert!(got.waiting_room);
        let invitees = store.invitees("r1").await.unwrap();
        assert_eq!(invitees.len(), 1);
        assert_eq!(invitees[0].label, "Ann Lee");
        assert_eq!(invitees[0].role, Role::Patient);
        // Nothing that names the patient is in the database file in clear.
        drop(store);
        let mut bytes = std::fs::read(dir.path().join("careline.db")).unwrap();
        if let Ok(wal) = std::fs::read(dir.path().join("careline.db-wal")) {
            bytes.extend(wal);
        }
        let text = String::from_utf8_lossy(&bytes);
        for clear in ["Ann Lee", "heart failure", "pat-1", "123456789"] {
            assert!(!text.contains(clear), "{clear} in clear");
        }
    }

    /// A keyed PIN finds its invitation (with its room), another PIN none; a withdrawn
    /// invitation is still found, marked, so the caller is told why.
    #[tokio::test]
    async fn a_visit_pin_finds_its_invitation_and_no_other() {
        let (store, _keys, _dir) = store().await;
        store.create(&booked("r1")).await.unwrap();
        let inv = invitee(Role::Patient, "Ann Lee");
        store.invite("r1", &inv, "123456789", 1_000).await.unwrap();
        let (room, found) = store.by_pin("123456789").await.unwrap().unwrap();
        assert_eq!((room.as_str(), found.id.as_str()), ("r1", "i1"));
        assert_eq!(found.label, "Ann Lee");
        assert!(store.by_pin("123456780").await.unwrap().is_none());
        assert!(store.by_pin("").await.unwrap().is_none());
        store.revoke("r1", "i1").await.unwrap();
        assert!(store.by_pin("123456789").await.unwrap().unwrap().1.revoked);
    }

    #[tokio::test]
    async fn an_ended_room_leaves_the_open_list_once_and_revoking_marks_the_invitee() {
        let (store, _keys, _dir) = store().await;
        store.create(&booked("r1")).await.unwrap();
        store.create(&booked("r2")).await.unwrap();
        assert_eq!(store.open_rooms(Some("dr-a")).await.unwrap().len(), 2);
        assert!(store.open_rooms(Some("dr-b")).await.unwrap().is_empty());
        assert!(store.end("r1", "host", 7_000).await.unwrap());
        assert!(!store.end("r1", "host", 8_000).await.unwrap(), "ended once");
        let open = store.open_rooms(None).await.unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].id, "r2");
        let ended = store.get("r1").await.unwrap().unwrap();
        assert_eq!(ended.ended_at_ms, Some(7_000));
        assert_eq!(ended.end_reason.as_deref(), Some("host"));
        let inv = invitee(Role::Guest, "Interpreter");
        store.invite("r2", &inv, "555000111", 1_000).await.unwrap();
        assert!(store.revoke("r2", "i1").await.unwrap());
        assert!(!store.revoke("r2", "nobody").await.unwrap());
        assert!(store.invitee("r2", "i1").await.unwrap().unwrap().revoked);
        assert!(store.get("nope").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_key_rotation_reseals_rooms_and_labels_once() {
        let (store, keys, dir) = store().await;
        store.create(&booked("r1")).await.unwrap();
        let inv = invitee(Role::Patient, "Ann Lee");
        store.invite("r1", &inv, "123456789", 1_000).await.unwrap();
        drop(keys);
        let mut ring = KeyRing::open(dir.path(), crate::keys::Supplied::default()).unwrap();
        ring.rotate().unwrap();
        let db = Db::open(None, dir.path()).await.unwrap();
        let rotated = RoomStore::new(db, Arc::new(ring));
        assert_eq!(
            rotated.reseal_all().await.unwrap(),
            3,
            "title, patient, label"
        );
        assert_eq!(rotated.reseal_all().await.unwrap(), 0, "nothing left to do");
        assert_eq!(
            rotated.get("r1").await.unwrap().unwrap().title,
            booked("r1").title
        );
        assert_eq!(rotated.invitees("r1").await.unwrap()[0].label, "Ann Lee");
    }
}
