//! The conversation: understanding what a caller says ([`nlu`]) and leading
//! them, turn by turn, to an appointment or to a person. Works on text only:
//! no sockets, no audio samples.

pub mod nlu;
