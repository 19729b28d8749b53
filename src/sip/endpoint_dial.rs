//! Outbound calls of the endpoint (UAC): dialing a registered extension, a
//! SIP URI or a number through a trunk (answering 401/407 once), the
//! responses to our INVITE (180/183, 2xx with ACK, failures), and blind
//! transfer by REFER.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{touch, Call, CallError, DialTarget, Phase};
use crate::media::sdp::{Direction, SdpSession, SessionDescription};
use crate::sip::config::Transport;
use crate::sip::dialog::{new_branch, new_tag, via_value, Dialog};
use crate::sip::digest;
use crate::sip::endpoint::{CallId, CallSource, EndReason, Endpoint, EndpointEvent};
use crate::sip::headers::{split_commas, CSeq, NameAddr};
use crate::sip::message::{Method, Request, Response};
use crate::sip::transaction::{Peer, Transmit, TxKey};
use crate::sip::uri::{Host, Scheme, SipUri, Uri};

impl Endpoint {
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
        // Whose call this is: the trunk or extension dialled, or the trunk
        // a URI's host belongs to (its addresses and `nat` flag apply).
        let source = match &target {
            DialTarget::Extension(ext) => Some(CallSource::Extension(ext.clone())),
            DialTarget::Number { .. } => self.trunk_of_number_call(&target).map(CallSource::Trunk),
            DialTarget::Uri(_) => self.cfg.trunk_for_source(peer.addr.ip()).map(|t| CallSource::Trunk(t.name.clone())),
        };
        let id = CallId(self.next_call);
        self.next_call += 1;
        let tag = new_tag(&mut self.rng);
        let branch = new_branch(&mut self.rng);
        let call_id = format!("{:016x}@clinivox", rand::Rng::gen::<u64>(&mut self.rng));
        let local = self.local_for(peer);
        let srtp = self.srtp_policy(source.as_ref(), peer.transport).ok_or(CallError::NotAcceptable)?;
        let mut sdp = SdpSession::new(Self::sdp_config(rtp, srtp), rand::Rng::gen::<u32>(&mut self.rng) as u64);
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
        inv.headers.push("Allow", crate::sip::endpoint::ALLOW);
        self.push_agent(&mut inv.headers, "User-Agent");
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
        self.touched.push(id);
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
                source,
            },
        );
        Ok(id)
    }

    /// The trunk a `DialTarget::Number` goes out through (as `resolve` picks it).
    fn trunk_of_number_call(&self, target: &DialTarget) -> Option<String> {
        let DialTarget::Number { trunk, .. } = target else { return None };
        self.cfg.trunks.iter().filter(|t| t.proxy.is_some()).find(|t| trunk.as_ref().is_none_or(|n| *n == t.name)).map(|t| t.name.clone())
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
                let parsed = SipUri::parse(u).map_err(|e| CallError::BadTarget(e.to_string()))?;
                let transport = Transport::from_uri(parsed.scheme == Scheme::Sips, parsed.param("transport").flatten());
                let addr = uri_addr(u)?;
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
                if let Some(allow) = &self.cfg.dial_allow {
                    let home = self.cfg.home_country_code.as_deref().unwrap_or("+");
                    if !crate::phone::dial_allowed(number, allow, home) {
                        return Err(CallError::NotAllowed(crate::phone::masked(number)));
                    }
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
        let call = touch(&mut self.touched, &mut self.calls, id).ok_or(CallError::NoSuchCall)?;
        let mut r = call.dialog.request(Method::Refer, local, &branch);
        r.headers.push("Refer-To", format!("<{target}>"));
        r.headers.push("Referred-By", format!("<{}>", NameAddr::parse(&call.dialog.local_uri, "From").map(|n| n.uri).unwrap_or_default()));
        r.headers.push("Contact", contact);
        self.send_request(now, Some(id), r, peer, &branch);
        Ok(())
    }

    pub(in crate::sip::endpoint) fn on_call_response(
        &mut self,
        now: Instant,
        _wall: u64,
        id: CallId,
        key: &TxKey,
        cseq: &CSeq,
        resp: Response,
    ) {
        if cseq.method == "REFER" {
            if resp.status >= 200 {
                self.events.push_back(EndpointEvent::TransferStatus { call: id, code: resp.status });
            }
            return;
        }
        if cseq.method != "INVITE" {
            return;
        }
        let Some(call) = touch(&mut self.touched, &mut self.calls, id) else { return };
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
        let Some(call) = touch(&mut self.touched, &mut self.calls, id) else { return };
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
        let Some(call) = touch(&mut self.touched, &mut self.calls, id) else { return };
        let mut ack = call.dialog.request(Method::Ack, local, &branch);
        ack.headers.set("CSeq", format!("{} ACK", cseq.seq));
        // "The ACK MUST contain the same credentials as the INVITE" (§13.2.2.4).
        if let Phase::Dialing { invite, .. } = &call.phase {
            for name in ["Authorization", "Proxy-Authorization"] {
                if let Some(v) = invite.headers.get(name) {
                    ack.headers.push(name, v.to_string());
                }
            }
        }
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
        let Some(call) = touch(&mut self.touched, &mut self.calls, id) else { return };
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

    pub(in crate::sip::endpoint) fn on_2xx_retransmission(&mut self, _now: Instant, resp: &Response, _cseq: &CSeq) {
        let call_id = resp.headers.get("Call-ID").unwrap_or("").trim();
        let tag = resp.headers.get("From").and_then(|f| NameAddr::parse(f, "From").ok()).and_then(|f| f.tag().map(str::to_string));
        let Some(id) = self.find_dialog(call_id, tag.as_deref()) else { return };
        if let Some(call) = self.calls.get(&id) {
            if let Some(ack) = &call.ack {
                self.out.push_back(Transmit { peer: call.dialog.peer, bytes: ack.clone() });
            }
        }
    }

    pub(in crate::sip::endpoint) fn on_client_timeout(&mut self, _now: Instant, id: CallId, key: &TxKey) {
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
}

/// Next hop for a URI with an IP host (no DNS in the core).
pub(super) fn uri_addr(u: &str) -> Result<SocketAddr, CallError> {
    let s = SipUri::parse(u).map_err(|e| CallError::BadTarget(e.to_string()))?;
    // RFC 3261 §19.1.2: 5061 for sips: and TLS, else 5060.
    let tls = Transport::from_uri(s.scheme == Scheme::Sips, s.param("transport").flatten()) == Transport::Tls;
    match s.host {
        Host::Ip(ip) => Ok(SocketAddr::new(ip, s.port.unwrap_or(if tls { 5061 } else { 5060 }))),
        Host::Name(n) => Err(CallError::BadTarget(format!("{n}: host names need DNS"))),
    }
}
