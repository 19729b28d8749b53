//! INVITE dialogs of the endpoint: inbound (UAS) and outbound (UAC) calls,
//! re-INVITE, CANCEL, BYE, INFO DTMF, and REFER with NOTIFY progress.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::{CallId, CallSource, Ctx, EndReason, Endpoint, EndpointEvent};
use crate::media::sdp::{Direction, Negotiated, SdpConfig, SdpSession, SessionDescription};
use crate::sip::config::Transport;
use crate::sip::dialog::{new_branch, new_tag, response_for, via_value, Dialog};
use crate::sip::digest;
use crate::sip::headers::{split_commas, CSeq, NameAddr};
use crate::sip::message::{Method, Request, Response};
use crate::sip::transaction::{Peer, Transmit, TxKey};
use crate::sip::uri::{Host, SipUri, Uri};
use crate::sip::validate;

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

impl Endpoint {
    fn end_call(&mut self, id: CallId, reason: EndReason) {
        if let Some(c) = self.calls.remove(&id) {
            self.dialogs.remove(&(c.dialog.call_id.clone(), c.dialog.local_tag.clone()));
            self.events.push_back(EndpointEvent::Ended { call: id, reason });
        }
    }

    fn find_dialog(&self, call_id: &str, local_tag: Option<&str>) -> Option<CallId> {
        self.dialogs.get(&(call_id.to_string(), local_tag?.to_string())).copied()
    }

    fn contact(&self, peer: Peer) -> String {
        let l = self.local_for(peer);
        let t = match peer.transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
        };
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
            return self.on_reinvite(now, &req, &ctx);
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
        let source = if let Some(t) = self.cfg.trunk_for_source(ctx.peer.addr.ip()) {
            CallSource::Trunk(t.name.clone())
        } else if self.registrar.is_registered_source(ctx.peer.addr, wall).is_some() {
            match self.registrar.authenticate(&req, wall) {
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
        let trying = response_for(&req, 100, None);
        self.send_response(now, &ctx, trying);
        let caller = ctx.info.from.uri.clone();
        self.calls.insert(
            id,
            Call {
                dialog,
                phase: Phase::Offered { invite: req, key: ctx.key, offer },
                sdp: None,
                retrans: None,
                ack: None,
                awaiting_ack_answer: false,
            },
        );
        self.events.push_back(EndpointEvent::Incoming { call: id, source, callee, caller });
    }

    fn on_reinvite(&mut self, now: Instant, req: &Request, ctx: &Ctx) {
        let Some(id) = self.find_dialog(&ctx.info.call_id, ctx.info.to.tag()) else {
            let resp = self.response(req, ctx, 481);
            return self.send_response(now, ctx, resp);
        };
        if let Err(rej) = validate::check_sdp_content(req) {
            let resp = self.response(req, ctx, rej.code);
            return self.send_response(now, ctx, resp);
        }
        let contact = self.contact(ctx.peer);
        let t1 = self.cfg.timers.t1();
        let Some(call) = self.calls.get_mut(&id) else { return };
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

    pub(super) fn on_ack(&mut self, _now: Instant, req: &Request, ctx: &Ctx) {
        let Some(id) = self.find_dialog(&ctx.info.call_id, ctx.info.to.tag()) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else { return };
        call.retrans = None;
        if call.awaiting_ack_answer && !req.body.is_empty() {
            call.awaiting_ack_answer = false;
            let answer = SessionDescription::parse(&String::from_utf8_lossy(&req.body));
            if let (Ok(a), Some(sdp)) = (answer, call.sdp.as_mut()) {
                if let Ok(media) = sdp.accept_answer(&a) {
                    self.events.push_back(EndpointEvent::MediaUpdate { call: id, media });
                }
            }
        }
    }

    pub(super) fn on_cancel(&mut self, now: Instant, req: &Request, ctx: &Ctx) {
        let invite_key = TxKey { id: ctx.key.id.clone(), method: "INVITE".into() };
        let found = self.calls.iter().find_map(|(id, c)| match &c.phase {
            Phase::Offered { key, invite, .. } if *key == invite_key => Some((*id, invite.clone(), c.dialog.local_tag.clone())),
            _ => None,
        });
        let Some((id, invite, tag)) = found else {
            let resp = self.response(req, ctx, 481);
            return self.send_response(now, ctx, resp);
        };
        let ok = self.response(req, ctx, 200);
        self.send_response(now, ctx, ok);
        let terminated = response_for(&invite, 487, Some(&tag));
        self.tx.server_respond(now, &invite_key, &terminated, ctx.peer);
        self.end_call(id, EndReason::Cancelled);
    }

    /// BYE, INFO, NOTIFY, REFER: need an existing dialog.
    pub(super) fn on_in_dialog(&mut self, now: Instant, req: &Request, ctx: &Ctx) {
        let Some(id) = self.find_dialog(&ctx.info.call_id, ctx.info.to.tag()) else {
            let resp = self.response(req, ctx, 481);
            return self.send_response(now, ctx, resp);
        };
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
        resp.headers.push("Contact", self.contact(call.dialog.peer));
        let (key, peer) = (key.clone(), call.dialog.peer);
        self.tx.server_respond(now, &key, &resp, peer);
        Ok(())
    }

    /// Inbound call: answer with our RTP address. Returns the negotiated
    /// media, or `None` for a late offer (then `MediaUpdate` follows the ACK).
    pub fn answer(&mut self, now: Instant, id: CallId, rtp: SocketAddr) -> Result<Option<Negotiated>, CallError> {
        let contact = {
            let call = self.calls.get(&id).ok_or(CallError::NoSuchCall)?;
            self.contact(call.dialog.peer)
        };
        let session_id = rand::Rng::gen::<u32>(&mut self.rng) as u64;
        let t1 = self.cfg.timers.t1();
        let call = self.calls.get_mut(&id).ok_or(CallError::NoSuchCall)?;
        let Phase::Offered { invite, key, offer } = &call.phase else {
            return Err(CallError::WrongState);
        };
        let mut sdp = SdpSession::new(SdpConfig::new(rtp.ip(), rtp.port()), session_id);
        let (body, media) = match offer {
            Some(o) => match sdp.answer(o, Direction::SendRecv) {
                Ok((a, neg)) => (a, Some(neg)),
                Err(_) => {
                    let resp = response_for(invite, 488, Some(&call.dialog.local_tag));
                    let (key, peer) = (key.clone(), call.dialog.peer);
                    self.tx.server_respond(now, &key, &resp, peer);
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
        resp.headers.push("Contact", contact);
        resp.headers.push("Allow", super::ALLOW);
        resp.headers.push("Content-Type", "application/sdp");
        resp.body = body.to_string().into_bytes();
        let (key, peer) = (key.clone(), call.dialog.peer);
        call.retrans = Some(Retrans { bytes: resp.to_bytes(), next: now + t1, interval: t1, give_up: now + 64 * t1 });
        call.sdp = Some(sdp);
        call.phase = Phase::Established;
        self.tx.server_respond(now, &key, &resp, peer);
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
        self.tx.server_respond(now, &key, &resp, peer);
        self.end_call(id, EndReason::Rejected(code));
        Ok(())
    }

    /// End a call in any state: reject, CANCEL or BYE as appropriate.
    pub fn hangup(&mut self, now: Instant, id: CallId) -> Result<(), CallError> {
        let call = self.calls.get_mut(&id).ok_or(CallError::NoSuchCall)?;
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
        let Some(call) = self.calls.get_mut(&id) else { return };
        let peer = call.dialog.peer;
        let local = self.locals.get(&(peer.transport, peer.addr.is_ipv6())).copied();
        let local = local.unwrap_or_else(|| self.local_for(peer));
        let Some(call) = self.calls.get_mut(&id) else { return };
        let mut bye = call.dialog.request(Method::Bye, local, &branch);
        bye.headers.push("User-Agent", self.cfg.user_agent.clone());
        self.send_request(now, None, bye, peer, &branch);
    }

    /// CANCEL goes out only after a provisional response (§9.1).
    fn send_cancel_if_possible(&mut self, now: Instant, id: CallId) {
        let Some(call) = self.calls.get_mut(&id) else { return };
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

    /// Place an outbound call offering media on `rtp`.
    pub fn dial(&mut self, now: Instant, wall: u64, target: DialTarget, rtp: SocketAddr) -> Result<CallId, CallError> {
        self.dial_with_headers(now, wall, target, rtp, &[])
    }

    /// Same, with extra headers on the INVITE (e.g. the call's context for
    /// the staff phone). Names must be tokens; CR/LF in values are replaced.
    pub fn dial_with_headers(
        &mut self,
        now: Instant,
        wall: u64,
        target: DialTarget,
        rtp: SocketAddr,
        headers: &[(String, String)],
    ) -> Result<CallId, CallError> {
        if let Some((bad, _)) = headers.iter().find(|(n, _)| n.is_empty() || !n.bytes().all(crate::sip::message::is_token_byte)) {
            return Err(CallError::BadTarget(format!("header name {bad:?}")));
        }
        let (uri, peer, creds, from_user, domain) = self.resolve(wall, &target)?;
        let id = CallId(self.next_call);
        self.next_call += 1;
        let tag = new_tag(&mut self.rng);
        let branch = new_branch(&mut self.rng);
        let call_id = format!("{:016x}@clinivox", rand::Rng::gen::<u64>(&mut self.rng));
        let local = self.local_for(peer);
        let mut sdp = SdpSession::new(SdpConfig::new(rtp.ip(), rtp.port()), rand::Rng::gen::<u32>(&mut self.rng) as u64);
        let offer = sdp.create_offer(Direction::SendRecv);
        let from = format!("<sip:{from_user}@{domain}>;tag={tag}");
        let to = format!("<{uri}>");
        let mut inv = Request::new(Method::Invite, uri.clone());
        inv.headers.push("Via", via_value(local, peer, &branch));
        inv.headers.push("Max-Forwards", "70");
        inv.headers.push("From", from.clone());
        inv.headers.push("To", to.clone());
        inv.headers.push("Call-ID", call_id.clone());
        inv.headers.push("CSeq", "1 INVITE");
        inv.headers.push("Contact", self.contact(peer));
        inv.headers.push("Allow", super::ALLOW);
        inv.headers.push("User-Agent", self.cfg.user_agent.clone());
        for (n, v) in headers {
            inv.headers.push(n, v.replace(['\r', '\n'], " "));
        }
        inv.headers.push("Content-Type", "application/sdp");
        inv.body = offer.to_string().into_bytes();
        let dialog = Dialog {
            call_id: call_id.clone(),
            local_tag: tag.clone(),
            remote_tag: None,
            local_uri: from,
            remote_uri: to,
            remote_target: uri,
            local_cseq: 1,
            remote_cseq: None,
            route_set: Vec::new(),
            peer,
        };
        let key = self.send_request(now, Some(id), inv.clone(), peer, &branch);
        self.dialogs.insert((call_id, tag), id);
        self.calls.insert(
            id,
            Call {
                dialog,
                phase: Phase::Dialing {
                    key,
                    invite: inv,
                    auth_tried: false,
                    no_answer_at: now + Duration::from_secs(self.cfg.timers.no_answer_s),
                    provisional: false,
                    cancel: None,
                    creds,
                },
                sdp: Some(sdp),
                retrans: None,
                ack: None,
                awaiting_ack_answer: false,
            },
        );
        Ok(id)
    }

    /// Target → (Request-URI, next hop, credentials, From user, From domain).
    #[allow(clippy::type_complexity)]
    fn resolve(&self, wall: u64, target: &DialTarget) -> Result<(String, Peer, Option<(String, String)>, String, String), CallError> {
        let domain = self.cfg.domain.clone();
        match target {
            DialTarget::Extension(ext) => {
                let b = self.registrar.contacts(ext, wall).into_iter().next().ok_or_else(|| CallError::NotRegistered(ext.clone()))?;
                let addr = match b.source {
                    Some(s) => s,
                    None => uri_addr(&b.contact)?,
                };
                Ok((b.contact, Peer { transport: b.transport, addr }, None, "clinivox".into(), domain))
            }
            DialTarget::Uri(u) => {
                let addr = uri_addr(u)?;
                let transport = match SipUri::parse(u).ok().and_then(|s| s.param("transport").flatten().map(str::to_ascii_lowercase)) {
                    Some(t) if t == "tcp" => Transport::Tcp,
                    _ => Transport::Udp,
                };
                Ok((u.clone(), Peer { transport, addr }, None, "clinivox".into(), domain))
            }
            DialTarget::Number { number, trunk } => {
                let t = self
                    .cfg
                    .trunks
                    .iter()
                    .filter(|t| t.proxy.is_some())
                    .find(|t| trunk.as_ref().is_none_or(|n| *n == t.name))
                    .ok_or(CallError::NoTrunk)?;
                let proxy = t.proxy.as_ref().ok_or(CallError::NoTrunk)?;
                let addr = *t.proxy_addrs.first().ok_or_else(|| CallError::Unresolved(proxy.host.clone()))?;
                let host = t.domain.clone().unwrap_or_else(|| proxy.to_uri_host());
                if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'+' || b == b'*' || b == b'#') {
                    return Err(CallError::BadTarget(number.clone()));
                }
                let creds = t.username.clone().zip(t.password.clone());
                let from_user = t.caller_id.clone().or_else(|| t.username.clone()).unwrap_or_else(|| "clinivox".into());
                Ok((
                    format!("sip:{number}@{host}"),
                    Peer { transport: t.transport.unwrap_or(Transport::Udp), addr },
                    creds,
                    from_user,
                    host,
                ))
            }
        }
    }

    /// Blind transfer: REFER the peer to `target`; NOTIFYs report progress.
    pub fn refer(&mut self, now: Instant, id: CallId, target: &str) -> Result<(), CallError> {
        if Uri::parse(target).is_err() {
            return Err(CallError::BadTarget(target.to_string()));
        }
        let branch = new_branch(&mut self.rng);
        let call = self.calls.get(&id).ok_or(CallError::NoSuchCall)?;
        if !matches!(call.phase, Phase::Established) {
            return Err(CallError::WrongState);
        }
        let peer = call.dialog.peer;
        let local = self.local_for(peer);
        let contact = self.contact(peer);
        let call = self.calls.get_mut(&id).ok_or(CallError::NoSuchCall)?;
        let mut r = call.dialog.request(Method::Refer, local, &branch);
        r.headers.push("Refer-To", format!("<{target}>"));
        r.headers.push("Referred-By", format!("<{}>", NameAddr::parse(&call.dialog.local_uri, "From").map(|n| n.uri).unwrap_or_default()));
        r.headers.push("Contact", contact);
        self.send_request(now, Some(id), r, peer, &branch);
        Ok(())
    }

    pub(super) fn on_call_response(&mut self, now: Instant, _wall: u64, id: CallId, key: &TxKey, cseq: &CSeq, resp: Response) {
        if cseq.method == "REFER" {
            if resp.status >= 200 {
                self.events.push_back(EndpointEvent::TransferStatus { call: id, code: resp.status });
            }
            return;
        }
        if cseq.method != "INVITE" {
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Phase::Dialing { key: k, .. } = &call.phase else { return };
        if k != key {
            return;
        }
        let to_tag = resp.headers.get("To").and_then(|t| NameAddr::parse(t, "To").ok()).and_then(|t| t.tag().map(str::to_string));
        match resp.status {
            100..=199 => {
                if let Phase::Dialing { provisional, .. } = &mut call.phase {
                    *provisional = true;
                }
                if resp.status != 100 {
                    self.events.push_back(EndpointEvent::Progress { call: id, code: resp.status });
                }
                self.send_cancel_if_possible(now, id);
            }
            200..=299 => self.on_invite_2xx(now, id, cseq, resp, to_tag),
            401 | 407 => self.retry_with_auth(now, id, &resp),
            code => {
                let reason = match &call.phase {
                    Phase::Dialing { cancel: Some((r, _)), .. } => *r,
                    _ => EndReason::Rejected(code),
                };
                self.end_call(id, reason);
            }
        }
    }

    fn on_invite_2xx(&mut self, now: Instant, id: CallId, cseq: &CSeq, resp: Response, to_tag: Option<String>) {
        let branch = new_branch(&mut self.rng);
        let Some(call) = self.calls.get_mut(&id) else { return };
        call.dialog.remote_tag = to_tag;
        if let Some(t) = resp.headers.get("To") {
            call.dialog.remote_uri = t.to_string();
        }
        if let Some(c) = resp.headers.get("Contact").and_then(|c| NameAddr::parse(split_commas(c)[0], "Contact").ok()) {
            call.dialog.remote_target = c.uri;
        }
        // UAC route set is the Record-Route list reversed (§12.1.2).
        call.dialog.route_set = {
            let mut rr: Vec<String> = resp.headers.get_all("Record-Route").flat_map(split_commas).map(str::to_string).collect();
            rr.reverse();
            rr
        };
        let peer = call.dialog.peer;
        let local = self.locals.get(&(peer.transport, peer.addr.is_ipv6())).copied().unwrap_or_else(|| self.local_for(peer));
        let Some(call) = self.calls.get_mut(&id) else { return };
        let mut ack = call.dialog.request(Method::Ack, local, &branch);
        ack.headers.set("CSeq", format!("{} ACK", cseq.seq));
        let bytes = ack.to_bytes();
        call.ack = Some(bytes.clone());
        self.out.push_back(Transmit { peer, bytes });
        let cancel = match &call.phase {
            Phase::Dialing { cancel, .. } => cancel.map(|(r, _)| r),
            _ => None,
        };
        call.phase = Phase::Established;
        let answer = SessionDescription::parse(&String::from_utf8_lossy(&resp.body));
        let media = match (answer, call.sdp.as_mut()) {
            (Ok(a), Some(sdp)) => sdp.accept_answer(&a).ok(),
            _ => None,
        };
        match (cancel, media) {
            (Some(reason), _) => {
                // Answered after we gave up: ACK then BYE (§9.1).
                self.send_bye(now, id);
                self.end_call(id, reason);
            }
            (None, Some(media)) => self.events.push_back(EndpointEvent::Answered { call: id, media }),
            (None, None) => {
                self.send_bye(now, id);
                self.end_call(id, EndReason::Rejected(488));
            }
        }
    }

    fn retry_with_auth(&mut self, now: Instant, id: CallId, resp: &Response) {
        let branch = new_branch(&mut self.rng);
        let cnonce = format!("{:016x}", rand::Rng::gen::<u64>(&mut self.rng));
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Phase::Dialing { invite, auth_tried, creds, key, cancel: None, .. } = &mut call.phase else {
            return self.end_call(id, EndReason::Rejected(resp.status));
        };
        let (hdr_in, hdr_out) =
            if resp.status == 407 { ("Proxy-Authenticate", "Proxy-Authorization") } else { ("WWW-Authenticate", "Authorization") };
        let challenge = digest::best_challenge(resp.headers.get_all(hdr_in));
        let (Some((user, pass)), Some(ch), false) = (creds.clone(), challenge, *auth_tried) else {
            return self.end_call(id, EndReason::Rejected(resp.status));
        };
        let Some(auth) = digest::authorize(&ch, &user, &pass, "INVITE", &invite.uri, &cnonce) else {
            return self.end_call(id, EndReason::Rejected(resp.status));
        };
        // Same dialog identifiers, next CSeq, new branch (§22.2).
        call.dialog.local_cseq += 1;
        let mut inv = invite.clone();
        inv.headers.set("CSeq", format!("{} INVITE", call.dialog.local_cseq));
        inv.headers.set(hdr_out, auth);
        let peer = call.dialog.peer;
        let via = inv.headers.get("Via").unwrap_or("").to_string();
        let old_branch = via.split(";branch=").nth(1).and_then(|s| s.split(';').next()).unwrap_or("").to_string();
        inv.headers.set("Via", via.replace(&old_branch, &branch));
        *invite = inv.clone();
        *auth_tried = true;
        let new_key = self.tx.client_send(now, &branch, inv, peer);
        *key = new_key.clone();
        self.client_tx.insert(new_key, id);
    }

    pub(super) fn on_2xx_retransmission(&mut self, _now: Instant, resp: &Response, _cseq: &CSeq) {
        let call_id = resp.headers.get("Call-ID").unwrap_or("").trim();
        let tag = resp.headers.get("From").and_then(|f| NameAddr::parse(f, "From").ok()).and_then(|f| f.tag().map(str::to_string));
        let Some(id) = self.find_dialog(call_id, tag.as_deref()) else { return };
        if let Some(call) = self.calls.get(&id) {
            if let Some(ack) = &call.ack {
                self.out.push_back(Transmit { peer: call.dialog.peer, bytes: ack.clone() });
            }
        }
    }

    pub(super) fn on_client_timeout(&mut self, _now: Instant, id: CallId, key: &TxKey) {
        if key.method == "REFER" {
            self.events.push_back(EndpointEvent::TransferStatus { call: id, code: 408 });
        } else if key.method == "INVITE" {
            let reason = match self.calls.get(&id).map(|c| &c.phase) {
                Some(Phase::Dialing { cancel: Some((r, _)), .. }) => *r,
                _ => EndReason::Timeout,
            };
            self.end_call(id, reason);
        }
    }

    pub(super) fn on_call_timer(&mut self, now: Instant, id: CallId) {
        let t2 = self.cfg.timers.t2();
        let Some(call) = self.calls.get_mut(&id) else { return };
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

/// Next hop for a URI with an IP host (no DNS in the core).
fn uri_addr(u: &str) -> Result<SocketAddr, CallError> {
    let s = SipUri::parse(u).map_err(|e| CallError::BadTarget(e.to_string()))?;
    match s.host {
        Host::Ip(ip) => Ok(SocketAddr::new(ip, s.port.unwrap_or(5060))),
        Host::Name(n) => Err(CallError::BadTarget(format!("{n}: host names need DNS"))),
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
