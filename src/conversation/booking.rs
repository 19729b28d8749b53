//! Booking, and the second half of rescheduling: specialty or provider →
//! preferred day → up to three real free slots, held while the caller
//! chooses → read back → book (or move). Holds not chosen are released at
//! once; a slot someone else takes meanwhile is answered with fresh offers.

use chrono::{Datelike, Duration, NaiveDate, NaiveTime};

use super::action::{Outcome, StoreReply, StoreRequest};
use super::machine::{Conversation, Heard, Input, State, Then};
use super::nlu::Intent;
pub(super) use super::want::{Want, When};
use crate::store::{Hold, Slot};

/// Most slots offered at once: more is hard to remember on the phone.
const OFFERS: usize = 3;
/// Offered slots are at least this far apart, so the choice is a real one.
const SPREAD_MINUTES: i64 = 60;
/// Days searched when the caller has no particular day in mind.
const SEARCH_DAYS: i64 = 21;
/// Searches again when other callers held every offered slot first (many
/// callers asking for the first free slot at once); then the waiting list.
const LOST_RACES: u8 = 3;
/// How far ahead a waiting-list entry reaches.
const WAITLIST_DAYS: i64 = 30;

/// A slot offered to the caller and held for them.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Offer {
    pub slot: Slot,
    pub hold: Hold,
}

impl Conversation {
    pub(super) fn next_booking_step(&mut self, want: Want) {
        if want.specialty.is_none() && want.provider.is_none() {
            let mut q = self.p("ask_specialty", &[]);
            if self.keypad {
                let options: Vec<String> = (0..self.ctx.config.specialties.len())
                    .map(|i| {
                        let name = self.ctx.specialty_name(&self.ctx.config.specialties[i].id);
                        self.p("specialty_option", &[("n", &(i + 1).to_string()), ("specialty", &name)])
                    })
                    .collect();
                q = format!("{q} {}.", self.ctx.language.prompts.join(&options));
            }
            self.state = State::AskSpecialty { want };
            self.ask(q);
        } else if let Some((by_day, by_weekday)) = want.conflict {
            // "El 21 es martes: ¿el martes 21 o el lunes 20?"
            let prompts = &self.ctx.language.prompts;
            let weekday = prompts.weekday(by_day.weekday().num_days_from_monday() as usize).to_string();
            let args = [
                ("day", by_day.day().to_string()),
                ("weekday", weekday),
                ("by_day", prompts.date(by_day)),
                ("by_weekday", prompts.date(by_weekday)),
            ];
            let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let q = self.p("date_conflict", &args);
            self.state = State::AskWhen { want };
            self.ask(q);
        } else if want.when == When::Unknown {
            let key = if want.moving.is_some() { "ask_when_reschedule" } else { "ask_when" };
            let q = self.p(key, &[]);
            self.state = State::AskWhen { want };
            self.ask(q);
        } else {
            self.search(want, false);
        }
    }

    pub(super) fn specialty_answer(&mut self, mut want: Want, input: Input) -> Heard {
        match &input {
            Input::Key(_) => {
                let chosen = input.choice().and_then(|n| n.checked_sub(1)).and_then(|i| self.ctx.config.specialties.get(i));
                want.specialty = chosen.map(|s| s.id.clone());
            }
            Input::Said { u, .. } => {
                want.specialty = u.slots.specialty.clone();
                want.provider = u.slots.provider.clone();
                want.update(&u.slots, self.today());
            }
        }
        if want.specialty.is_none() && want.provider.is_none() {
            self.state = State::AskSpecialty { want };
            return Heard::NotUnderstood;
        }
        self.wanted = Some(format!("book {}", want.specialty.clone().or_else(|| want.provider.clone()).unwrap_or_default()));
        self.next_booking_step(want);
        Heard::Understood
    }

    pub(super) fn when_answer(&mut self, mut want: Want, input: Input) -> Heard {
        let had_conflict = want.conflict.is_some();
        match &input {
            Input::Key(_) if want.settle_conflict(input.choice(), None) => {}
            Input::Key('1') if want.conflict.is_none() => want.when = When::Earliest,
            Input::Key(_) => {}
            Input::Said { u, .. } if want.conflict.is_some() => {
                let mut said = u.slots.clone();
                said.date_conflict = None;
                if !want.settle_conflict(input.choice(), Some(&said)) {
                    want.update(&said, self.today());
                }
            }
            Input::Said { text, u } => {
                want.update(&u.slots, self.today());
                // "Yes", "as soon as possible", or "the first" / "one", as the
                // prompt offers key 1 for the first free appointment.
                let first = u.slots.choice == Some(1);
                if want.when == When::Unknown && (u.intent == Intent::Yes || first || self.ctx.language.prompts.means_earliest(text)) {
                    want.when = When::Earliest;
                }
            }
        }
        if want.conflict.is_some() && !had_conflict {
            // "El lunes 20" when the 20th is a Sunday: ask which.
            self.next_booking_step(want);
            return Heard::Understood;
        }
        if want.when == When::Unknown {
            self.state = State::AskWhen { want };
            return Heard::NotUnderstood;
        }
        self.search(want, false);
        Heard::Understood
    }

    pub(super) fn search(&mut self, want: Want, widened: bool) {
        self.search_after_races(want, widened, 0);
    }

    fn search_after_races(&mut self, want: Want, widened: bool, lost: u8) {
        let today = self.today();
        let (from, to) = match want.when {
            When::On(d) if d >= today => (d, want.until.filter(|u| *u > d).unwrap_or(d)),
            When::After(d) => (d.succ_opt().unwrap_or(d).max(today), d.max(today) + Duration::days(SEARCH_DAYS)),
            _ => (today, today + Duration::days(SEARCH_DAYS)),
        };
        // A provider implies their specialty; asking for both could only narrow it to nothing.
        let specialty = if want.provider.is_some() { None } else { want.specialty.clone() };
        self.request(StoreRequest::FreeSlots { specialty, provider: want.provider.clone(), from, to, part_of_day: want.part });
        self.state = State::Searching { want, widened, lost };
    }

    pub(super) fn slots_found(&mut self, mut want: Want, widened: bool, lost: u8, slots: Vec<Slot>) {
        let tz = self.ctx.config.clinic.timezone;
        let slots: Vec<Slot> = slots.into_iter().filter(|s| want.fits(s.starts_at.with_timezone(&tz).time())).collect();
        let picked = spread(slots, want.time, tz);
        if picked.is_empty() {
            if let When::On(d) = want.when {
                // Nothing that day: the nearest days after it instead.
                want.when = When::After(want.until.take().unwrap_or(d));
                return self.search(want, true);
            }
            return self.offer_waitlist(want);
        }
        self.request(StoreRequest::HoldSlots { slots: picked });
        self.state = State::Holding { want, widened, lost };
    }

    pub(super) fn slots_held(&mut self, want: Want, widened: bool, lost: u8, held: Vec<(Slot, Hold)>) {
        if held.is_empty() {
            // Everything was taken between the search and the holds: other
            // callers' holds are left out of a new search, so look again.
            if lost < LOST_RACES {
                return self.search_after_races(want, widened, lost + 1);
            }
            return self.offer_waitlist(want);
        }
        let offers: Vec<Offer> = held.into_iter().map(|(slot, hold)| Offer { slot, hold }).collect();
        self.holds.extend(offers.iter().map(|o| o.hold.token.clone()));
        let items: Vec<String> = offers
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let (date, time) = self.spoken(o.slot.starts_at);
                let provider = self.ctx.provider_name(&o.slot.provider_id);
                self.p("offer_item", &[("n", &(i + 1).to_string()), ("date", &date), ("time", &time), ("provider", &provider)])
            })
            .collect();
        let mut intro = self.p("offer_intro", &[]);
        if widened {
            intro = format!("{} {intro}", self.p("none_that_day", &[]));
        }
        let list = format!("{intro} {}.", items.join("; "));
        let q = self.p("offer_outro", &[]);
        self.state = State::Offering { want, offers };
        self.ask_after(list, q);
    }

    pub(super) fn offer_answer(&mut self, mut want: Want, offers: Vec<Offer>, input: Input) -> Heard {
        let tz = self.ctx.config.clinic.timezone;
        let local = |o: &Offer| o.slot.starts_at.with_timezone(&tz).naive_local();
        if let Some(n) = input.choice().filter(|n| (1..=offers.len()).contains(n)) {
            self.pick(want, offers, n - 1);
            return Heard::Understood;
        }
        let other_days = match &input {
            Input::Key('4') => true,
            Input::Key(_) => false,
            Input::Said { u, .. } => {
                let s = &u.slots;
                // "a las diez", "el jueves a las diez": one of the offers by its time.
                let by_time = s.time.as_deref().and_then(|t| NaiveTime::parse_from_str(t, "%H:%M").ok()).and_then(|t| {
                    let day = s.date.as_deref().and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
                    offers.iter().position(|o| local(o).time() == t && day.is_none_or(|d| local(o).date() == d))
                });
                if let Some(i) = by_time {
                    self.pick(want, offers, i);
                    return Heard::Understood;
                }
                if u.intent == Intent::Yes && offers.len() == 1 {
                    self.pick(want, offers, 0);
                    return Heard::Understood;
                }
                let asked_other = matches!(u.intent, Intent::Reschedule | Intent::No) || s.date.is_some() || s.part_of_day.is_some();
                if asked_other {
                    let last = offers.iter().map(|o| local(o).date()).max().unwrap_or(self.today());
                    want.when = When::After(last);
                    want.time = None;
                    want.update(s, self.today());
                    // "¿Y el día siguiente?": after the day offered, not today.
                    if s.after_discussed {
                        if let Some(next) = last.succ_opt() {
                            (want.when, want.until) = (When::On(next), None);
                        }
                    }
                }
                asked_other
            }
        };
        if !other_days {
            self.state = State::Offering { want, offers };
            return Heard::NotUnderstood;
        }
        if let (Input::Key(_), Some(last)) = (&input, offers.iter().map(|o| local(o).date()).max()) {
            want.when = When::After(last);
        }
        self.release_holds();
        self.search(want, false);
        Heard::Understood
    }

    fn pick(&mut self, want: Want, mut offers: Vec<Offer>, i: usize) {
        let offer = offers.swap_remove(i);
        // Give the others back now: another caller may want them.
        let others: Vec<String> = offers.into_iter().map(|o| o.hold.token).collect();
        self.holds.retain(|t| !others.contains(t));
        if !others.is_empty() {
            self.request(StoreRequest::ReleaseHolds { tokens: others });
        }
        let (date, time) = self.spoken(offer.slot.starts_at);
        let specialty = self.ctx.specialty_name(&offer.slot.specialty_id);
        let provider = self.ctx.provider_name(&offer.slot.provider_id);
        let q = match &want.moving {
            Some(old) => {
                let (old_date, _) = self.spoken(old.starts_at);
                self.p(
                    "readback_reschedule",
                    &[("specialty", &specialty), ("old_date", &old_date), ("date", &date), ("time", &time), ("provider", &provider)],
                )
            }
            None => self.p("readback", &[("specialty", &specialty), ("provider", &provider), ("date", &date), ("time", &time)]),
        };
        self.state = State::ReadBack { want, offer };
        self.ask(q);
    }

    pub(super) fn readback_answer(&mut self, mut want: Want, offer: Offer, input: Input) -> Heard {
        match input.yes_no() {
            Some(true) => self.commit(want, offer),
            Some(false) => {
                self.release_holds();
                let no = self.p("not_booked", &[]);
                self.say(no);
                want.when = When::Unknown;
                want.time = None;
                self.next_booking_step(want);
            }
            None => {
                self.state = State::ReadBack { want, offer };
                return Heard::NotUnderstood;
            }
        }
        Heard::Understood
    }

    fn commit(&mut self, want: Want, offer: Offer) {
        let hold_token = Some(offer.hold.token.clone());
        let (provider_id, starts_at) = (offer.slot.provider_id.clone(), offer.slot.starts_at);
        if let Some(old) = &want.moving {
            self.request(StoreRequest::Reschedule { appointment_id: old.id.clone(), provider_id, starts_at, hold_token });
        } else if let Some(p) = &self.patient {
            self.request(StoreRequest::Book { patient_id: p.id.clone(), provider_id, starts_at, hold_token });
        } else {
            return self.create_patient(Then::Book(want, offer));
        }
        self.state = State::Booking { want, offer };
    }

    fn create_patient(&mut self, then: Then) {
        let Some((name, date_of_birth)) = self.new_patient.clone() else {
            // Unreachable by construction: booking starts only once identified.
            return self.transfer(super::action::TransferGroup::Reception);
        };
        let phone = self.ctx.caller.as_ref().map(|c| c.as_str().to_string());
        self.request(StoreRequest::CreatePatient { name, date_of_birth, phone, language: self.ctx.lang().to_string() });
        self.state = State::CreatingPatient { then };
    }

    pub(super) fn patient_created(&mut self, then: Then, patient: crate::store::Patient) {
        self.record_action(format!("registered new patient {}", patient.id));
        self.patient = Some(patient);
        self.new_patient = None;
        match then {
            Then::Book(want, offer) => self.commit(want, offer),
            Then::Waitlist(want) => self.add_to_waitlist(want),
        }
    }

    pub(super) fn booking_done(&mut self, want: Want, offer: Offer, reply: StoreReply) {
        self.holds.retain(|t| *t != offer.hold.token);
        match reply {
            StoreReply::Appointment(a) => {
                let (date, time) = self.spoken(a.starts_at);
                let specialty = self.ctx.specialty_name(&a.specialty_id);
                let provider = self.ctx.provider_name(&a.provider_id);
                let args = [("specialty", specialty.as_str()), ("provider", provider.as_str()), ("date", &date), ("time", &time)];
                let (outcome, key, verb) = match want.moving {
                    Some(_) => (Outcome::Rescheduled, "rescheduled", "rescheduled"),
                    None => (Outcome::Booked, "booked", "booked"),
                };
                self.record_action(format!(
                    "{verb} appointment {} ({} with {}, {})",
                    a.id, a.specialty_id, a.provider_id, a.starts_at_local
                ));
                self.set_outcome(outcome);
                let done = self.p(key, &args);
                self.say(done);
                self.ask_anything_else();
            }
            _ => {
                // Taken (or held) by someone else since we offered it.
                let sorry = self.p("slot_taken", &[]);
                self.say(sorry);
                self.search(want, false);
            }
        }
    }

    fn offer_waitlist(&mut self, want: Want) {
        let specialty = self.want_specialty(&want).map(|s| self.ctx.specialty_name(&s)).unwrap_or_default();
        let q = self.p("nothing_free", &[("specialty", &specialty)]);
        self.state = State::OfferWaitlist { want };
        self.ask(q);
    }

    pub(super) fn waitlist_answer(&mut self, want: Want, input: Input) -> Heard {
        match input.yes_no() {
            Some(true) if self.patient.is_some() => self.add_to_waitlist(want),
            Some(true) => self.create_patient(Then::Waitlist(want)),
            Some(false) => self.ask_anything_else(),
            None => {
                self.state = State::OfferWaitlist { want };
                return Heard::NotUnderstood;
            }
        }
        Heard::Understood
    }

    fn add_to_waitlist(&mut self, want: Want) {
        let (Some(patient), Some(specialty_id)) = (self.patient.clone(), self.want_specialty(&want)) else {
            return self.ask_anything_else();
        };
        let earliest = match want.when {
            When::On(d) | When::After(d) => d.max(self.today()),
            _ => self.today(),
        };
        self.request(StoreRequest::WaitlistAdd {
            patient_id: patient.id,
            specialty_id,
            provider_id: want.provider.clone(),
            earliest,
            latest: earliest + Duration::days(WAITLIST_DAYS),
        });
        self.state = State::AddingToWaitlist { want };
    }

    pub(super) fn waitlist_done(&mut self, want: Want, reply: StoreReply) {
        let specialty = self.want_specialty(&want).map(|s| self.ctx.specialty_name(&s)).unwrap_or_default();
        if reply == StoreReply::Done {
            self.record_action(format!("added to the waiting list for {specialty}"));
            self.set_outcome(Outcome::Info);
            let text = self.p("waitlisted", &[("specialty", &specialty)]);
            self.say(text);
        }
        self.ask_anything_else();
    }

    fn want_specialty(&self, want: &Want) -> Option<String> {
        want.specialty.clone().or_else(|| {
            let provider = want.provider.as_deref()?;
            self.ctx.config.providers.iter().find(|p| p.id == provider).map(|p| p.specialty.clone())
        })
    }
}

/// Up to [`OFFERS`] slots at least [`SPREAD_MINUTES`] apart, closest to the
/// wished time first on the earliest day when a time was said.
fn spread(mut slots: Vec<Slot>, time: Option<NaiveTime>, tz: chrono_tz::Tz) -> Vec<Slot> {
    if let Some(t) = time {
        slots.sort_by_key(|s| {
            let local = s.starts_at.with_timezone(&tz).naive_local();
            (local.date(), (local.time() - t).num_minutes().abs())
        });
    }
    let mut picked: Vec<Slot> = Vec::new();
    for s in slots {
        if picked.iter().all(|p| (s.starts_at - p.starts_at).num_minutes().abs() >= SPREAD_MINUTES) {
            picked.push(s);
            if picked.len() == OFFERS {
                break;
            }
        }
    }
    picked.sort_by_key(|s| s.starts_at);
    picked
}
