//! INVITE dialogs of the endpoint: inbound calls (UAS), re-INVITE, CANCEL,
//! BYE, INFO DTMF; what both directions share (hang-up, CANCEL, timers).
//! Placing calls (UAC) and REFER are in `endpoint_dial.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::{CallId, CallSource, Ctx, EndReason, Endpoint, EndpointEvent};
use crate::media::sdp::{Direction, Negotiated, SdpConfig, SdpSession, SessionDescription};
use crate::media::srtp::SrtpPolicy;
use crate::sip::config::Transport;
use crate::sip::dialog::{copy_record_route, new_branch, new_tag, response_for, Dialog};
use crate::sip::headers::{split_commas, CSeq, NameAddr};
use crate::sip::message::{Method, Request};
use crate::sip::transaction::{Peer, Transmit, TxKey};
use crate::sip::validate;

#[path = "endpoint_dial.rs"]
mod dial;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CallError {
    #[error("no such call")]
    NoSuchCall,
    #[error("not possible in the call's current state")]
    WrongState,
    #[error("extension {0} has no registered contact")]
    NotRegistered(String),
    #[error("no trunk can place this call")]
    NoTrunk,
    #[error("bad target: {0}")]
    BadTarget(String),
    #[error("no common codec with the offer")]
    NotAcceptable,
    #[error("the trunk's proxy {0} has no address (DNS)")]
    Unresolved(String),
    #[error("dialling {0} is not allowed (sip.dial_allow)")]
    NotAllowed(String),
}

/// Where an outbound call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialTarget {
    /// A registered staff extension (first live contact).
    Extension(String),
    /// A SIP URI with an IP host, e.g. `sip:bob@127.0.0.1:5070;transport=tcp`.
    Uri(String),
    /// A phone number through a trunk (`None`: the first with a proxy).
    Number { number: String, trunk: Option<String> },
}

/// Our 2xx to an INVITE, resent until the ACK comes (§13.3.1.4).
#[derive(Debug)]
pub(super) struct Retrans {
    bytes: Vec<u8>,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

#[derive(Debug)]
pub(super) enum Phase {
    /// Inbound, not answered yet.
    Offered {
        invite: Request,
        key: TxKey,
        offer: Option<SessionDescription>,
    },
    /// Outbound, no final response yet.
    Dialing {
        key: TxKey,
        invite: Request,
        auth_tried: bool,
        no_answer_at: Instant,
        provisional: bool,
        /// Set once we decided to give up: why, and whether CANCEL went out.
        cancel: Option<(EndReason, bool)>,
        creds: Option<(String, String)>,
    },
    Established,
}

#[derive(Debug)]
pub(super) struct Call {
    pub dialog: Dialog,
    pub phase: Phase,
    pub sdp: Option<SdpSession>,
    pub retrans: Option<Retrans>,
    /// Our ACK for the 2xx, resent if the 2xx is.
    pub ack: Option<Vec<u8>>,
    /// We sent an offer in a 2xx (late offer): the answer comes in the ACK.
    pub awaiting_ack_answer: bool,
    /// The trunk or extension at the other end, when it is one of ours:
    /// its `nat` flag and, for a trunk, its addresses apply to the call.
    pub source: Option<CallSource>,
}

impl Call {
    pub fn deadline(&self) -> Option<Instant> {
        let r = self.retrans.as_ref().map(|r| r.next.min(r.give_up));
        let d = match &self.phase {
            Phase::Dialing { no_answer_at, cancel: None, .. } => Some(*no_answer_at),
            _ => None,
        };
        [r, d].into_iter().flatten().min()
    }
}

/// A call to change, marked as touched so its timer is queued again (see
/// `Endpoint::call_timers`). Two fields, so the rest of the endpoint stays
/// usable while the call is borrowed.
pub(super) fn touch<'a>(touched: &mut Vec<CallId>, calls: &'a mut HashMap<CallId, Call>, id: CallId) -> Option<&'a mut Call> {
    touched.push(id);
    calls.get_mut(&id)
}

impl Endpoint {
    /// Queues the deadline of every call touched since the last time; when
    /// stale entries pile up (calls that ended, timers that moved), the
    /// queue is rebuilt from the live calls.
    pub(super) fn queue_call_timers(&mut self) {
        for id in std::mem::take(&mut self.touched) {
            if let Some(at) = self.calls.get(&id).and_then(Call::deadline) {
                self.call_timers.push(std::cmp::Reverse((at, id)));
            }
        }
        if self.call_timers.len() > 1024 + 4 * self.calls.len() {
            self.call_timers = self.calls.iter().filter_map(|(id, c)| c.deadline().map(|at| std::cmp::Reverse((at, *id)))).collect();
        }
    }

    /// Calls whose timer is due at `now`, each once. Entries that came due
    /// for a call whose deadline moved later are queued again at it.
    pub(super) fn due_calls(&mut self, now: Instant) -> Vec<CallId> {
        let mut due = Vec::new();
        while let Some(std::cmp::Reverse((at, id))) = self.call_timers.peek().copied() {
            if at > now {
                break;
            }
            self.call_timers.pop();
            match self.calls.get(&id).and_then(Call::deadline) {
                Some(d) if d <= now => due.push(id),
                Some(d) => self.call_timers.push(std::cmp::Reverse((d, id))),
                None => {}
            }
        }
        due.sort_unstable();
        due.dedup();
        due
    }

    fn end_call(&mut self, id: CallId, reason: EndReason) {
        if let Some(c) = self.calls.remove(&id) {
            self.dialogs.remove(&(c.dialog.call_id.clone(), c.dialog.local_tag.clone()));
            if let Some(remote) = &c.dialog.remote_tag {
                if self.inbound.get(&(c.dialog.call_id.clone(), remote.clone())) == Some(&id) {
                    self.inbound.remove(&(c.dialog.call_id.clone(), remote.clone()));
                }
            }
            self.events.push_back(EndpointEvent::Ended { call: id, reason });
        }
    }

    fn find_dialog(&self, call_id: &str, local_tag: Option<&str>) -> Option<CallId> {
        self.dialogs.get(&(call_id.to_string(), local_tag?.to_string())).copied()
    }

    /// The SRTP policy for a call with `source` signalled over `transport`.
    /// Keys only ever travel inside TLS (RFC 4568 §8.3): over UDP or TCP
    /// SRTP is off, and a source that requires it gets no call (`None`).
    pub(super) fn srtp_policy(&self, source: Option<&CallSource>, transport: Transport) -> Option<SrtpPolicy> {
        let want = match source {
            Some(CallSource::Trunk(name)) => self.cfg.trunk(name).map(|t| t.srtp),
            Some(CallSource::Extension(ext)) => self.cfg.extension(ext).map(|x| x.srtp),
            None => None,
        }
        .unwrap_or_default();
        match (transport, want) {
            (Transport::Tls, w) => Some(w),
            (_, SrtpPolicy::Required) => None,
            _ => Some(SrtpPolicy::Off),
        }
    }

    /// Local media parameters, with fresh SRTP master keys when `srtp` may
    /// be used. Keys come from the thread's CSPRNG (reseeded from the OS),
    /// not from the endpoint's seeded generator, which only picks tags.
    pub(super) fn sdp_config(rtp: SocketAddr, srtp: SrtpPolicy) -> SdpConfig {
        let mut c = SdpConfig::new(rtp.ip(), rtp.port());
        c.srtp = srtp;
        if srtp != SrtpPolicy::Off {
            rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut c.srtp_master);
        }
        c
    }

    /// Whether the call's peer is marked as behind NAT (`nat` on its trunk
    /// or extension): its RTP is then latched rather than held to its SDP.
    pub fn call_behind_nat(&self, id: CallId) -> bool {
        match self.calls.get(&id).and_then(|c| c.source.as_ref()) {
            Some(CallSource::Trunk(name)) => self.cfg.trunk(name).is_some_and(|t| t.nat),
            Some(CallSource::Extension(ext)) => self.cfg.extension(ext).is_some_and(|x| x.nat),
            None => false,
        }
    }

    /// Whether a request from `from` may act in call `id`'s dialog. RFC 3261
    /// §12.2.2 matches requests to a dialog by Call-ID and tags alone, which
    /// anyone who learns them (a log, a trace, a forwarded message) could
    /// use to hang up or redirect a live call. So the request must also come
    /// from the dialog's peer: the transport address its requests came from
    /// (or ours go to), its remote target, where the extension is registered
    /// now (a NAT mapping may change mid-call), or, for a trunk, any of the
    /// trunk's addresses (carriers spread a call over several proxies).
    fn from_dialog_peer(&self, id: CallId, from: Peer, wall: u64) -> bool {
        let Some(call) = self.calls.get(&id) else { return false };
        let same = |a: SocketAddr, b: SocketAddr| {
            a.port() == b.port() && crate::sip::config::canonical_ip(a.ip()) == crate::sip::config::canonical_ip(b.ip())
        };
        if same(from.addr, call.dialog.peer.addr) {
            return true;
        }
        if dial::uri_addr(&call.dialog.remote_target).is_ok_and(|a| same(from.addr, a)) {
            return true;
        }
        match &call.source {
            Some(CallSource::Trunk(name)) => self.cfg.trunk(name).is_some_and(|t| t.contains(from.addr.ip())),
            Some(CallSource::Extension(ext)) => self.registrar.is_registered_source(from.addr, wall) == Some(ext.as_str()),
            None => false,
        }
    }

    /// 403 to a request from outside the dialog; the call is not touched.
    fn refuse_stranger(&mut self, now: Instant, req: &Request, ctx: &Ctx) {
        self.stats.strangers += 1;
        let resp = self.response(req, ctx, 403);
        self.send_response(now, ctx, resp);
    }

    fn contact(&self, peer: Peer) -> String {
        let l = self.local_for(peer);
        let t = peer.transport.uri_param();
        format!("<sip:clinivox@{}{t}>", l.hostport())
    }

    fn send_request(&mut self, now: Instant, call: Option<CallId>, req: Request, peer: Peer, branch: &str) -> TxKey {
        let key = self.tx.client_send(now, branch, req, peer);
        if let Some(c) = call {
            self.client_tx.insert(key.clone(), c);
        }
        key
    }

    pub(super) fn on_invite(&mut self, now: Instant, wall: u64, req: Request, ctx: Ctx) {
        if ctx.info.to.tag().is_some() {
            return self.on_reinvite(now, wall, &req, &ctx);
        }
        // A retransmission whose transaction was given up early (memory
        // full): the call exists already, and its 2xx is resent by the call.
        if let Some(tag) = ctx.info.from.tag() {
            if self.inbound.contains_key(&(ctx.info.call_id.clone(), tag.to_string())) {
                return self.tx.server_forget(&ctx.key);
            }
        }

        if let Err(rej) = validate::check_sdp_content(&req) {
            let mut resp = self.response(&req, &ctx, rej.code);
            for (n, v) in rej.extra {
                resp.headers.push(n, v);
            }
            return self.send_response(now, &ctx, resp);
        }
        // Who is calling: a trunk by source address, else an authenticated
        // extension calling from where it registered; nobody else.
        let callee = ctx.info.uri.user().unwrap_or_default();
        let trunk = self.cfg.trunk_for_source(ctx.peer.addr.ip()).map(|t| (t.name.clone(), t.inbound_username.clone()));
        let source = if let Some((name, user)) = trunk {
            // A trunk with inbound credentials: its address is not enough.
            if let Some(user) = user {
                let refusal = match self.registrar.authenticate(&req, ctx.peer.addr, wall) {
                    Ok(u) if u == user => None,
                    Ok(_) => Some((403, Vec::new())),
                    Err(out) => Some((out.code, out.headers)),
                };
                if let Some((code, headers)) = refusal {
                    let mut resp = self.response(&req, &ctx, code);
                    for (n, v) in headers {
                        resp.headers.push(n, v);
                    }
                    return self.send_response(now, &ctx, resp);
                }
            }
            CallSource::Trunk(name)
        } else if self.registrar.is_registered_source(ctx.peer.addr, wall).is_some() {
            match self.registrar.authenticate(&req, ctx.peer.addr, wall) {
                Ok(ext) if self.registrar.is_trunk_user(&ext) => {
                    let resp = self.response(&req, &ctx, 403);
                    return self.send_response(now, &ctx, resp);
                }
                Ok(ext) => CallSource::Extension(ext),
                Err(out) => {
                    let mut resp = self.response(&req, &ctx, out.code);
                    for (n, v) in out.headers {
                        resp.headers.push(n, v);
                    }
                    return self.send_response(now, &ctx, resp);
                }
            }
        } else {
            let resp = self.response(&req, &ctx, 403);
            return self.send_response(now, &ctx, resp);
        };
        let known = self.cfg.owns_number(&callee) || self.cfg.extension(&callee).is_some();
        if !known {
            let resp = self.response(&req, &ctx, 404);
            return self.send_response(now, &ctx, resp);
        }
        // SRTP required, but asked over a transport where its keys would
        // travel in clear: refused before any state is kept.
        if self.srtp_policy(Some(&source), ctx.peer.transport).is_none() {
            let resp = self.response(&req, &ctx, 488);
            return self.send_response(now, &ctx, resp);
        }
        let offer = if req.body.is_empty() {
            None
        } else {
            match SessionDescription::parse(&String::from_utf8_lossy(&req.body)) {
                Ok(o) => Some(o),
                Err(_) => {
                    let resp = self.response(&req, &ctx, 400);
                    return self.send_response(now, &ctx, resp);
                }
            }
        };
        let id = CallId(self.next_call);
        self.next_call += 1;
        let tag = new_tag(&mut self.rng);
        let dialog = Dialog::from_invite(&req, &ctx.info.from, tag.clone(), ctx.peer, ctx.info.cseq.seq);
        self.dialogs.insert((dialog.call_id.clone(), tag), id);
        if let Some(remote) = &dialog.remote_tag {
            self.inbound.insert((dialog.call_id.clone(), remote.clone()), id);
        }
        let trying = response_for(&req, 100, None);
        self.send_response(now, &ctx, trying);
        let caller = ctx.info.from.uri.clone();
        self.touched.push(id);
        self.calls.insert(
            id,
            Call {
                dialog,
                phase: Phase::Offered { invite: req, key: ctx.key, offer },
                sdp: None,
                retrans: None,
                ack: None,
                awaiting_ack_answer: false,
                source: Some(source.clone()),
            },
        );
        self.events.push_back(EndpointEvent::Incoming { call: id, source, callee, caller });
    }

    fn on_reinvite(&mut self, now: Instant, wall: u64, req: &Request, ctx: &Ctx) {
        let Some(id) = self.find_dialog(&ctx.info.call_id, ctx.info.to.tag()) else {
            let resp = self.response(req, ctx, 481);
            return self.send_response(now, ctx, resp);
        };
        // A new SDP from a stranger would redirect the call's media to it.
        if !self.from_dialog_peer(id, ctx.peer, wall) {
            return self.refuse_stranger(now, req, ctx);
        }
        if let Err(rej) = validate::check_sdp_content(req) {
            let resp = self.response(req, ctx, rej.code);
            return self.send_response(now, ctx, resp);
        }
        let contact = self.contact(ctx.peer);
        let t1 = self.cfg.timers.t1();
        let Some(call) = touch(&mut self.touched, &mut self.calls, id) else { return };
        if !matches!(call.phase, Phase::Established) || call.retrans.is_some() {
            // An offer is already in progress (RFC 3261 §14.2).
            let resp = self.response(req, ctx, 491);
            return self.send_response(now, ctx, resp);
        }
        call.dialog.remote_cseq = Some(ctx.info.cseq.seq);
        if let Some(c) = req.headers.get("Contact").and_then(|c| NameAddr::parse(split_commas(c)[0], "Contact").ok()) {
            call.dialog.remote_target = c.uri;
        }
        let Some(sdp) = call.sdp.as_mut() else {
            let resp = self.response(req, ctx, 488);
            return self.send_response(now, ctx, resp);
        };
        let (body, media) = if req.body.is_empty() {
            call.awaiting_ack_answer = true;
            (sdp.create_offer(Direction::SendRecv), None)
        } else {
            let parsed = SessionDescription::parse(&String::from_utf8_lossy(&req.body));
            match parsed.map_err(|_| 400).and_then(|o| sdp.answer(&o, Direction::SendRecv).map_err(|_| 488)) {
                Ok((a, neg)) => (a, Some(neg)),
                Err(code) => {
                    let resp = self.response(req, ctx, code);
                    return self.send_response(now, ctx, resp);
                }
            }
        };
        let local_tag = call.dialog.local_tag.clone();
        let mut resp = response_for(req, 200, Some(&local_tag));
        resp.headers.push("Contact", contact);
        resp.headers.push("Content-Type", "application/sdp");
        resp.body = body.to_string().into_bytes();
        call.retrans = Some(Retrans { bytes: resp.to_bytes(), next: now + t1, interval: t1, give_up: now + 64 * t1 });
        self.send_response(now, ctx, resp);
        if let Some(media) = media {
            self.events.push_back(EndpointEvent::MediaUpdate { call: id, media });
        }
    }

    pub(super) fn on_ack(&mut self, _now: Instant, wall: u64, req: &Request, ctx: &Ctx) {
        let Some(id) = self.find_dialog(&ctx.info.call_id, ctx.info.to.tag()) else {
            return;
        };
        // An ACK is never answered (§17.1.1.3); a stranger's, which could
        // carry a late answer's SDP, is simply ignored.
        if !self.from_dialog_peer(id, ctx.peer, wall) {
            self.stats.strangers += 1;
            return;
        }
        let Some(call) = touch(&mut self.touched, &mut self.calls, id) else { return };
        let first = call.retrans.take().is_some();
        if call.awaiting_ack_answer && !req.body.is_empty() {
            call.awaiting_ack_answer = false;
            let answer = SessionDescription::parse(&String::from_utf8_lossy(&req.body));
            if let (Ok(a), Some(sdp)) = (answer, call.sdp.as_mut()) {
                if let Ok(media) = sdp.accept_answer(&a) {
                    self.events.push_back(EndpointEvent::MediaUpdate { call: id, media });
                }
            }
        }
        if first {
            self.events.push_back(EndpointEvent::Confirmed { call: id });
        }
    }

    pub(super) fn on_cancel(&mut self, now: Instant, wall: u64, req: &Request, ctx: &Ctx) {
        let invite_key = TxKey { id: ctx.key.id.clone(), method: "INVITE".into() };
        let found = self.calls.iter().find_map(|(id, c)| match &c.phase {
            Phase::Offered { key, invite, .. } if *key == invite_key => Some((*id, invite.clone(), c.dialog.local_tag.clone())),
            _ => None,
        });
        let Some((id, invite, tag)) = found else {
            let resp = self.response(req, ctx, 481);
            return self.send_response(now, ctx, resp);
        };
        // §9.2: a CANCEL comes from where its INVITE came from.
        if !self.from_dialog_peer(id, ctx.peer, wall) {
            return self.refuse_stranger(now, req, ctx);
        }
        let ok = self.response(req, ctx, 200);
        self.send_response(now, ctx, ok);
        let terminated = response_for(&invite, 487, Some(&tag));
        self.respond(now, &invite_key, terminated, ctx.peer);
        self.end_call(id, EndReason::Cancelled);
    }

    /// BYE, INFO, NOTIFY, REFER: need an existing dialog, and its peer.
    pub(super) fn on_in_dialog(&mut self, now: Instant, wall: u64, req: &Request, ctx: &Ctx) {
        let Some(id) = self.find_dialog(&ctx.info.call_id, ctx.info.to.tag()) else {
            let resp = self.response(req, ctx, 481);
            return self.send_response(now, ctx, resp);
        };
        if !self.from_dialog_peer(id, ctx.peer, wall) {
            return self.refuse_stranger(now, req, ctx);
        }
        let code = match req.method {
            Method::Bye => {
                let resp = self.response(req, ctx, 200);
                self.send_response(now, ctx, resp);
                return self.end_call(id, EndReason::RemoteBye);
            }
            Method::Info => {
                if let Some(digit) = info_dtmf(req) {
                    self.events.push_back(EndpointEvent::InfoDtmf { call: id, digit });
                }
                200
            }
            Method::Notify => {
                // RFC 3515 §2.4.5: the body is a sipfrag status line.
                let body = String::from_utf8_lossy(&req.body);
                let code =
                    body.lines().next().and_then(|l| l.strip_prefix("SIP/2.0 ")).and_then(|l| l.get(..3)).and_then(|c| c.parse().ok());
                if let Some(code) = code {
                    self.events.push_back(EndpointEvent::TransferStatus { call: id, code });
                }
                200
            }
            // Callers may not transfer Clinivox elsewhere.
            _ => 403,
        };
        let resp = self.response(req, ctx, code);
        self.send_response(now, ctx, resp);
    }

    /// Inbound call: send 180 Ringing.
    pub fn ring(&mut self, now: Instant, id: CallId) -> Result<(), CallError> {
        let call = self.calls.get(&id).ok_or(CallError::NoSuchCall)?;
        let Phase::Offered { invite, key, .. } = &call.phase else {
            return Err(CallError::WrongState);
        };
        let mut resp = response_for(invite, 180, Some(&call.dialog.local_tag));
        copy_record_route(invite, &mut resp);
        resp.headers.push("Contact", self.contact(call.dialog.peer));
        let (key, peer) = (key.clone(), call.dialog.peer);
        self.respond(now, &key, resp, peer);
        Ok(())
    }

    /// Inbound call: answer with our RTP address. Returns the negotiated
    /// media, or `None` for a late offer (then `MediaUpdate` follows the ACK).
    pub fn answer(&mut self, now: Instant, id: CallId, rtp: SocketAddr) -> Result<Option<Negotiated>, CallError> {
        let (contact, srtp) = {
            let call = self.calls.get(&id).ok_or(CallError::NoSuchCall)?;
            (self.contact(call.dialog.peer), self.srtp_policy(call.source.as_ref(), call.dialog.peer.transport).unwrap_or_default())
        };
        let session_id = rand::Rng::gen::<u32>(&mut self.rng) as u64;
        let t1 = self.cfg.timers.t1();
        let call = touch(&mut self.touched, &mut self.calls, id).ok_or(CallError::NoSuchCall)?;
        let Phase::Offered { invite, key, offer } = &call.phase else {
            return Err(CallError::WrongState);
        };
        let mut sdp = SdpSession::new(Self::sdp_config(rtp, srtp), session_id);
        let (body, media) = match offer {
            Some(o) => match sdp.answer(o, Direction::SendRecv) {
                Ok((a, neg)) => (a, Some(neg)),
                Err(_) => {
                    let resp = response_for(invite, 488, Some(&call.dialog.local_tag));
                    let (key, peer) = (key.clone(), call.dialog.peer);
                    self.respond(now, &key, resp, peer);
                    self.end_call(id, EndReason::Rejected(488));
                    return Err(CallError::NotAcceptable);
                }
            },
            None => {
                call.awaiting_ack_answer = true;
                (sdp.create_offer(Direction::SendRecv), None)
            }
        };
        let mut resp = response_for(invite, 200, Some(&call.dialog.local_tag));
        copy_record_route(invite, &mut resp);
        resp.headers.push("Contact", contact);
        resp.headers.push("Allow", super::ALLOW);
        resp.headers.push("Content-Type", "application/sdp");
        resp.body = body.to_string().into_bytes();
        let (key, peer) = (key.clone(), call.dialog.peer);
        call.retrans = Some(Retrans { bytes: resp.to_bytes(), next: now + t1, interval: t1, give_up: now + 64 * t1 });
        call.sdp = Some(sdp);
        call.phase = Phase::Established;
        self.respond(now, &key, resp, peer);
        Ok(media)
    }

    /// Inbound call: refuse with a final status (486, 480, 603…).
    pub fn reject(&mut self, now: Instant, id: CallId, code: u16) -> Result<(), CallError> {
        let call = self.calls.get(&id).ok_or(CallError::NoSuchCall)?;
        let Phase::Offered { invite, key, .. } = &call.phase else {
            return Err(CallError::WrongState);
        };
        let resp = response_for(invite, code.clamp(300, 699), Some(&call.dialog.local_tag));
        let (key, peer) = (key.clone(), call.dialog.peer);
        self.respond(now, &key, resp, peer);
        self.end_call(id, EndReason::Rejected(code));
        Ok(())
    }

    /// End a call in any state: reject, CANCEL or BYE as appropriate.
    pub fn hangup(&mut self, now: Instant, id: CallId) -> Result<(), CallError> {
        let call = touch(&mut self.touched, &mut self.calls, id).ok_or(CallError::NoSuchCall)?;
        match &mut call.phase {
            Phase::Offered { .. } => self.reject(now, id, 603),
            Phase::Dialing { cancel: Some(_), .. } => Ok(()),
            Phase::Dialing { cancel, .. } => {
                *cancel = Some((EndReason::LocalBye, false));
                self.send_cancel_if_possible(now, id);
                Ok(())
            }
            Phase::Established => {
                self.send_bye(now, id);
                self.end_call(id, EndReason::LocalBye);
                Ok(())
            }
        }
    }

    fn send_bye(&mut self, now: Instant, id: CallId) {
        let branch = new_branch(&mut self.rng);
        let Some(call) = touch(&mut self.touched, &mut self.calls, id) else { return };
        let peer = call.dialog.peer;
        let local = self.locals.get(&(peer.transport, peer.addr.is_ipv6())).copied();
        let local = local.unwrap_or_else(|| self.local_for(peer));
        let Some(call) = touch(&mut self.touched, &mut self.calls, id) else { return };
        let mut bye = call.dialog.request(Method::Bye, local, &branch);
        self.push_agent(&mut bye.headers, "User-Agent");
        self.send_request(now, None, bye, peer, &branch);
    }

    /// CANCEL goes out only after a provisional response (§9.1).
    fn send_cancel_if_possible(&mut self, now: Instant, id: CallId) {
        let Some(call) = touch(&mut self.touched, &mut self.calls, id) else { return };
        let Phase::Dialing { invite, provisional: true, cancel: Some((_, sent @ false)), .. } = &mut call.phase else {
            return;
        };
        *sent = true;
        let mut c = Request::new(Method::Cancel, invite.uri.clone());
        for name in ["Via", "From", "To", "Call-ID"] {
            if let Some(v) = invite.headers.get(name) {
                c.headers.push(name, v);
            }
        }
        let seq = invite.headers.get("CSeq").and_then(|v| CSeq::parse(v).ok()).map(|c| c.seq).unwrap_or(1);
        c.headers.push("CSeq", format!("{seq} CANCEL"));
        c.headers.push("Max-Forwards", "70");
        let branch = crate::sip::headers::Via::parse_all(invite.headers.get("Via").unwrap_or(""))
            .ok()
            .and_then(|v| v.first().and_then(|v| v.branch()).map(str::to_string))
            .unwrap_or_default();
        let peer = call.dialog.peer;
        self.send_request(now, None, c, peer, &branch);
    }

    pub(super) fn on_call_timer(&mut self, now: Instant, id: CallId) {
        let t2 = self.cfg.timers.t2();
        let Some(call) = touch(&mut self.touched, &mut self.calls, id) else { return };
        if let Some(r) = call.retrans.as_mut() {
            if r.give_up <= now {
                call.retrans = None;
                self.send_bye(now, id);
                return self.end_call(id, EndReason::Timeout);
            }
            if r.next <= now {
                self.out.push_back(Transmit { peer: call.dialog.peer, bytes: r.bytes.clone() });
                r.interval = (r.interval * 2).min(t2);
                r.next = now + r.interval;
            }
        }
        if let Phase::Dialing { no_answer_at, cancel: cancel @ None, .. } = &mut call.phase {
            if *no_answer_at <= now {
                *cancel = Some((EndReason::NoAnswer, false));
                self.send_cancel_if_possible(now, id);
            }
        }
    }
}

/// DTMF digit from an INFO body (application/dtmf-relay or application/dtmf).
fn info_dtmf(req: &Request) -> Option<char> {
    let ct = validate::media_type(req.headers.get("Content-Type")?);
    let body = String::from_utf8_lossy(&req.body);
    let raw = match ct.as_str() {
        "application/dtmf-relay" => body.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then(|| v.trim().to_string())
        })?,
        "application/dtmf" => body.trim().to_string(),
        _ => return None,
    };
    let c = raw.chars().next()?.to_ascii_uppercase();
    match raw.as_str() {
        "10" => Some('*'),
        "11" => Some('#'),
        _ if raw.len() == 1 && (c.is_ascii_digit() || "*#ABCD".contains(c)) => Some(c),
        _ => None,
    }
}
