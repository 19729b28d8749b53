//! Who is calling. A caller counts as identified only when a date of birth
//! they give matches a patient: on the caller-ID number when exactly one
//! patient uses it, otherwise together with their name. Caller ID alone is
//! not enough (numbers are shared in families and can be spoofed), and
//! nothing about appointments is said before this succeeds.

use chrono::{Datelike, NaiveDate};

use super::action::{Patience, StoreRequest, TransferGroup};
use super::booking::Want;
use super::machine::{Conversation, Goal, Heard, Input, State};
use super::nlu::Intent;
use super::prompts::{fold, Prompts};
use crate::store::Patient;

/// What a date of birth (and name) said on the phone matched.
#[derive(Debug, Clone)]
pub(super) enum Check {
    Matched(Patient),
    /// No patient, or (`ambiguous`) more than one alike.
    NoMatch {
        name: String,
        dob: NaiveDate,
        ambiguous: bool,
    },
}

/// Letters in a row that make a spelled-out word ("G A R C I A").
const SPELLED_MIN: usize = 3;

/// Similarity (Jaro–Winkler, 0–1) above which two name words are the same
/// word heard loosely ("Lopes" for "López").
const SAME_WORD: f64 = 0.88;

impl Conversation {
    pub(super) fn identify(&mut self, goal: Goal) {
        if self.on_this_number.len() == 1 {
            self.ask_dob(goal, None, "ask_dob_known");
        } else {
            self.ask_name(goal, None);
        }
    }

    fn ask_name(&mut self, goal: Goal, dob: Option<NaiveDate>) {
        self.state = State::AskName { goal, dob };
        self.expect_longer(Patience::Name);
        let q = self.p("ask_name", &[]);
        self.ask(q);
    }

    fn ask_dob(&mut self, goal: Goal, name: Option<String>, key: &str) {
        self.state = State::AskDob { goal, name, digits: String::new() };
        self.expect_longer(Patience::DateOfBirth);
        let q = self.p(key, &[]);
        self.ask(q);
    }

    pub(super) fn name_answer(&mut self, goal: Goal, dob: Option<NaiveDate>, input: Input) -> Heard {
        let Some(name) = spoken_name(&input, &self.ctx.language.prompts) else {
            self.state = State::AskName { goal, dob };
            return Heard::NotUnderstood;
        };
        // A date of birth said in the same breath is taken too.
        let dob = dob.or_else(|| input.slots().and_then(|s| dob_from_slots(s, self.today())));
        match dob {
            Some(dob) => self.check_identity(goal, Some(name), dob),
            None => self.ask_dob(goal, Some(name), "ask_dob"),
        }
        Heard::Understood
    }

    pub(super) fn dob_answer(&mut self, goal: Goal, name: Option<String>, input: Input) -> Heard {
        let today = self.today();
        let dob = input.slots().and_then(|s| dob_from_slots(s, today));
        match dob {
            Some(dob) => {
                self.check_identity(goal, name, dob);
                Heard::Understood
            }
            None => {
                self.state = State::AskDob { goal, name, digits: String::new() };
                // Asked again with help; two failures still reach a person.
                Heard::Reask(self.p("bad_dob", &[]))
            }
        }
    }

    /// Eight keys DDMMYYYY (or fewer, ended with `#`).
    pub(super) fn dob_typed(&mut self, digits: &str) {
        let State::AskDob { goal, name, .. } = std::mem::replace(&mut self.state, State::Ended) else {
            return;
        };
        match dob_from_digits(digits, self.today()) {
            Some(dob) => self.check_identity(goal, name, dob),
            None => {
                self.state = State::AskDob { goal, name, digits: String::new() };
                let q = self.p("bad_dob", &[]);
                self.ask(q);
            }
        }
    }

    fn check_identity(&mut self, goal: Goal, name: Option<String>, dob: NaiveDate) {
        let matches: Vec<Patient> = self
            .on_this_number
            .iter()
            .filter(|p| p.date_of_birth == dob && name.as_deref().is_none_or(|n| same_person(n, &p.name)))
            .cloned()
            .collect();
        if let [only] = matches.as_slice() {
            return self.check_lockout(goal, Check::Matched(only.clone()));
        }
        match name {
            Some(name) => {
                self.state = State::FindingPatient { goal, name, dob };
                self.request(StoreRequest::PatientsBornOn { date: dob });
            }
            // The one patient on this number was born another day: ask
            // who is calling, keeping the date they gave.
            None => self.ask_name(goal, Some(dob)),
        }
    }

    pub(super) fn patients_found(&mut self, goal: Goal, name: String, dob: NaiveDate, found: Vec<Patient>) {
        let mut same: Vec<Patient> = found.into_iter().filter(|p| same_person(&name, &p.name)).collect();
        let check =
            if same.len() == 1 { Check::Matched(same.remove(0)) } else { Check::NoMatch { name, dob, ambiguous: !same.is_empty() } };
        self.check_lockout(goal, check)
    }

    /// Every outcome of a check, right or wrong, first asks the store
    /// whether the patient or this number has failed too often lately (and
    /// counts a failure): a locked caller hears the same whatever they said,
    /// so a right guess cannot be told from a wrong one.
    fn check_lockout(&mut self, goal: Goal, check: Check) {
        let (matched, name, may_be_new) = match &check {
            Check::Matched(p) => (Some(p.id.clone()), None, false),
            Check::NoMatch { name, ambiguous, .. } => (None, Some(name.clone()), matches!(goal, Goal::Book(_)) && !ambiguous),
        };
        let phone = self.ctx.caller.as_ref().map(|c| c.as_str().to_string());
        self.state = State::CheckingIdentity { goal, check };
        self.request(StoreRequest::CheckIdentity { matched, name, phone, may_be_new });
    }

    pub(super) fn identity_checked(&mut self, goal: Goal, check: Check, locked: bool) {
        if locked {
            self.locked_out = true;
            self.record_action("identity not checked: too many failed checks lately".into());
            let sorry = self.p("verify_locked", &[]);
            self.say(sorry);
            let text = self.p("transfer", &[]);
            self.say(text);
            return self.transfer(TransferGroup::Reception);
        }
        match (check, goal) {
            (Check::Matched(p), goal) => self.identified(goal, p),
            (Check::NoMatch { name, dob, ambiguous: false }, Goal::Book(want)) => {
                self.state = State::ConfirmNewPatient { want, name: name.clone(), dob };
                let q = self.p("new_patient", &[("name", &name), ("dob", &self.ctx.language.prompts.birth_date(dob))]);
                self.ask(q);
            }
            // Not found, or two records alike: a person sorts it out.
            (Check::NoMatch { .. }, _) => {
                let refusal = self.p("not_verified", &[]);
                let q = self.p("offer_reception", &[]);
                self.state = State::OfferTransfer { group: TransferGroup::Reception };
                self.ask_after(refusal, q);
            }
        }
    }

    fn identified(&mut self, goal: Goal, patient: Patient) {
        let first = patient.name.split_whitespace().next().unwrap_or_default().to_string();
        self.record_action(format!("identified patient {}", patient.id));
        self.patient = Some(patient);
        let thanks = self.p("verified", &[("name", &first)]);
        self.say(thanks);
        self.proceed(goal);
    }

    pub(super) fn new_patient_answer(&mut self, want: Want, name: String, dob: NaiveDate, input: Input) -> Heard {
        match input.yes_no() {
            Some(true) => {
                self.new_patient = Some((name, dob));
                self.proceed(Goal::Book(want));
            }
            Some(false) => {
                let q = self.p("offer_reception", &[]);
                self.state = State::OfferTransfer { group: TransferGroup::Reception };
                self.ask(q);
            }
            None => {
                self.state = State::ConfirmNewPatient { want, name, dob };
                return Heard::NotUnderstood;
            }
        }
        Heard::Understood
    }
}

/// The name in an answer to "what is your name?": what the NLU found after a
/// cue ("me llamo …"), else the words themselves — but only when they can be
/// a name: not a date, a time, a yes/no or a request ("na próxima
/// quinta-feira de manhã" is not a name). A surname spelled letter by
/// letter ("G A R C I A", "ge a erre ce i a") is joined into one word.
pub(super) fn spoken_name(input: &Input, prompts: &Prompts) -> Option<String> {
    let Input::Said { text, u } = input else {
        return None;
    };
    if let Some(n) = &u.slots.name {
        return Some(n.clone());
    }
    let s = &u.slots;
    let when = s.date.is_some() || s.date_conflict.is_some() || s.date_of_birth.is_some() || s.part_of_day.is_some();
    let clock = s.time.is_some() || s.time_after.is_some() || s.time_before.is_some();
    // A provider's surname may be the caller's too ("María García").
    let request = !matches!(u.intent, Intent::Unknown | Intent::Book) || (u.intent == Intent::Book && s.provider.is_none());
    if when || clock || s.digits.is_some() || request {
        return None;
    }
    let raw: Vec<&str> = text.split(|c: char| !c.is_alphabetic() && c != '-' && c != '\'').filter(|w| !w.is_empty()).collect();
    let mut words: Vec<String> = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let run = raw[i..].iter().map_while(|w| prompts.letter(w)).collect::<String>();
        let n = raw[i..].iter().take_while(|w| prompts.letter(w).is_some()).count();
        if n >= SPELLED_MIN {
            words.push(capitalize(&run));
            i += n;
        } else {
            let w = raw[i];
            words.push(if !words.is_empty() && prompts.is_particle(w) { w.to_lowercase() } else { capitalize(w) });
            i += 1;
        }
    }
    (!words.is_empty() && words.len() <= 6).then(|| words.join(" "))
}

fn capitalize(w: &str) -> String {
    let mut chars = w.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars.flat_map(char::to_lowercase)).collect(),
        None => String::new(),
    }
}

/// A date of birth from what the NLU heard: an explicit birth date, any full
/// date before today, or eight spoken digits DDMMYYYY.
pub(super) fn dob_from_slots(s: &super::nlu::Slots, today: NaiveDate) -> Option<NaiveDate> {
    let parse = |d: &str| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok();
    s.date_of_birth
        .as_deref()
        .and_then(parse)
        .or_else(|| s.date.as_deref().and_then(parse).filter(|d| *d < today))
        .or_else(|| s.digits.as_deref().and_then(|d| dob_from_digits(d, today)))
}

/// DDMMYYYY, a real date, not in the future and not absurdly old.
pub(super) fn dob_from_digits(digits: &str, today: NaiveDate) -> Option<NaiveDate> {
    if digits.len() != 8 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| digits[r].parse::<u32>().ok();
    let date = NaiveDate::from_ymd_opt(n(4..8)? as i32, n(2..4)?, n(0..2)?)?;
    (date <= today && today.year() - date.year() <= 120).then_some(date)
}

/// Whether a spoken name fits a patient's recorded name: every word said
/// (ignoring one-letter ones) sounds like a word of the record, and at least
/// two words match when the record has two or more.
pub(super) fn same_person(spoken: &str, recorded: &str) -> bool {
    let words = |s: &str| -> Vec<String> {
        fold(s).split(|c: char| !c.is_alphanumeric()).filter(|w| w.chars().count() > 1).map(str::to_string).collect()
    };
    let said = words(spoken);
    let record = words(recorded);
    if said.is_empty() || record.is_empty() {
        return false;
    }
    let hits = said.iter().filter(|w| record.iter().any(|r| strsim::jaro_winkler(w, r) >= SAME_WORD)).count();
    hits == said.len() && hits >= record.len().min(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_loosely_but_not_anyone() {
        assert!(same_person("María López", "María López García"));
        assert!(same_person("maria lopes garcia", "María López García"));
        assert!(!same_person("María", "María López García"));
        assert!(!same_person("José Martínez", "María López García"));
        assert!(same_person("Sophie Turner", "Sophie Turner"));
    }

    #[test]
    fn typed_dates_of_birth() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        assert_eq!(dob_from_digits("14031948", today), NaiveDate::from_ymd_opt(1948, 3, 14));
        assert_eq!(dob_from_digits("31021948", today), None);
        assert_eq!(dob_from_digits("01012030", today), None);
        assert_eq!(dob_from_digits("1403194", today), None);
    }
}
