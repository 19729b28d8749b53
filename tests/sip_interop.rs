//! SIPp as a real peer, inside `unshare -n` (loopback only): calls into the
//! echo app with G.711 audio and RFC 4733 digits; digits are reported, BYE
//! is clean, SIPp counts no failed calls.

#[path = "sip/common.rs"]
mod common;

use common::*;

/// `BASE_CONFIG` on the standard port (SIPp dials 5060) with a wider RTP range.
fn interop_config() -> String {
    BASE_CONFIG.replace(":0\"", ":5060\"").replace("max = 30999", "max = 31999")
}

fn scenario(name: &str) -> String {
    format!("{}/tests/sip/scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn run_sipp_echo(transport_flag: &str, target: &str, media_ip: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("cfg.toml");
    std::fs::write(&cfg, interop_config()).expect("write config");
    let script = format!(
        r#"
cd {dir}
{bin} {cfg} echo > server.log 2>&1 &
SRV=$!
sleep 0.5
sipp {target} -sf {scn} -s 1000 -m 2 -l 2 -r 2 -t {transport_flag} -mi {media_ip} -nd \
  -timeout 40s -timeout_error -trace_stat -stf stat.csv > sipp.out 2>&1
RC=$?
sleep 0.5
kill $SRV
echo "SIPP_RC=$RC"
cat server.log
echo "--- sipp stats (last line) ---"
tail -1 stat.csv | tr ';' '\n' | grep -n "" | sed -n '1,200p' | grep -E "^(13|14|15|16|17|18):" || true
exit $RC
"#,
        dir = dir.path().display(),
        bin = interop_bin(),
        cfg = cfg.display(),
        scn = scenario("uac_echo.xml"),
    );
    let (ok, out) = run_isolated(&script, 90);
    println!("{out}");
    assert!(ok, "SIPp reported failed calls or the run failed:\n{out}");
    assert!(out.contains("SIPP_RC=0"), "{out}");
    for d in ['1', '5', '9'] {
        let n = out.matches(&format!("DTMF {d}")).count();
        assert_eq!(n, 2, "digit {d} should be reported once per call:\n{out}");
    }
    assert_eq!(out.matches("HANGUP Remote").count(), 2, "both calls end by the caller's BYE:\n{out}");
    // The echo app got audio: ~8 s of 20 ms frames per call.
    for line in out.lines().filter(|l| l.starts_with("HANGUP")) {
        let frames: u64 = line.rsplit("frames=").next().and_then(|f| f.trim().parse().ok()).unwrap_or(0);
        assert!(frames > 300, "too few audio frames: {line}");
    }
}

#[test]
fn sipp_calls_echo_over_udp_v4_with_audio_and_dtmf() {
    if !have("sipp", "sip-tester") {
        return;
    }
    run_sipp_echo("u1", "127.0.0.1:5060", "127.0.0.1");
}

#[test]
fn sipp_calls_echo_over_tcp_v6() {
    if !have("sipp", "sip-tester") {
        return;
    }
    run_sipp_echo("t1", "[::1]:5060", "::1");
}

/// Clinivox dials a number through a trunk that demands digest auth
/// (401 → retry with credentials), gets 180 then 200, exchanges RTP (SIPp
/// echoes it back) and hangs up with BYE.
#[test]
fn outbound_call_through_trunk_with_digest_auth() {
    if !have("sipp", "sip-tester") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("cfg.toml");
    std::fs::write(
        &cfg,
        r#"
listen = [{ transport = "udp", addr = "127.0.0.1:5060" }]
[rtp]
min = 32000
max = 32999
[[trunks]]
name = "carrier"
proxy = "127.0.0.1:5080"
username = "clinic"
password = "trunkpw"
caller_id = "15550100"
"#,
    )
    .expect("write config");
    let script = format!(
        r#"
cd {dir}
sipp -sf {scn} -i 127.0.0.1 -p 5080 -mi 127.0.0.1 -rtp_echo -m 1 -t u1 -nd \
  -timeout 30s -timeout_error > sipp.out 2>&1 &
SIPP=$!
sleep 0.5
{bin} {cfg} dial 5551234 2
wait $SIPP
RC=$?
echo "SIPP_RC=$RC"
exit $RC
"#,
        dir = dir.path().display(),
        bin = interop_bin(),
        cfg = cfg.display(),
        scn = scenario("uas_trunk_auth.xml"),
    );
    let (ok, out) = run_isolated(&script, 60);
    println!("{out}");
    assert!(ok && out.contains("SIPP_RC=0"), "SIPp trunk saw a failed call:\n{out}");
    assert!(out.contains("EVENT Progress(180)"), "{out}");
    assert!(out.contains("ANSWERED"), "{out}");
    let line = out.lines().find(|l| l.starts_with("HANGUP Local")).expect("we hung up");
    let frames: u64 = line.rsplit("frames=").next().and_then(|f| f.trim().parse().ok()).unwrap_or(0);
    assert!(frames > 50, "echoed audio came back: {line}");
}

/// Clinivox registers itself to a carrier known by a DNS name (no static
/// address at the clinic): the carrier challenges, checks the digest and
/// grants 4 s; the refresh comes before it runs out; then the carrier sends
/// a patient's call to the registered contact, and the echo app answers it.
#[test]
fn registers_to_a_carrier_by_name_refreshes_and_takes_its_calls() {
    if !have("sipp", "sip-tester") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("cfg.toml");
    std::fs::write(
        &cfg,
        r#"
listen = [{ transport = "udp", addr = "127.0.0.1:5060" }]
[rtp]
min = 33000
max = 33999
[[trunks]]
name = "carrier"
proxy = "sip.carrier.test:5080"
username = "clinic"
password = "trunkpw"
register = true
register_expires_s = 120
"#,
    )
    .expect("write config");
    let script = format!(
        r#"
cd {dir}
sipp -sf {scn} -i 127.0.0.1 -p 5080 -mi 127.0.0.1 -m 1 -t u1 -nd -timeout 30s -timeout_error > sipp.out 2>&1 &
SIPP=$!
sleep 0.3
{bin} {cfg} echo > server.log 2>&1 &
SRV=$!
wait $SIPP
RC=$?
sleep 0.3
kill $SRV
echo "SIPP_RC=$RC"
cat server.log
tail -20 sipp.out
exit $RC
"#,
        dir = dir.path().display(),
        bin = interop_bin(),
        cfg = cfg.display(),
        scn = scenario("uas_registrar.xml"),
    );
    let (ok, out) = run_isolated_with_hosts(&script, "127.0.0.1 sip.carrier.test\n", 60);
    println!("{out}");
    assert!(ok && out.contains("SIPP_RC=0"), "the carrier saw a failed registration or call:\n{out}");
    assert!(out.contains("INCOMING clinic from"), "the carrier's call reached the app:\n{out}");
    assert!(out.contains("HANGUP Remote"), "{out}");
}

/// Runs `sip-app <cfg> <app…>` against one SIPp instance in `unshare -n`;
/// returns (SIPp's exit status was 0, all output).
fn app_against_sipp(cfg_text: &str, sipp_args: &str, app: &str, sipp_first: bool) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("cfg.toml");
    std::fs::write(&cfg, cfg_text).expect("write config");
    let sipp = format!("sipp {sipp_args} -i 127.0.0.1 -mi 127.0.0.1 -m 1 -t u1 -nd -timeout 30s -timeout_error > sipp.out 2>&1");
    let app = format!("{} {} {app}", interop_bin(), cfg.display());
    let script = if sipp_first {
        format!(
            "cd {}\n{sipp} &\nSIPP=$!\nsleep 0.5\n{app}\nwait $SIPP\nRC=$?\necho \"SIPP_RC=$RC\"\ntail -12 sipp.out",
            dir.path().display()
        )
    } else {
        format!(
            "cd {}\n{app} > server.log 2>&1 &\nSRV=$!\nsleep 0.5\n{sipp}\nRC=$?\nsleep 0.3\nkill $SRV\necho \"SIPP_RC=$RC\"\ncat server.log\ntail -12 sipp.out",
            dir.path().display()
        )
    };
    let (_, out) = run_isolated(&script, 60);
    println!("{out}");
    (out.contains("SIPP_RC=0"), out)
}

const DIAL_CONFIG: &str = r#"
listen = [{ transport = "udp", addr = "127.0.0.1:5060" }]
[rtp]
min = 35000
max = 35999
[timers]
no_answer_s = 2
"#;

/// Outbound call to a busy phone: 486 is ACKed and reported to the app.
#[test]
fn outbound_call_to_a_busy_phone_ends_with_486() {
    if !have("sipp", "sip-tester") {
        return;
    }
    let (ok, out) =
        app_against_sipp(DIAL_CONFIG, &format!("-sf {} -p 5090", scenario("uas_busy.xml")), "dial sip:201@127.0.0.1:5090 2", true);
    assert!(ok, "SIPp saw the 486 ACKed:\n{out}");
    assert!(out.contains("HANGUP Sip(Rejected(486)) answered=false"), "{out}");
}

/// Outbound call nobody picks up: after `no_answer_s` we CANCEL (200, then
/// 487 ACKed) and the app hears NoAnswer.
#[test]
fn outbound_call_nobody_answers_is_cancelled() {
    if !have("sipp", "sip-tester") {
        return;
    }
    let (ok, out) =
        app_against_sipp(DIAL_CONFIG, &format!("-sf {} -p 5090", scenario("uas_no_answer.xml")), "dial sip:201@127.0.0.1:5090 2", true);
    assert!(ok, "SIPp got a CANCEL after the ringing:\n{out}");
    assert!(out.contains("EVENT Progress(180)"), "{out}");
    assert!(out.contains("HANGUP Sip(NoAnswer) answered=false"), "{out}");
}

/// The caller puts us on hold (re-INVITE a=sendonly) and resumes: our
/// answers are a=recvonly, then a=sendrecv (SIPp checks the bodies).
#[test]
fn caller_puts_the_call_on_hold_and_resumes() {
    if !have("sipp", "sip-tester") {
        return;
    }
    let (ok, out) = app_against_sipp(&interop_config(), &format!("127.0.0.1:5060 -sf {} -s 1000", scenario("uac_hold.xml")), "echo", false);
    assert!(ok, "hold and resume were answered as RFC 3264 expects:\n{out}");
    assert!(out.contains("HANGUP Remote"), "{out}");
}

/// Blind transfer: Clinivox answers, REFERs the caller to reception, reads
/// the NOTIFY progress (sipfrag 100, then 200) and leaves the call with BYE.
#[test]
fn caller_is_transferred_blind_by_refer_with_notify_progress() {
    if !have("sipp", "sip-tester") {
        return;
    }
    let (ok, out) = app_against_sipp(
        &interop_config(),
        &format!("127.0.0.1:5060 -sf {} -s 1000", scenario("uac_referred.xml")),
        "refer sip:reception@192.0.2.50",
        false,
    );
    assert!(ok, "SIPp saw REFER, its NOTIFYs answered, then our BYE:\n{out}");
    for line in ["TRANSFER 202", "TRANSFER 100", "TRANSFER 200", "HANGUP Local"] {
        assert!(out.contains(line), "{line} missing:\n{out}");
    }
}

/// Issue 14: SIP over TLS against Kamailio's TLS module (OpenSSL) as the
/// carrier. A call from SIPp crosses Kamailio to Clinivox's TLS listener
/// (Kamailio verifies our certificate against the test CA) and is echoed;
/// then a call into Clinivox is bridged out through the trunk over TLS
/// (Clinivox verifies Kamailio's certificate with the trunk's `tls_ca`) to
/// a SIPp phone behind Kamailio that echoes. Both calls are clean; the
/// relay logged both directions over TLS.
#[test]
fn calls_in_and_out_over_tls_through_kamailio() {
    if !have("sipp", "sip-tester") || !have("kamailio", "kamailio") {
        return;
    }
    if !std::path::Path::new("/usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so").exists()
        && !std::path::Path::new("/usr/lib/kamailio/modules/tls.so").exists()
    {
        eprintln!("SKIPPED: Kamailio's TLS module is missing. Install it with: apt-get install -y kamailio-tls-modules");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let ca = TestCa::new(d, "ca");
    let (cert, key, _) = tls_pair(d, "clinivox", &["127.0.0.1"], Some(&ca), false);
    let (kcert, kkey, _) = tls_pair(d, "kamailio", &["127.0.0.1"], Some(&ca), false);
    let tls_cfg = d.join("tls.cfg");
    std::fs::write(
        &tls_cfg,
        format!(
            "[server:default]\nmethod = TLSv1.2+\ncertificate = {kc}\nprivate_key = {kk}\n\n\
             [client:default]\nmethod = TLSv1.2+\nverify_certificate = yes\nrequire_certificate = yes\nca_list = {ca}\n",
            kc = kcert.display(),
            kk = kkey.display(),
            ca = ca.pem.display()
        ),
    )
    .expect("write tls.cfg");
    let kam_cfg = d.join("kamailio.cfg");
    let relay = std::fs::read_to_string(format!("{}/tests/sip/kamailio/tls_relay.cfg", env!("CARGO_MANIFEST_DIR"))).expect("relay cfg");
    std::fs::write(&kam_cfg, relay.replace("TLS_CFG", &tls_cfg.display().to_string())).expect("write kamailio.cfg");
    let cfg = d.join("cfg.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
listen = [{{ transport = "udp", addr = "127.0.0.1:5060" }}, {{ transport = "tls", addr = "127.0.0.1:5061" }}]
numbers = ["1000"]
nonce_secret = "test"
[rtp]
min = 36000
max = 36999
[tls]
cert = "{cert}"
key = "{key}"
[[trunks]]
name = "carrier"
proxy = "127.0.0.1:5081"
transport = "tls"
tls_ca = "{ca}"
cidrs = ["127.0.0.0/8"]
"#,
            cert = cert.display(),
            key = key.display(),
            ca = ca.pem.display()
        ),
    )
    .expect("write config");
    let uac = |to: &str, out: &str| {
        format!(
            "sipp {to} -sf {} -s 1000 -m 1 -i 127.0.0.1 -mi 127.0.0.1 -t u1 -nd -timeout 40s -timeout_error > {out} 2>&1",
            scenario("uac_echo.xml")
        )
    };
    let script = format!(
        "cd {dir}\nkamailio -DD -E -f {kam} > kamailio.log 2>&1 &\nKAM=$!\n\
         {bin} {cfg} echo > echo.log 2>&1 &\nSRV=$!\nsleep 1\n\
         {in_call}; echo \"INBOUND_RC=$?\"\nkill $SRV; wait $SRV 2>/dev/null\n\
         sipp -sf {desk} -p 5090 -i 127.0.0.1 -mi 127.0.0.1 -m 1 -t u1 -nd -rtp_echo -timeout 40s -timeout_error > desk.out 2>&1 &\nDESK=$!\n\
         {bin} {cfg} bridge 'sip:600@127.0.0.1:5081;transport=tls' > bridge.log 2>&1 &\nSRV=$!\nsleep 0.7\n\
         {out_call}; echo \"OUTBOUND_RC=$?\"\nwait $DESK; echo \"DESK_RC=$?\"\nkill $SRV $KAM\n\
         echo '--- echo ---'; cat echo.log; echo '--- bridge ---'; cat bridge.log; echo '--- desk ---'; tail -15 desk.out; echo '--- kamailio ---'; grep RELAY kamailio.log; tail -5 kamailio.log",
        dir = d.display(),
        kam = kam_cfg.display(),
        bin = interop_bin(),
        cfg = cfg.display(),
        in_call = uac("127.0.0.1:5080", "in.out"),
        desk = scenario("uas_desk.xml"),
        out_call = uac("127.0.0.1:5060", "out.out"),
    );
    let (_, out) = run_isolated(&script, 120);
    println!("{out}");
    assert!(out.contains("INBOUND_RC=0"), "SIPp → Kamailio → TLS → Clinivox echo failed:\n{out}");
    assert!(out.contains("RELAY from SIPp to Clinivox over TLS"), "{out}");
    assert!(
        out.contains("DTMF 5") && out.contains("HANGUP Remote call="),
        "the echo call got its digits and SIPp's BYE through Kamailio:\n{out}"
    );
    assert!(out.contains("BRIDGED"), "Clinivox reached the phone behind Kamailio over TLS:\n{out}");
    assert!(out.contains("RELAY from Clinivox over TLS to SIPp"), "{out}");
    assert!(out.contains("OUTBOUND_RC=0") && out.contains("DESK_RC=0"), "the bridged call was clean:\n{out}");
}

/// Issue 19: two Clinivox nodes behind Kamailio (`docker/kamailio/kamailio.cfg`,
/// dispatcher with OPTIONS probing). SIPp places 30 echo calls through it;
/// node 2 is killed with SIGKILL in the middle: the calls it carried are
/// lost, every other call completes (on node 1, or failed over to it when
/// node 2 was picked before the probes noticed). Node 2 restarts and takes
/// calls again.
#[test]
fn two_nodes_behind_kamailio_survive_one_being_killed() {
    if !have("sipp", "sip-tester") || !have("kamailio", "kamailio") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let ds = d.join("dispatcher.list");
    std::fs::write(&ds, "1 sip:127.0.0.1:5071\n1 sip:127.0.0.1:5072\n").expect("write dispatcher list");
    let shipped = std::fs::read_to_string(format!("{}/docker/kamailio/kamailio.cfg", env!("CARGO_MANIFEST_DIR"))).expect("kamailio.cfg");
    let kam = shipped
        .replace("\"/etc/kamailio/dispatcher.list\"", &format!("{:?}", ds.display().to_string()))
        .replace("\"0.0.0.0/32\"", "\"127.0.0.1/32\"");
    assert_ne!(kam, shipped, "the test's settings replaced the shipped defaults");
    std::fs::write(d.join("kamailio.cfg"), kam).expect("write kamailio.cfg");
    // The echo caller as a carrier behind a proxy calls: the 200's
    // Record-Route becomes the ACK's and BYE's route, its Contact their target.
    let echo = std::fs::read_to_string(scenario("uac_echo.xml")).expect("scenario");
    let proxied = echo
        .replace(r#"<recv response="200" rtd="true"/>"#, r#"<recv response="200" rtd="true" rrs="true"/>"#)
        .replace("ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n", "ACK [next_url] SIP/2.0\n[routes]\n")
        .replace("BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n", "BYE [next_url] SIP/2.0\n[routes]\n");
    assert_eq!(proxied.matches("[routes]").count(), 2, "the scenario changed: {proxied}");
    std::fs::write(d.join("uac_echo_proxied.xml"), proxied).expect("write scenario");
    for (n, rtp) in [(1, 32000), (2, 33000)] {
        let cfg = format!(
            "listen = [{{ transport = \"udp\", addr = \"127.0.0.1:507{n}\" }}]\nnumbers = [\"1000\"]\nnonce_secret = \"test\"\n\
             [rtp]\nmin = {rtp}\nmax = {}\n[[trunks]]\nname = \"kamailio\"\ncidrs = [\"127.0.0.1/32\"]\n",
            rtp + 999
        );
        std::fs::write(d.join(format!("node{n}.toml")), cfg).expect("write node config");
    }
    let script = format!(
        r#"
cd {dir}
mkdir -p run
kamailio -f kamailio.cfg -DD -E -Y run -l udp:127.0.0.1:5060 > kamailio.log 2>&1 &
{bin} node1.toml echo > node1.log 2>&1 &
NODE1=$!
{bin} node2.toml echo > node2.log 2>&1 &
NODE2=$!
sleep 2
sipp 127.0.0.1:5060 -sf uac_echo_proxied.xml -s 1000 -p 5090 -m 30 -r 2 -l 30 -t u1 -mi 127.0.0.1 -nd \
  -timeout 60s -trace_stat -stf stat.csv > sipp.out 2>&1 &
SIPP=$!
sleep 5
kill -9 $NODE2
echo KILLED
sleep 6
{bin} node2.toml echo > node2b.log 2>&1 &
NODE2B=$!
echo RESTARTED
wait $SIPP
echo "SIPP_RC=$?"
kill $NODE1 $NODE2B; sleep 0.5
echo "--- sipp ---"; tail -1 stat.csv | tr ';' '\n' | sed -n '13,18p'
echo "--- kamailio ---"; grep -E "DISPATCH|ERROR" kamailio.log | tail -60
for f in node1 node2 node2b; do echo "--- $f ---"; grep -cE "^INCOMING" $f.log; grep -E "^(INCOMING|HANGUP)" $f.log | tail -40; done
"#,
        dir = d.display(),
        bin = interop_bin(),
    );
    let (_, out) = run_isolated(&script, 150);
    println!("{out}");
    let count = |name: &str| -> usize {
        let section = out.split(&format!("--- {name} ---\n")).nth(1).unwrap_or("");
        section.lines().next().and_then(|l| l.trim().parse().ok()).unwrap_or(0)
    };
    let (n1, n2, n2b) = (count("node1"), count("node2"), count("node2b"));
    let node2 = out.split("--- node2 ---\n").nth(1).unwrap_or("");
    let node2 = node2.split("--- node2b ---").next().unwrap_or("");
    let ended_on_2 = node2.lines().filter(|l| l.starts_with("HANGUP")).count();
    let lost = n2 - ended_on_2;
    let stats = out.split("--- sipp ---\n").nth(1).unwrap_or("");
    let stat = |i: usize| -> u64 { stats.lines().nth(i).and_then(|l| l.trim().parse().ok()).unwrap_or(u64::MAX) };
    // stat.csv fields 13–18: TotalCallCreated, CurrentCall, SuccessfulCall(P), (C), FailedCall(P), (C).
    let (succeeded, failed) = (stat(3), stat(5));
    println!("node 1: {n1} calls; node 2: {n2} ({lost} lost when killed); node 2 again: {n2b}; SIPp: {succeeded} ok, {failed} failed");
    assert!(n1 > 0 && n2 > 0, "both nodes took calls before the kill:\n{out}");
    assert!(lost > 0, "node 2 was killed with calls in progress:\n{out}");
    assert_eq!(failed as usize, lost, "only the calls node 2 carried were lost:\n{out}");
    assert_eq!(succeeded as usize + lost, 30, "every other call completed:\n{out}");
    assert!(n2b > 0, "node 2 took calls again after its restart:\n{out}");
}
