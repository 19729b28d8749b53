//! Sans-IO media core: G.711, jitter buffer, RFC 4733 DTMF, SDP offer/answer
//! (with SDES-keyed SRTP) and a per-call RTP session. No sockets, no clocks,
//! no randomness of its own: time and key material are passed in.

pub mod dtmf;
pub mod g711;
pub mod jitter;
pub mod rtp_session;
pub mod sdp;
pub mod srtp;
