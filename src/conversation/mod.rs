//! The conversation: understanding what a caller says ([`nlu`]) and leading
//! them, turn by turn, to an appointment or to a person. Works on text only:
//! no sockets, no audio samples.
//!
//! [`Conversation`] is a sans-IO state machine (str0m's shape): events go in
//! through `handle_utterance`, `handle_dtmf`, `handle_silence`,
//! `handle_hangup` and `handle_store_reply`, each with the `now` it happened;
//! [`Action`]s come out of `poll_action`: speech, patience hints for the
//! speech layer, transfers, hang-up, and [`StoreRequest`]s. The machine never
//! touches the store: it asks, stops, and continues when the answer is
//! handed back, so the same events, times and store answers always give the
//! same replies. [`driver::Session`] is the small async loop that answers
//! store requests against the real [`crate::store::Store`]; the call task,
//! `clinivox chat` and the tests all drive a conversation through it.
//!
//! Calls the clinic places (an unanswered reminder, a freed slot for the
//! waiting list) run in the same machine, opened by
//! [`Conversation::new_outreach`] with an [`Outreach`]; their result for the
//! job is [`Conversation::outreach_result`], and [`voicemail_message`] is what
//! an answering machine gets.

pub mod action;
mod booking;
mod briefing;
mod callback;
pub mod chat;
mod context;
pub mod driver;
mod identify;
mod info;
mod machine;
mod manage;
pub mod nlu;
mod outreach;
pub mod prompts;
mod want;

#[cfg(test)]
mod tests;

pub use action::{Action, Direction, Outcome, Patience, Speaker, StoreReply, StoreRequest, TransferGroup};
pub use callback::{next_opening, open_at};
pub use context::{Context, Language, LanguageError};
pub use machine::{Conversation, MIN_CONFIDENCE};
pub use outreach::{voicemail_message, Outreach, OutreachResult};
pub use prompts::{Prompts, PromptsError};
