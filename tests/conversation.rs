//! Scripted phone conversations (`tests/conversations/*.txt`) run against the
//! real store, on SQLite and on PostgreSQL, through the same driver the call
//! task and `clinivox chat` use. The demo clinic's patients and appointments
//! are seeded at the script's `now` first.
//!
//! Script format, one directive per line (`#` starts a comment):
//! - `> #transfer_failed` — the call layer reports that the transfer was not answered;
//! - `lang: es`, `caller: +34600111222`, `now: 2026-11-23T09:00:00` (clinic-local) — header;
//! - `outreach: confirm <patient name> | <specialty>` — header: instead of a caller, the
//!   clinic calls the patient about their seeded appointment of that specialty;
//!   `outreach: offer <patient name> | <specialty>` — … offers them the first free slot of
//!   that specialty from tomorrow on, held for the offer and with a waiting-list entry;
//! - `~ new call` — the same caller hangs up (if the call is not over) and calls again a minute later;
//! - `> text` — the caller says `text`; `> #dtmf 14031948`, `> #silence`, `> #hangup`;
//!   each caller line happens 10 seconds after the previous one;
//! - `< text` — the assistant's replies since the last caller line contain `text`
//!   (case-insensitive);
//! - `! text` — … and do not contain it;
//! - `= …` — a check of the store or the call:
//!   `= outcome booked`, `= transfer reception`, `= hangup`, `= holds 0`,
//!   `= live <patient name> <n>` (upcoming live appointments),
//!   `= appointment <patient name> | <specialty> | <YYYY-MM-DD HH:MM> | <status>`,
//!   `= patient <name> | <YYYY-MM-DD>` (exists, with the caller's number),
//!   `= transcript <text>` (some turn of the call contains it),
//!   `= never <text>` (no turn of the call contains it, case-insensitive),
//!   `= result <confirmed|cancelled|wrong_person|accepted|declined|…>` (the outreach result),
//!   `= offered <status>` (the offered slot has an appointment of the offer's patient),
//!   `= callback <name> | <phone> | <promised> | <reason>` (an open callback request of this call),
//!   `= consent <patient name> | <on|off>` (their `contact_consent`; off: withdrawn by the assistant, audited).

#[macro_use]
mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use clinivox::config::Config;
use clinivox::conversation::driver::Session;
use clinivox::conversation::nlu::Vocabulary;
use clinivox::conversation::{Action, Context, Direction, Language, Outreach};
use clinivox::phone::E164;
use clinivox::store::Store;
use clinivox::testing;

macro_rules! scripts {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let config = super::testing::demo_config();
                let store = super::testing::sqlite_store(dir.path(), &config).await.unwrap();
                super::run_script(stringify!($name), store, config).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let config = super::testing::demo_config();
                let store = super::testing::postgres_store(&config, 4).await.expect("PostgreSQL at CLINIVOX_TEST_PG_URL");
                super::run_script(stringify!($name), store, config).await;
            }
        }
    )*};
}

scripts!(
    book_known_es,
    book_new_en,
    book_other_days_es,
    date_conflict_es,
    new_patient_name_pt,
    book_it,
    book_pt,
    confirm_es,
    cancel_it,
    reschedule_two_es,
    unverified_refused_es,
    unverified_refused_en,
    emergency_es,
    emergency_en,
    misunderstood_en,
    misunderstood_es,
    dtmf_only_es,
    hours_and_location_en,
    hours_it,
    hours_pt,
    silence_es,
    outreach_confirm_es,
    outreach_wrong_person_es,
    outreach_cancel_en,
    outreach_offer_es,
    outreach_keypad_it,
    outreach_confirm_pt,
    callback_closed_es,
    callback_no_answer_en,
    verify_lockout_es,
    verify_lockout_by_name_en,
    outreach_opt_out_es,
    outreach_opt_out_keypad_it,
);

// Store-level additions made for the conversation, on both engines.

on_both_engines!(patients_born_on_and_live_holds);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Run {
    store: Store,
    session: Session,
    now: DateTime<Utc>,
    /// Replies since the last caller line.
    heard: Vec<Action>,
    all: Vec<Action>,
    patients: HashMap<String, String>,
    tz: chrono_tz::Tz,
    caller: Option<String>,
    /// The slot an outreach offer holds: (patient id, provider, start).
    offered: Option<(String, String, DateTime<Utc>)>,
}

async fn run_script(name: &str, store: Store, config: Config) {
    let path = root().join(format!("tests/conversations/{name}.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lang = "es".to_string();
    let mut caller = None;
    let mut local_now: NaiveDateTime = "2026-11-23T09:00:00".parse().unwrap();
    let mut outreach_line = None;
    let mut body = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(v) = line.strip_prefix("lang:") {
            lang = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("outreach:") {
            outreach_line = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("caller:") {
            caller = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("now:") {
            local_now = v.trim().parse().unwrap_or_else(|e| panic!("{name}:{}: bad now: {e}", n + 1));
        } else {
            body.push((n + 1, line.to_string()));
        }
    }
    let tz = config.clinic.timezone;
    let now = local_now.and_local_timezone(tz).earliest().unwrap().with_timezone(&Utc);
    let seeded = clinivox::demo::seed(&store, now).await.unwrap();
    let patients = seeded.patients.iter().map(|p| (p.name.clone(), p.id.clone())).collect();
    let hold_for = config.escalation.refill_offer;
    let outreach = match outreach_line {
        Some(l) => Some(outreach(&store, &seeded, &l, now, hold_for).await),
        None => None,
    };
    let offered = match &outreach {
        Some(Outreach::Offer { patient, hold, .. }) => Some((patient.id.clone(), hold.provider_id.clone(), hold.starts_at)),
        _ => None,
    };
    // The clinic dials the patient's number.
    let caller = caller.or_else(|| outreach.as_ref().map(|o| o.patient().phones[0].clone()));
    let ctx = Context {
        language: Arc::new(Language::load(&root().join("prompts"), &lang).unwrap()),
        vocabulary: Arc::new(Vocabulary::from_config(&config)),
        config: Arc::new(config),
        direction: Direction::Inbound,
        caller: caller.as_deref().map(|c| E164::parse(c).unwrap()),
    };
    let (session, first) = match outreach {
        Some(o) => Session::start_outreach(store.clone(), ctx.clone(), now, o).await,
        None => Session::start(store.clone(), ctx.clone(), now).await,
    };
    let mut run = Run { store, session, now, heard: first.clone(), all: first, patients, tz, caller, offered };
    let mut said = Vec::new();
    for (line_no, line) in body {
        let at = format!("{name}.txt:{line_no}: {line}");
        if line == "~ new call" {
            // The same caller calls again a minute after this call ended.
            run.said_is_recorded(&std::mem::take(&mut said), &at).await;
            if !run.session.conversation().is_ended() {
                run.session.hangup(run.now).await;
            }
            run.now += Duration::minutes(1);
            let (session, first) = Session::start(run.store.clone(), ctx.clone(), run.now).await;
            (run.session, run.heard, run.all) = (session, first.clone(), first);
            continue;
        }
        run.step(&line, &at).await;
        if let Some(text) = line.strip_prefix('>').map(str::trim).filter(|t| !t.starts_with('#')) {
            said.push(text.to_string());
        }
    }
    run.said_is_recorded(&said, name).await;
}

impl Run {
    /// Everything the caller said is in the call's transcript.
    async fn said_is_recorded(&self, said: &[String], at: &str) {
        let turns = self.call().await.turns;
        for text in said {
            assert!(turns.iter().any(|t| t.speaker == "caller" && &t.text == text), "{at}: {text:?} not recorded: {turns:#?}");
        }
    }

    async fn step(&mut self, line: &str, at: &str) {
        if let Some(said) = line.strip_prefix('>') {
            let said = said.trim();
            let transfer_failed = said == "#transfer_failed";
            assert!(transfer_failed || !self.session.conversation().is_ended(), "{at}: the call is already over");
            self.now += Duration::seconds(10);
            let out = if transfer_failed {
                self.session.transfer_failed(self.now).await
            } else if let Some(keys) = said.strip_prefix("#dtmf") {
                self.session.dtmf(self.now, keys).await
            } else if said == "#silence" {
                self.session.silence(self.now).await
            } else if said == "#hangup" {
                self.session.hangup(self.now).await
            } else {
                self.session.utterance(self.now, said, 0.9).await
            };
            self.all.extend(out.iter().cloned());
            self.heard = out;
        } else if let Some(want) = line.strip_prefix('<') {
            let heard = self.spoken();
            assert!(heard.to_lowercase().contains(&want.trim().to_lowercase()), "{at}\n  assistant said: {heard}");
        } else if let Some(unwanted) = line.strip_prefix('!') {
            let heard = self.spoken();
            assert!(!heard.to_lowercase().contains(&unwanted.trim().to_lowercase()), "{at}\n  assistant said: {heard}");
        } else if let Some(check) = line.strip_prefix('=') {
            self.check(check.trim(), at).await;
        } else {
            panic!("{at}: unknown directive");
        }
    }

    fn spoken(&self) -> String {
        self.heard
            .iter()
            .filter_map(|a| match a {
                Action::Say { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }

    async fn check(&mut self, check: &str, at: &str) {
        let (what, arg) = check.split_once(' ').unwrap_or((check, ""));
        let arg = arg.trim();
        let fields: Vec<&str> = arg.split('|').map(str::trim).collect();
        match what {
            "outcome" => {
                let call = self.call().await;
                assert_eq!(call.call.outcome.as_deref(), Some(arg), "{at}");
                assert!(call.call.ended_at.is_some(), "{at}: call not finished");
            }
            "transfer" => {
                let group = self.all.iter().rev().find_map(|a| match a {
                    Action::Transfer { group, summary } => Some((group.as_str(), summary.clone())),
                    _ => None,
                });
                let (group, summary) = group.unwrap_or_else(|| panic!("{at}: no transfer"));
                assert_eq!(group, arg, "{at}");
                assert!(!summary.is_empty(), "{at}: empty summary");
                assert_eq!(self.call().await.call.transfer_target.as_deref(), Some(arg), "{at}");
            }
            "hangup" => assert!(self.all.contains(&Action::Hangup), "{at}: no hangup"),
            "holds" => {
                let n: i64 = arg.parse().unwrap();
                assert_eq!(self.store.live_holds(self.now).await.unwrap(), n, "{at}");
            }
            "live" => {
                let (name, n) = arg.rsplit_once(' ').unwrap();
                let id = self.patient(name, at);
                let live = self.store.appointments_for_patient(&id, true, self.now).await.unwrap();
                assert_eq!(live.len(), n.parse::<usize>().unwrap(), "{at}: {live:#?}");
            }
            "appointment" => {
                let [name, specialty, when, status] = fields[..] else { panic!("{at}: needs 4 fields") };
                let id = self.patient(name, at);
                let all = self.store.appointments_for_patient(&id, false, self.now).await.unwrap();
                let found = all.iter().any(|a| {
                    let local = a.starts_at.with_timezone(&self.tz).format("%Y-%m-%d %H:%M").to_string();
                    a.specialty_id == specialty && local == when && a.status.as_str() == status
                });
                assert!(found, "{at}: {all:#?}");
            }
            "patient" => {
                let [name, dob] = fields[..] else { panic!("{at}: needs 2 fields") };
                let dob: NaiveDate = dob.parse().unwrap();
                let born = self.store.patients_born_on(dob).await.unwrap();
                let p = born.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("{at}: {born:#?}"));
                if let Some(c) = &self.caller {
                    assert_eq!(p.phones, vec![c.clone()], "{at}");
                }
                self.patients.insert(p.name.clone(), p.id.clone());
            }
            "transcript" => {
                let call = self.call().await;
                assert!(call.turns.iter().any(|t| t.text.contains(arg)), "{at}: {:#?}", call.turns);
            }
            "never" => {
                let call = self.call().await;
                let low = arg.to_lowercase();
                assert!(!call.turns.is_empty(), "{at}: empty transcript");
                assert!(call.turns.iter().all(|t| !t.text.to_lowercase().contains(&low)), "{at}: {:#?}", call.turns);
            }
            "result" => {
                let result = self.session.conversation().outreach_result().unwrap_or_else(|| panic!("{at}: no outreach result"));
                assert_eq!(clinivox::conversation::chat::outreach_result_str(result), arg, "{at}");
            }
            "offered" => {
                let (patient, provider, starts_at) = self.offered.clone().unwrap_or_else(|| panic!("{at}: no offer"));
                let all = self.store.appointments_for_patient(&patient, false, self.now).await.unwrap();
                let found = all.iter().any(|a| a.provider_id == provider && a.starts_at == starts_at && a.status.as_str() == arg);
                assert!(found, "{at}: {all:#?}");
            }
            "callback" => {
                let [name, phone, promised, reason] = fields[..] else { panic!("{at}: needs 4 fields") };
                let open = self.store.callbacks(Some(clinivox::store::CallbackStatus::Open)).await.unwrap();
                let [cb] = open.as_slice() else { panic!("{at}: one open request expected: {open:#?}") };
                assert_eq!(
                    (cb.name.as_str(), cb.phone.as_str(), cb.promised.as_str(), cb.reason.as_str()),
                    (name, phone, promised, reason),
                    "{at}"
                );
                assert_eq!(cb.call_id.as_deref(), self.session.call_id(), "{at}");
            }
            "consent" => {
                let [name, state] = fields[..] else { panic!("{at}: needs 2 fields") };
                let id = self.patient(name, at);
                let p = self.store.patient(&id).await.unwrap();
                assert_eq!(p.contact_consent, state == "on", "{at}");
                if state == "off" {
                    // Withdrawn by the assistant on the phone, and audited as such.
                    let audit = self.store.audit_log("patient", &id).await.unwrap();
                    let last = audit.last().unwrap_or_else(|| panic!("{at}: no audit entry"));
                    assert_eq!((last.actor.as_str(), last.channel.as_str()), ("assistant", "phone"), "{at}: {audit:#?}");
                }
            }
            _ => panic!("{at}: unknown check"),
        }
    }

    fn patient(&self, name: &str, at: &str) -> String {
        self.patients.get(name).cloned().unwrap_or_else(|| panic!("{at}: no patient named {name:?}"))
    }

    async fn call(&self) -> clinivox::store::CallDetail {
        let id = self.session.call_id().expect("the call was recorded");
        self.store.call(id).await.unwrap()
    }
}

/// The outbound call an `outreach:` header asks for, set up in the store
/// the way the escalation and refill jobs would.
async fn outreach(store: &Store, seeded: &clinivox::demo::Seeded, line: &str, now: DateTime<Utc>, hold_for: Duration) -> Outreach {
    let (kind, rest) = line.split_once(' ').expect("outreach: <kind> <patient> | <specialty>");
    let (name, specialty) = rest.split_once('|').map(|(n, s)| (n.trim(), s.trim())).expect("outreach: … <patient> | <specialty>");
    let patient = seeded.patients.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no demo patient {name:?}")).clone();
    match kind {
        "confirm" => {
            let appointment = seeded
                .appointments
                .iter()
                .find(|a| a.patient_id == patient.id && a.specialty_id == specialty)
                .unwrap_or_else(|| panic!("{name} has no {specialty} appointment"))
                .clone();
            Outreach::Confirm { patient, appointment }
        }
        "offer" => {
            let today = clinivox::store::availability::local_date(store.timezone(), now);
            let q = clinivox::store::SlotQuery {
                specialty: Some(specialty.into()),
                from: Some(today + Duration::days(1)),
                limit: Some(1),
                ..Default::default()
            };
            let slot = store.free_slots(&q, now).await.unwrap().remove(0);
            let hold = store.hold_slot(&slot.provider_id, slot.starts_at, hold_for, now).await.unwrap();
            let new = clinivox::store::NewWaitlistEntry {
                patient_id: patient.id.clone(),
                specialty_id: specialty.into(),
                provider_id: None,
                earliest: today,
                latest: today + Duration::days(30),
                notes: None,
            };
            let actor = clinivox::store::Actor::new("test", clinivox::store::Channel::Api);
            let entry = store.waitlist_add(new, &actor, now).await.unwrap();
            Outreach::Offer { patient, hold, entry }
        }
        other => panic!("unknown outreach kind {other:?}"),
    }
}

async fn patients_born_on_and_live_holds(store: Store, _: clinivox::config::Config) {
    let now: DateTime<Utc> = "2026-11-23T08:00:00Z".parse().unwrap();
    clinivox::demo::seed(&store, now).await.unwrap();
    let born = store.patients_born_on("1948-03-14".parse().unwrap()).await.unwrap();
    assert_eq!(born.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["María López García"]);
    assert!(store.patients_born_on("1900-01-01".parse().unwrap()).await.unwrap().is_empty());

    assert_eq!(store.live_holds(now).await.unwrap(), 0);
    let q = clinivox::store::SlotQuery { specialty: Some("dermatology".into()), limit: Some(2), ..Default::default() };
    let slots = store.free_slots(&q, now).await.unwrap();
    let h1 = store.hold_slot(&slots[0].provider_id, slots[0].starts_at, Duration::seconds(180), now).await.unwrap();
    store.hold_slot(&slots[1].provider_id, slots[1].starts_at, Duration::seconds(60), now).await.unwrap();
    assert_eq!(store.live_holds(now).await.unwrap(), 2);
    // One expires, one is released.
    assert_eq!(store.live_holds(now + Duration::seconds(90)).await.unwrap(), 1);
    store.release_hold(&h1.token).await.unwrap();
    assert_eq!(store.live_holds(now).await.unwrap(), 1);
}
