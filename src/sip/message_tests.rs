use super::*;

#[test]
fn ipv6_sdp_invite_parses() {
    let raw = std::fs::read_to_string("/work/shared/testdata/sip-torture/rfc5118/ipv6-in-sdp").unwrap();
    let raw = raw.replace('\n', "\r\n");
    // Its Content-Length is 17 bytes too large (RFC 5118 data), so fix it up.
    let raw = raw.replace("Content-Length: 268", "Content-Length: 251");
    let SipMessage::Request(r) = parse(raw.as_bytes(), true).unwrap() else { panic!() };
    let sdp = crate::media::sdp::SessionDescription::parse(&String::from_utf8_lossy(&r.body));
    assert!(sdp.is_ok(), "{sdp:?} {:?}", String::from_utf8_lossy(&r.body));
}
