//! New calls past capacity, refused (or shed) without parsing them.
//!
//! Past `max_calls` every new INVITE is refused with a stateless 503. A
//! full parse and validation of each costs several times what the
//! refusal needs, and past three times capacity the refusals alone took
//! most of the core that the calls already carried needed (issue 13:
//! 24 µs a refusal, 29 % of capacity still completed). A 503 needs only
//! the five header fields RFC 3261 §8.2.6.2 copies — Via, From, To,
//! Call-ID, CSeq — so this module finds those lines in the raw bytes and
//! copies them. Anything it does not read plainly (folded lines, a CSeq
//! that is not INVITE's, a missing field) is left to the full parser, which
//! answers as before.
//!
//! [`is_new_invite`] is the cheaper question the driver asks of a
//! datagram while its queue is too long to answer everything: an INVITE
//! without a To tag starts a call, and shedding it is how a server keeps
//! completing the calls it has (RFC 6357 §4: a server that spends its
//! capacity rejecting requests has none left for the ones it accepted).

/// The To tags of our stateless answers start with this; a dialog's tag
/// never does (they are hexadecimal, [`crate::sip::dialog::new_tag`]).
/// So an ACK that carries one acknowledges a refusal we kept nothing of,
/// and the driver drops it unread ([`acks_a_refusal`]): past capacity a
/// carrier ACKs each 503, and reading those ACKs cost as much as sending
/// the 503s.
pub const REFUSAL_TAG_PREFIX: char = 'x';

/// A To tag for a stateless answer: [`REFUSAL_TAG_PREFIX`] and 60 bits.
pub fn refusal_tag(bits: u64) -> String {
    format!("{REFUSAL_TAG_PREFIX}{:015x}", bits >> 4)
}

/// Whether `bytes` is an ACK for one of our stateless answers (its To tag
/// is a [`refusal_tag`]). Reads no further than the To line.
pub fn acks_a_refusal(bytes: &[u8]) -> bool {
    if !bytes.starts_with(b"ACK ") {
        return false;
    }
    let mut ours = false;
    let _ = each_field(bytes, |name, value| {
        if field_name(name) == Some(Field::To) {
            ours = tag_of(value).is_some_and(|t| t.first() == Some(&(REFUSAL_TAG_PREFIX as u8)));
            return false;
        }
        true
    });
    ours
}

/// The header lines of a new INVITE that its refusal copies, as received.
#[derive(Debug, PartialEq, Eq)]
pub struct NewInvite<'a> {
    vias: Vec<&'a [u8]>,
    from: &'a [u8],
    to: &'a [u8],
    call_id: &'a [u8],
    cseq: &'a [u8],
}

impl<'a> NewInvite<'a> {
    /// The fields of `bytes` when it is an INVITE outside any dialog (no
    /// To tag) whose five fields read plainly; `None` otherwise.
    pub fn scan(bytes: &'a [u8]) -> Option<NewInvite<'a>> {
        if !bytes.starts_with(b"INVITE ") {
            return None;
        }
        let (mut vias, mut from, mut to, mut call_id, mut cseq) = (Vec::new(), None, None, None, None);
        let mut plain = true;
        each_field(bytes, |name, value| {
            // A field that must appear once appearing twice is the full
            // parser's to refuse.
            let once = |slot: &mut Option<&'a [u8]>| slot.replace(value).is_none();
            plain = match field_name(name) {
                Some(Field::Via) => {
                    vias.push(value);
                    true
                }
                Some(Field::From) => once(&mut from),
                Some(Field::To) => once(&mut to),
                Some(Field::CallId) => once(&mut call_id),
                Some(Field::CSeq) => once(&mut cseq),
                Some(Field::Other) => true,
                None => false,
            };
            plain
        })?;
        if !plain {
            return None;
        }
        let (from, to, call_id, cseq) = (from?, to?, call_id?, cseq?);
        if vias.is_empty() || call_id.is_empty() || has_tag(to) || !is_invite_cseq(cseq) {
            return None;
        }
        Some(NewInvite { vias, from, to, call_id, cseq })
    }

    /// The Call-ID, as received.
    pub fn call_id(&self) -> &'a [u8] {
        self.call_id
    }

    /// The From tag, if the caller sent one.
    pub fn from_tag(&self) -> Option<&'a [u8]> {
        tag_of(self.from)
    }

    /// The first Via field's value, as received.
    pub fn top_via(&self) -> &'a [u8] {
        self.vias.first().copied().unwrap_or_default()
    }

    /// A 503 for it, with `to_tag` added to To, `Retry-After`, and
    /// `Server` when `agent` is not empty; `oc`: RFC 7339 parameters for
    /// the top Via ([`crate::sip::oc`]). It is never longer than the
    /// request's header fields plus about two hundred bytes.
    pub fn refusal(&self, to_tag: &str, retry_after_s: u32, agent: &str, oc: Option<&str>) -> Vec<u8> {
        let mut out = Vec::with_capacity(320 + self.vias.iter().map(|v| v.len() + 8).sum::<usize>());
        out.extend_from_slice(b"SIP/2.0 503 Service Unavailable\r\n");
        for (i, v) in self.vias.iter().enumerate() {
            match (i, oc) {
                (0, Some(params)) => line(&mut out, b"Via", &super::oc::with_params_raw(v, params)),
                _ => line(&mut out, b"Via", v),
            }
        }
        line(&mut out, b"From", self.from);
        out.extend_from_slice(b"To: ");
        out.extend_from_slice(self.to);
        out.extend_from_slice(b";tag=");
        out.extend_from_slice(to_tag.as_bytes());
        out.extend_from_slice(b"\r\n");
        line(&mut out, b"Call-ID", self.call_id);
        line(&mut out, b"CSeq", self.cseq);
        line(&mut out, b"Retry-After", retry_after_s.to_string().as_bytes());
        if !agent.is_empty() {
            line(&mut out, b"Server", agent.as_bytes());
        }
        out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        out
    }
}

/// Whether `bytes` starts a call: an INVITE whose To has no tag. Reads no
/// further than the To line.
pub fn is_new_invite(bytes: &[u8]) -> bool {
    if !bytes.starts_with(b"INVITE ") {
        return false;
    }
    let mut new = false;
    let _ = each_field(bytes, |name, value| {
        if field_name(name) == Some(Field::To) {
            new = !has_tag(value);
            return false;
        }
        true
    });
    new
}

fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Via,
    From,
    To,
    CallId,
    CSeq,
    Other,
}

/// Full and compact names (RFC 3261 §7.3.3), any case. `None` for a name
/// that is not a token: such a message is the full parser's to judge.
fn field_name(name: &[u8]) -> Option<Field> {
    if name.is_empty() || !name.iter().all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(b)) {
        return None;
    }
    let is = |full: &[u8], compact: &[u8]| name.eq_ignore_ascii_case(full) || name.eq_ignore_ascii_case(compact);
    Some(if is(b"Via", b"v") {
        Field::Via
    } else if is(b"From", b"f") {
        Field::From
    } else if is(b"To", b"t") {
        Field::To
    } else if is(b"Call-ID", b"i") {
        Field::CallId
    } else if name.eq_ignore_ascii_case(b"CSeq") {
        Field::CSeq
    } else {
        Field::Other
    })
}

/// Calls `f` with each header field (name, trimmed value) up to the
/// empty line, while it returns true; `None` when a line is folded, has a
/// stray CR or a NUL, or has no colon, or the header never ends: the full
/// parser handles those.
fn each_field<'a>(bytes: &'a [u8], mut f: impl FnMut(&'a [u8], &'a [u8]) -> bool) -> Option<()> {
    let end = find(bytes, b"\r\n\r\n")?;
    let mut lines = bytes[..end].split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    lines.next()?; // the request line
    for l in lines {
        if l.first().is_some_and(|b| *b == b' ' || *b == b'\t') || l.contains(&b'\r') || l.contains(&0) {
            return None;
        }
        let colon = l.iter().position(|&b| b == b':')?;
        if !f(l[..colon].trim_ascii(), l[colon + 1..].trim_ascii()) {
            break;
        }
    }
    Some(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The header parameters of a From/To value: after the `>` that closes a
/// name-addr's URI (past a quoted display name, which may hold any
/// character), or after the URI of a bare addr-spec (where every `;`
/// starts a header parameter, RFC 3261 §20.10).
fn params(value: &[u8]) -> &[u8] {
    let mut i = 0;
    if value.first() == Some(&b'"') {
        i = 1;
        loop {
            match value.get(i) {
                None => return b"",
                Some(b'\\') => i += 2,
                Some(b'"') => break,
                Some(_) => i += 1,
            }
        }
    }
    let rest = &value[(i + 1).min(value.len())..];
    let rest = if i == 0 { value } else { rest };
    match rest.iter().position(|&b| b == b'<') {
        Some(lt) => match rest[lt..].iter().position(|&b| b == b'>') {
            Some(gt) => &rest[lt + gt + 1..],
            None => b"",
        },
        None => rest.iter().position(|&b| b == b';').map_or(&b""[..], |p| &rest[p..]),
    }
}

fn tag_of(value: &[u8]) -> Option<&[u8]> {
    params(value).split(|&b| b == b';').find_map(|p| {
        let eq = p.iter().position(|&b| b == b'=');
        let (name, v) = match eq {
            Some(e) => (p[..e].trim_ascii(), p[e + 1..].trim_ascii()),
            None => (p.trim_ascii(), &b""[..]),
        };
        (name.eq_ignore_ascii_case(b"tag") && !v.is_empty()).then_some(v)
    })
}

fn has_tag(value: &[u8]) -> bool {
    tag_of(value).is_some()
}

/// `<digits> INVITE`, as in a new call's CSeq.
fn is_invite_cseq(v: &[u8]) -> bool {
    let mut parts = v.split(|b| b.is_ascii_whitespace()).filter(|p| !p.is_empty());
    let seq_ok = parts.next().is_some_and(|n| !n.is_empty() && n.len() <= 10 && n.iter().all(u8::is_ascii_digit));
    seq_ok && parts.next() == Some(b"INVITE") && parts.next().is_none()
}

#[cfg(test)]
#[path = "overload_tests.rs"]
mod tests;
