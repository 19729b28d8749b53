//! Unit tests of the state machine with fake time and a fake store.
