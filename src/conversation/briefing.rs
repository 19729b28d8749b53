//! What the receptionist hears when they pick up a bridged transfer,
//! before the caller is put through: who is calling and what they want,
//! in one short sentence in the clinic's language ("María López. Quiere
//! cambiar su cita."). The record and the SIP headers carry the longer
//! `summary`; this is for the ear.

use super::machine::Conversation;

impl Conversation {
    /// One spoken line for the staff member taking the call.
    pub fn staff_briefing(&self) -> String {
        let who = match (&self.patient, &self.new_patient) {
            (Some(p), _) => p.name.clone(),
            (None, Some((name, _))) => self.p("brief_new_patient", &[("name", name)]),
            (None, None) => self.p("brief_unknown_caller", &[]),
        };
        let wants = match self.wanted.as_deref() {
            Some(w) if w.starts_with("book") => {
                let what = w.trim_start_matches("book").trim();
                if what.is_empty() {
                    self.p("brief_book_any", &[])
                } else {
                    self.p("brief_book", &[("specialty", what)])
                }
            }
            Some("cancel") => self.p("brief_cancel", &[]),
            Some("confirm") => self.p("brief_confirm", &[]),
            Some("reschedule") => self.p("brief_reschedule", &[]),
            Some("query") => self.p("brief_query", &[]),
            Some("possible emergency") => self.p("brief_emergency", &[]),
            Some("speak to a person") => self.p("brief_human", &[]),
            _ => self.p("brief_unclear", &[]),
        };
        self.p("staff_briefing", &[("who", &who), ("wants", &wants)])
    }

    /// The identified patient's id, for the staff leg's context headers.
    pub fn patient_id(&self) -> Option<&str> {
        self.patient.as_ref().map(|p| p.id.as_str())
    }

    /// The one-line summary recorded with a transfer.
    pub fn summary_text(&self) -> String {
        self.summary()
    }

    /// What the caller came for, in the record's words ("book dermatology").
    pub fn wanted(&self) -> Option<&str> {
        self.wanted.as_deref()
    }
}
