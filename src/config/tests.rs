use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn the_demo_clinic_is_valid_and_complete() {
    let c = from_toml(DEMO_TOML, "demo", env(&[])).unwrap();
    assert_eq!(c.clinic.timezone, chrono_tz::Europe::Madrid);
    assert_eq!(c.clinic.languages[0], "es");
    assert_eq!(c.clinic.emergency_number, "112");
    assert!(c.specialties.len() >= 6 && c.providers.len() >= 8);
    assert!(c.providers.iter().all(|p| p.schedule.0.iter().any(|d| !d.is_empty())));
    assert_eq!(c.api.tokens.len(), 2);
}

#[test]
fn validation_reports_every_problem_at_once_with_its_key() {
    let text = r#"
        [clinic]
        name = ""
        address = "Calle Mayor 1"
        phone = "911234567"
        timezone = "Europe/Atlantis"
        languages = ["es", "fr"]
        holidays = ["2026-13-01"]
        opening_hours = { monday = ["09:00-14:00", "13:00-15:00"], funday = ["10:00-11:00"] }
        next_weekday = "the one after"

        [[specialties]]
        id = "general"
        names.es = ["medicina general"]

        [[providers]]
        id = "Dr Who"
        name = "Dr. Who"
        specialty = "time-travel"
        slot_minutes = 2
        schedule = { tuesday = ["14:00-09:00"] }

        [api]
        tokens = [{ name = "x", hash = "plain-text", scope = "admin" }]

        [http]
        listen = "everywhere"

        [calendar]
        key = "short"
        days_ahead = 0
    "#;
    let Err(ConfigError::Invalid(errors)) = from_toml(text, "t", env(&[])) else { panic!("expected validation errors") };
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    for expected in [
        "clinic.name",
        "clinic.phone",
        "clinic.timezone",
        "clinic.languages[1]",
        "clinic.holidays[0]",
        "clinic.opening_hours.monday",
        "clinic.opening_hours.funday",
        "clinic.next_weekday",
        "providers[0].id",
        "providers[0].specialty",
        "providers[0].slot_minutes",
        "providers[0].schedule.tuesday[0]",
        "api.tokens[0].hash",
        "api.tokens[0].scope",
        "http.listen",
        "calendar.key",
        "calendar.days_ahead",
    ] {
        assert!(keys.contains(&expected), "no error for {expected}; got {keys:?}");
    }
    let shown = ConfigError::Invalid(errors).to_string();
    assert!(shown.contains("clinic.timezone: \"Europe/Atlantis\" is not an IANA time zone"), "{shown}");
}

#[test]
fn unknown_keys_and_bad_toml_are_errors_not_ignored() {
    let e = from_toml(&format!("{DEMO_TOML}\n[clinic2]\nname = 1\n"), "t", env(&[])).unwrap_err();
    assert!(e.to_string().contains("clinic2"), "{e}");
    let e = from_toml("[clinic\nname=", "bad.toml", env(&[])).unwrap_err();
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
}

#[test]
fn environment_overrides_nested_keys() {
    let c = from_toml(
        DEMO_TOML,
        "demo",
        env(&[
            ("CLINIVOX_DATABASE__URL", "postgres://clinic@127.0.0.1/clinic"),
            ("CLINIVOX_HTTP__LISTEN", "0.0.0.0:9000"),
            ("CLINIVOX_HTTP__ALLOW_PLAIN", "true"),
            ("CLINIVOX_CLINIC__PHONE", "+34930000000"),
            ("CLINIVOX_STORE__HOLD_SECONDS", "240"),
            ("CLINIVOX_CONFIG", "ignored.toml"),
            ("OTHER__THING", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(c.database.url, "postgres://clinic@127.0.0.1/clinic");
    assert_eq!(c.http.listen.port(), 9000);
    assert_eq!(c.clinic.phone, "+34930000000");
    assert_eq!(c.store.hold_seconds, 240);
    let e = from_toml(DEMO_TOML, "demo", env(&[("CLINIVOX_STORE__HOLD_SECONDS", "forever")])).unwrap_err();
    assert!(e.to_string().contains("store.hold_seconds"), "{e}");
}

#[test]
fn a_missing_default_file_means_the_demo_but_a_missing_named_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = std::env::current_dir().unwrap();
    let demo = load(Path::new(DEFAULT_PATH), env(&[]));
    // Only meaningful when the working directory has no clinivox.toml.
    if !cwd.join(DEFAULT_PATH).exists() {
        assert!(demo.unwrap().demo);
    }
    let e = load(&dir.path().join("nope.toml"), env(&[])).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }), "{e}");
}

#[test]
fn token_hashes_match_configuration_form() {
    assert_eq!(hash_token("demo-write-token"), "sha256:66b40fcb785655ba6e7c7b70a15aac4be7fa7ccac1dcf85b534c19104e332624");
}

#[test]
fn the_assistant_app_needs_speech() {
    let c = from_toml(DEMO_TOML, "demo", env(&[("CLINIVOX_CALLS__APP", "assistant")])).unwrap();
    assert_eq!(c.calls_app, CallsApp::Assistant);
    // The demo without its [speech] section.
    let (before, after) = DEMO_TOML.split_once("\n[speech]\n").expect("the demo has [speech]");
    let rest = after.find("\n[").map(|i| &after[i..]).unwrap_or("");
    let text = format!("{before}\n{rest}");
    let Err(ConfigError::Invalid(errors)) = from_toml(&text, "t", env(&[("CLINIVOX_CALLS__APP", "assistant")])) else {
        panic!("an assistant without [speech] must be refused")
    };
    assert!(errors.iter().any(|e| e.key == "calls.app" && e.message.contains("[speech]")), "{errors:?}");
    let Err(ConfigError::Invalid(errors)) = from_toml(DEMO_TOML, "t", env(&[("CLINIVOX_CALLS__APP", "robot")])) else { panic!() };
    assert!(errors.iter().any(|e| e.key == "calls.app" && e.message.contains("assistant")), "{errors:?}");
}

#[test]
fn ring_groups_from_config_and_reception_by_default() {
    use crate::conversation::TransferGroup;
    let c = from_toml(DEMO_TOML, "demo", env(&[])).unwrap();
    let reception = c.group(TransferGroup::Reception).expect("the demo has reception");
    assert_eq!(reception.members, [GroupMember::Extension("201".into()), GroupMember::Extension("202".into())]);
    assert_eq!((reception.strategy, reception.ring_timeout.as_secs()), (RingStrategy::All, 20));
    assert!(c.group(TransferGroup::Emergency).is_none());

    // No [[groups]]: reception is every staff extension, at once.
    let text =
        DEMO_TOML.replace("[[groups]]\nname = \"reception\"\nmembers = [\"201\", \"202\"]\nstrategy = \"all\"\nring_timeout_s = 20\n", "");
    assert_ne!(text, DEMO_TOML);
    let c = from_toml(&text, "t", env(&[])).unwrap();
    let reception = c.group(TransferGroup::Reception).unwrap();
    assert_eq!(reception.members.len(), 2);
    assert_eq!(reception.strategy, RingStrategy::All);

    let text = format!(
        "{DEMO_TOML}\n[[groups]]\nname = \"emergency\"\nmembers = [\"202\", \"sip:nurse@pbx.clinic\"]\nstrategy = \"order\"\nring_timeout_s = 10\n"
    );
    let c = from_toml(&text, "t", env(&[])).unwrap();
    let emergency = c.group(TransferGroup::Emergency).unwrap();
    assert_eq!(emergency.members, [GroupMember::Extension("202".into()), GroupMember::Uri("sip:nurse@pbx.clinic".into())]);
    assert_eq!((emergency.strategy, emergency.ring_timeout.as_secs()), (RingStrategy::Order, 10));
}

#[test]
fn bad_ring_groups_name_their_keys() {
    let text = format!(
        "{DEMO_TOML}\n[[groups]]\nname = \"reception\"\nmembers = [\"203\", \"sip:no host\"]\nstrategy = \"random\"\nring_timeout_s = 1\n\n[[groups]]\nname = \"Night Shift\"\nmembers = []\n"
    );
    let Err(ConfigError::Invalid(errors)) = from_toml(&text, "t", env(&[])) else { panic!("expected validation errors") };
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    for expected in [
        "groups[1].name",
        "groups[1].members[0]",
        "groups[1].members[1]",
        "groups[1].strategy",
        "groups[1].ring_timeout_s",
        "groups[2].name",
        "groups[2].members",
    ] {
        assert!(keys.contains(&expected), "no error for {expected}; got {errors:?}");
    }
    assert!(errors.iter().any(|e| e.key == "groups[1].name" && e.message.contains("twice")), "{errors:?}");
    assert!(errors.iter().any(|e| e.key == "groups[1].members[0]" && e.message.contains("[[staff]]")), "{errors:?}");
}

#[test]
fn a_group_can_be_reached_by_refer() {
    use crate::conversation::TransferGroup;
    let refer = "[[groups]]\nname = \"reception\"\ntransfer = \"refer\"\nrefer_to = \"sip:reception@pbx.clinic\"\n";
    let text = DEMO_TOML
        .replace("[[groups]]\nname = \"reception\"\nmembers = [\"201\", \"202\"]\nstrategy = \"all\"\nring_timeout_s = 20\n", refer);
    assert_ne!(text, DEMO_TOML);
    let c = from_toml(&text, "t", env(&[])).unwrap();
    let reception = c.group(TransferGroup::Reception).unwrap();
    assert_eq!(reception.transfer, GroupTransfer::Refer("sip:reception@pbx.clinic".into()));
    assert!(reception.members.is_empty());
    // The default is a bridged transfer.
    let c = from_toml(DEMO_TOML, "demo", env(&[])).unwrap();
    assert_eq!(c.group(TransferGroup::Reception).unwrap().transfer, GroupTransfer::Bridge);
}

#[test]
fn bad_refer_groups_name_their_keys() {
    let groups = [
        // refer without a target, and with members it would never ring
        "[[groups]]\nname = \"a\"\nmembers = [\"201\"]\ntransfer = \"refer\"\n",
        // a target that is no SIP URI
        "[[groups]]\nname = \"b\"\ntransfer = \"refer\"\nrefer_to = \"reception desk\"\n",
        // a target on a bridged group
        "[[groups]]\nname = \"c\"\nmembers = [\"201\"]\nrefer_to = \"sip:desk@pbx.clinic\"\n",
        // an unknown way
        "[[groups]]\nname = \"d\"\nmembers = [\"201\"]\ntransfer = \"teleport\"\n",
    ];
    let text = format!("{DEMO_TOML}\n{}", groups.join("\n"));
    let Err(ConfigError::Invalid(errors)) = from_toml(&text, "t", env(&[])) else { panic!("expected validation errors") };
    let found = |key: &str, words: &str| errors.iter().any(|e| e.key == key && e.message.contains(words));
    assert!(found("groups[1].refer_to", "required"), "{errors:?}");
    assert!(found("groups[1].members", "not rung"), "{errors:?}");
    assert!(found("groups[2].refer_to", "not a SIP URI"), "{errors:?}");
    assert!(found("groups[3].refer_to", "only used with transfer = \"refer\""), "{errors:?}");
    assert!(found("groups[4].transfer", "\"bridge\" or \"refer\""), "{errors:?}");
    // A refer group with a bad target is one error, not also "needs members".
    assert!(!errors.iter().any(|e| e.key == "groups[2].members"), "{errors:?}");
    assert_eq!(errors.len(), 5, "{errors:?}");
}

#[test]
fn call_recording_is_off_by_default_and_only_for_the_assistant() {
    let c = from_toml(DEMO_TOML, "demo", env(&[])).unwrap();
    assert!(!c.calls.record_audio);
    assert_eq!(c.calls.recordings_dir, std::path::PathBuf::from("recordings"));
    let on = env(&[("CLINIVOX_CALLS__RECORD_AUDIO", "true"), ("CLINIVOX_CALLS__RECORDINGS_DIR", "/var/lib/clinivox/rec")]);
    let c = from_toml(DEMO_TOML, "demo", on).unwrap();
    assert!(c.calls.record_audio);
    assert_eq!(c.calls.recordings_dir, std::path::PathBuf::from("/var/lib/clinivox/rec"));
    let echo = env(&[("CLINIVOX_CALLS__RECORD_AUDIO", "true"), ("CLINIVOX_CALLS__APP", "echo"), ("CLINIVOX_CALLS__RECORDINGS_DIR", " ")]);
    let Err(ConfigError::Invalid(errors)) = from_toml(DEMO_TOML, "t", echo) else { panic!("expected validation errors") };
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["calls.record_audio", "calls.recordings_dir"]);
}

#[test]
fn call_admission_limits() {
    let c = from_toml(DEMO_TOML, "demo", env(&[])).unwrap();
    assert_eq!(c.calls.max_active, validate::default_max_active());
    assert!(c.calls.max_active >= 2);
    assert_eq!(c.calls.max_recognition_queue, 16);
    let c = from_toml(DEMO_TOML, "demo", env(&[("CLINIVOX_CALLS__MAX_ACTIVE", "3")])).unwrap();
    assert_eq!(c.calls.max_active, 3);
    let Err(ConfigError::Invalid(errors)) =
        from_toml(DEMO_TOML, "t", env(&[("CLINIVOX_CALLS__MAX_ACTIVE", "0"), ("CLINIVOX_CALLS__MAX_RECOGNITION_QUEUE", "-1")]))
    else {
        panic!("expected validation errors")
    };
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["calls.max_active", "calls.max_recognition_queue"]);
}

#[test]
fn each_node_has_an_id_its_host_name_by_default() {
    let c = from_toml(DEMO_TOML, "demo", env(&[])).unwrap();
    assert_eq!(c.node, NodeConfig::from_host());
    assert!(NodeConfig::valid_id(&c.node.id), "{:?}", c.node.id);
    let c = from_toml(DEMO_TOML, "demo", env(&[("CLINIVOX_NODE__ID", "node-b.madrid_2")])).unwrap();
    assert_eq!(c.node.id, "node-b.madrid_2");
    // It goes into Prometheus labels and lease owners unescaped.
    for bad in ["", "a b", "x\"}", &"n".repeat(65)] {
        let Err(ConfigError::Invalid(errors)) = from_toml(DEMO_TOML, "t", env(&[("CLINIVOX_NODE__ID", bad)])) else {
            panic!("{bad:?} accepted")
        };
        assert_eq!(errors.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), ["node.id"], "{bad:?}");
    }
}

#[test]
fn a_clinics_configuration_with_the_demos_credentials_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clinivox.toml");
    // Copied as the README says, and only the clinic's name changed.
    std::fs::write(&path, DEMO_TOML.replace("Clínica San Rafael", "Clínica Nueva")).unwrap();
    let Err(ConfigError::Invalid(errors)) = load(&path, env(&[])) else { panic!("the demo's credentials must be refused") };
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert!(keys.iter().filter(|k| k.starts_with("api.tokens")).count() == 2, "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("staff (201)")) && keys.iter().any(|k| k.starts_with("staff (202)")), "{keys:?}");
    assert!(errors.iter().all(|e| e.message.contains("demo")), "{errors:?}");

    // With tokens and passwords of its own, it loads.
    let own = DEMO_TOML
        .replace(&hash_token("demo-read-token"), &hash_token("a-read-token-of-the-clinics-own"))
        .replace(&hash_token("demo-write-token"), &hash_token("a-write-token-of-the-clinics-own"))
        .replace("demo-201-secret", "correct-horse-201")
        .replace("demo-202-secret", "battery-staple-202");
    std::fs::write(&path, own).unwrap();
    let c = load(&path, env(&[])).expect("a configuration with its own credentials loads");
    assert!(!c.demo);
}

#[test]
fn the_demo_clinic_stays_on_loopback_unless_told_otherwise() {
    let cwd_relative_default = Path::new(DEFAULT_PATH);
    // The default path is relative to the working directory: only run the
    // demo branch when no clinivox.toml sits there.
    if cwd_relative_default.exists() {
        return;
    }
    let c = load(cwd_relative_default, env(&[])).expect("the demo on loopback loads");
    assert!(c.demo);
    let public = [("CLINIVOX_HTTP__LISTEN", "0.0.0.0:8080"), ("CLINIVOX_HTTP__ALLOW_PLAIN", "true")];
    let Err(ConfigError::Invalid(errors)) = load(cwd_relative_default, env(&public)) else { panic!("a public demo must be refused") };
    assert_eq!(errors.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), ["http.listen"]);
    assert!(errors[0].message.contains("CLINIVOX_DEMO_PUBLIC=1"), "{errors:?}");
    let told = [("CLINIVOX_HTTP__LISTEN", "0.0.0.0:8080"), ("CLINIVOX_HTTP__ALLOW_PLAIN", "true"), ("CLINIVOX_DEMO_PUBLIC", "1")];
    assert!(load(cwd_relative_default, env(&told)).is_ok());
}

/// Issue 14: the API off loopback is HTTPS, or plain only when the
/// configuration says a TLS proxy fronts it; the certificate and key go
/// together; check-config names what is wrong with each certificate.
#[test]
fn plain_http_off_loopback_needs_tls_or_an_explicit_proxy() {
    let errors = |vars: &[(&str, &str)]| match from_toml(DEMO_TOML, "demo", env(vars)) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid(errors)) => errors.into_iter().map(|e| format!("{}: {}", e.key, e.message)).collect(),
        Err(e) => vec![e.to_string()],
    };
    let public = errors(&[("CLINIVOX_HTTP__LISTEN", "0.0.0.0:9000")]);
    assert!(public.iter().any(|e| e.starts_with("http.listen") && e.contains("tls_cert")), "{public:?}");
    assert!(errors(&[("CLINIVOX_HTTP__LISTEN", "127.0.0.1:9000")]).is_empty());
    assert!(errors(&[("CLINIVOX_HTTP__LISTEN", "[::1]:9000")]).is_empty());
    let half = errors(&[("CLINIVOX_HTTP__TLS_CERT", "/etc/clinivox/cert.pem")]);
    assert!(half.iter().any(|e| e.starts_with("http.tls_key")), "{half:?}");

    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["clinic.example".to_string()]).unwrap().self_signed(&key).unwrap();
    std::fs::write(dir.path().join("c.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("k.pem"), key.serialize_pem()).unwrap();
    let c = dir.path().join("c.pem").display().to_string();
    let k = dir.path().join("k.pem").display().to_string();
    let https =
        [("CLINIVOX_HTTP__LISTEN", "0.0.0.0:9443"), ("CLINIVOX_HTTP__TLS_CERT", c.as_str()), ("CLINIVOX_HTTP__TLS_KEY", k.as_str())];
    let cfg = from_toml(DEMO_TOML, "demo", env(&https)).expect("HTTPS on a public address is fine");
    let checks = super::certs::check_certificates(&cfg, std::time::SystemTime::now());
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert!(checks[0].line().starts_with("http.tls_cert: OK"), "{}", checks[0].line());
    // The key of another certificate: named as such.
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.path().join("k.pem"), other.serialize_pem()).unwrap();
    let checks = super::certs::check_certificates(&cfg, std::time::SystemTime::now());
    assert!(checks[0].line().contains("ERROR") && checks[0].line().contains("does not belong"), "{}", checks[0].line());
    std::fs::remove_file(dir.path().join("c.pem")).unwrap();
    let checks = super::certs::check_certificates(&cfg, std::time::SystemTime::now());
    assert!(checks[0].line().contains("ERROR cannot read"), "{}", checks[0].line());
}

#[test]
fn short_staff_passwords_are_errors_named_by_their_staff_key() {
    let text = DEMO_TOML
        .replace("password = \"demo-201-secret\"", "password = \"1234\"")
        .replace("password = \"demo-202-secret\"", "ha1_sha256 = \"not-hex\"");
    let Err(ConfigError::Invalid(errors)) = from_toml(&text, "t", env(&[])) else { panic!("expected validation errors") };
    assert!(errors.iter().any(|e| e.key == "staff[0].password" && e.message.contains("12")), "{errors:?}");
    assert!(errors.iter().any(|e| e.key == "staff[1].ha1_sha256"), "{errors:?}");
    // The demo offers MD5 too: an HA1-only extension needs its MD5 HA1.
    assert!(errors.iter().any(|e| e.key == "staff[1].ha1_md5"), "{errors:?}");
}

#[test]
fn the_identity_lockout_is_configurable_within_bounds() {
    let c = from_toml(DEMO_TOML, "demo", env(&[])).unwrap();
    assert_eq!(c.verification, Verification { max_failures: 3, window: chrono::Duration::hours(24) });
    assert_eq!(c.retention.identity_failures, chrono::Duration::hours(24), "failures are kept as long as they count");
    let text = format!("{DEMO_TOML}\n[privacy]\nverify_max_failures = 5\nverify_window_hours = 48\n");
    let c = from_toml(&text, "t", env(&[])).unwrap();
    assert_eq!(c.verification, Verification { max_failures: 5, window: chrono::Duration::hours(48) });
    assert_eq!(c.retention.identity_failures, chrono::Duration::hours(48));
    let text = format!("{DEMO_TOML}\n[privacy]\nverify_max_failures = 0\nverify_window_hours = 0\n");
    let ConfigError::Invalid(errors) = from_toml(&text, "t", env(&[])).unwrap_err() else { panic!("invalid expected") };
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["privacy.verify_max_failures", "privacy.verify_window_hours"]);
}
