//! Stage two: [`RawConfig`] → [`Config`], collecting every error with its key.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{NaiveDate, NaiveTime};

use super::raw::*;
use super::*;

const WEEKDAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
pub const LANGUAGES: [&str; 4] = ["es", "en", "it", "pt"];

struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { key: key.into(), message: message.into() });
    }
    fn required<T: Clone>(&mut self, key: &str, v: &Option<T>) -> Option<T> {
        if v.is_none() {
            self.push(key, "is required");
        }
        v.clone()
    }
}

pub fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let mut e = Errors(Vec::new());
    let node = match &raw.node.id {
        Some(id) if !NodeConfig::valid_id(id) => {
            e.push("node.id", format!("{id:?} must be 1 to 64 letters, digits, '.', '_' or '-'"));
            NodeConfig::from_host()
        }
        Some(id) => NodeConfig { id: id.clone() },
        None => NodeConfig::from_host(),
    };

    let c = &raw.clinic;
    let name = non_empty(&mut e, "clinic.name", &c.name);
    let address = non_empty(&mut e, "clinic.address", &c.address);
    let phone = match e.required("clinic.phone", &c.phone) {
        Some(p) if crate::phone::E164::parse(&p).is_err() => {
            e.push("clinic.phone", format!("{p:?} is not an E.164 number like +34911234567"));
            None
        }
        p => p,
    };
    let timezone = match e.required("clinic.timezone", &c.timezone) {
        Some(tz) => match tz.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                e.push("clinic.timezone", format!("{tz:?} is not an IANA time zone like Europe/Madrid"));
                None
            }
        },
        None => None,
    };
    let languages = c.languages.clone().unwrap_or_else(|| vec!["es".into()]);
    if languages.is_empty() {
        e.push("clinic.languages", "needs at least one language");
    }
    for (i, l) in languages.iter().enumerate() {
        if !LANGUAGES.contains(&l.as_str()) {
            e.push(format!("clinic.languages[{i}]"), format!("{l:?} is not supported (one of {LANGUAGES:?})"));
        }
    }
    let emergency_number = c.emergency_number.clone().unwrap_or_else(|| "112".into());
    if emergency_number.is_empty() || !emergency_number.chars().all(|ch| ch.is_ascii_digit()) {
        e.push("clinic.emergency_number", "must be digits, like 112");
    }
    let opening_hours = weekly(&mut e, "clinic.opening_hours", &c.opening_hours);
    let next_weekday_following_week = match c.next_weekday.as_deref() {
        None | Some("coming") => false,
        Some("following_week") => true,
        Some(other) => {
            e.push("clinic.next_weekday", format!("{other:?} is not \"coming\" or \"following_week\""));
            false
        }
    };
    let mut holidays = BTreeSet::new();
    for (i, h) in c.holidays.iter().enumerate() {
        match NaiveDate::parse_from_str(h, "%Y-%m-%d") {
            Ok(d) => {
                holidays.insert(d);
            }
            Err(_) => e.push(format!("clinic.holidays[{i}]"), format!("{h:?} is not a date like 2026-12-25")),
        }
    }

    let mut specialties = Vec::new();
    let mut specialty_ids = BTreeSet::new();
    for (i, s) in raw.specialties.iter().enumerate() {
        let key = format!("specialties[{i}]");
        let Some(id) = ident(&mut e, &format!("{key}.id"), &s.id) else {
            continue;
        };
        if !specialty_ids.insert(id.clone()) {
            e.push(format!("{key}.id"), format!("{id:?} is defined twice"));
        }
        for l in &languages {
            if s.names.get(l).is_none_or(|n| n.is_empty()) {
                e.push(format!("{key}.names.{l}"), format!("needs at least one spoken name in {l:?}"));
            }
        }
        specialties.push(Specialty { id, names: s.names.clone() });
    }

    let mut providers = Vec::new();
    let mut provider_ids = BTreeSet::new();
    for (i, p) in raw.providers.iter().enumerate() {
        let key = format!("providers[{i}]");
        let id = ident(&mut e, &format!("{key}.id"), &p.id);
        if let Some(id) = &id {
            if !provider_ids.insert(id.clone()) {
                e.push(format!("{key}.id"), format!("{id:?} is defined twice"));
            }
        }
        let name = non_empty(&mut e, &format!("{key}.name"), &p.name);
        let specialty = e.required(&format!("{key}.specialty"), &p.specialty);
        if let Some(s) = &specialty {
            if !specialty_ids.contains(s) {
                e.push(format!("{key}.specialty"), format!("{s:?} is not one of the configured specialties"));
            }
        }
        let slot_minutes = p.slot_minutes.unwrap_or(20);
        if !(5..=240).contains(&slot_minutes) {
            e.push(format!("{key}.slot_minutes"), "must be between 5 and 240");
        }
        let schedule = weekly(&mut e, &format!("{key}.schedule"), &p.schedule);
        if let (Some(id), Some(name), Some(specialty)) = (id, name, specialty) {
            providers.push(Provider { id, name, specialty, slot_minutes, schedule });
        }
    }

    let mut staff = Vec::new();
    for (i, x) in raw.staff.iter().enumerate() {
        let key = format!("staff[{i}]");
        let extension = e.required(&format!("{key}.extension"), &x.extension);
        if let Some(ext) = &extension {
            if ext.is_empty() || !ext.chars().all(|c| c.is_ascii_digit()) {
                e.push(format!("{key}.extension"), "must be digits, like 201");
            }
        }
        if x.uri.is_none() && x.password.is_none() && x.ha1_sha256.is_none() && x.ha1_md5.is_none() {
            e.push(key.clone(), "needs a password (to register) or a static uri");
        }
        if let Some(uri) = &x.uri {
            if !uri.starts_with("sip:") && !uri.starts_with("sips:") {
                e.push(format!("{key}.uri"), format!("{uri:?} is not a sip: URI"));
            }
        }
        if let Some(extension) = extension {
            let name = x.name.clone().unwrap_or_else(|| extension.clone());
            staff.push(Extension {
                extension,
                name,
                uri: x.uri.clone(),
                password: x.password.clone(),
                ha1_sha256: x.ha1_sha256.clone(),
                ha1_md5: x.ha1_md5.clone(),
                srtp: x.srtp.unwrap_or_default(),
                nat: x.nat.unwrap_or(false),
            });
        }
    }

    let groups = groups(&mut e, &raw.groups, &staff);

    let url = raw.database.url.clone().unwrap_or_else(|| "sqlite://clinivox.db".into());
    if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        e.push("database.url", format!("{url:?} must start with sqlite: or postgres://"));
    }
    let max_connections = raw.database.max_connections.unwrap_or(8);
    if max_connections == 0 {
        e.push("database.max_connections", "must be at least 1");
    }
    let listen_text = raw.http.listen.clone().unwrap_or_else(|| "127.0.0.1:8080".into());
    let listen =
        listen_text.parse().map_err(|_| e.push("http.listen", format!("{listen_text:?} is not an address like 127.0.0.1:8080"))).ok();
    let mut seconds = |key: &str, value: Option<u64>, default: u64| {
        let s = value.unwrap_or(default);
        if !(1..=3600).contains(&s) {
            e.push(key, "must be between 1 and 3600 seconds");
        }
        std::time::Duration::from_secs(s)
    };
    let header_read_timeout = seconds("http.header_read_timeout_s", raw.http.header_read_timeout_s, 10);
    let request_timeout = seconds("http.request_timeout_s", raw.http.request_timeout_s, 30);
    // Well under the usual 1024 open files, leaving room for SIP, RTP and the database.
    let http_connections = raw.http.max_connections.unwrap_or(256);
    if !(1..=100_000).contains(&http_connections) {
        e.push("http.max_connections", "must be between 1 and 100000");
    }

    let tls = match (&raw.http.tls_cert, &raw.http.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::TlsFiles { cert: cert.clone(), key: key.clone() }),
        (None, None) => None,
        _ => {
            e.push("http.tls_key", "tls_cert and tls_key go together");
            None
        }
    };
    if let Some(l) = listen {
        let l: std::net::SocketAddr = l;
        if tls.is_none() && !l.ip().is_loopback() && !raw.http.allow_plain.unwrap_or(false) && raw.http.tls_cert.is_none() {
            e.push(
                "http.listen",
                format!("{l} is reachable from the network: set tls_cert and tls_key (HTTPS), or allow_plain = true when a TLS proxy on this host fronts it; API tokens and patients' data must not cross the network in clear"),
            );
        }
    }

    let mut tokens = Vec::new();
    for (i, t) in raw.api.tokens.iter().enumerate() {
        let key = format!("api.tokens[{i}]");
        let name = non_empty(&mut e, &format!("{key}.name"), &t.name);
        let sha256 = match e.required(&format!("{key}.hash"), &t.hash) {
            Some(h) => parse_hash(&h).or_else(|| {
                e.push(format!("{key}.hash"), "must be \"sha256:\" and 64 hex digits (see `clinivox token hash`)");
                None
            }),
            None => None,
        };
        let scope = match t.scope.as_deref().unwrap_or("read") {
            "metrics" => Some(Scope::Metrics),
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            other => {
                e.push(format!("{key}.scope"), format!("{other:?} is not \"read\", \"write\" or \"metrics\""));
                None
            }
        };
        if let (Some(name), Some(sha256), Some(scope)) = (name, sha256, scope) {
            tokens.push(ApiToken { name, sha256, scope });
        }
    }
    let hold_seconds = raw.store.hold_seconds.unwrap_or(180);
    if !(10..=3600).contains(&hold_seconds) {
        e.push("store.hold_seconds", "must be between 10 and 3600");
    }

    let escalation = escalation(&mut e, &raw.escalation);
    let mut sip = sip(&mut e, raw.sip, &staff);
    // Trunk dialling stays in the clinic's country unless `[sip]
    // dial_allow` says otherwise (numbers in national form are its too).
    if let (Some(s), Some(cc)) = (sip.as_mut(), phone.as_deref().and_then(|p| crate::phone::E164::parse(p).ok())) {
        let cc = cc.country_code().to_string();
        s.dial_allow.get_or_insert_with(|| vec![cc.clone()]);
        s.home_country_code.get_or_insert(cc);
    }
    let speech = raw.speech.map(|s| speech(&mut e, s, &languages));
    let calls_app = match raw.calls.app.as_deref().unwrap_or("echo") {
        "echo" => CallsApp::Echo,
        "tone" => CallsApp::Tone,
        "assistant" => {
            if speech.is_none() {
                e.push("calls.app", "\"assistant\" needs a [speech] section (recognition and synthesis)");
            }
            CallsApp::Assistant
        }
        other => {
            e.push("calls.app", format!("{other:?} is not \"echo\", \"tone\" or \"assistant\""));
            CallsApp::Echo
        }
    };

    let calls = calls(&mut e, &raw.calls, calls_app);
    let calendar = calendar(&mut e, &raw.calendar);
    let webhooks = crate::webhooks::Webhook::validate_all(&raw.webhooks, &mut |field, message| e.push(field, message));
    let verification = verification(&mut e, &raw.privacy);
    let mut retention = retention(&mut e, &raw.privacy);
    retention.identity_failures = verification.window;

    if !e.0.is_empty() {
        return Err(ConfigError::Invalid(e.0));
    }
    let some = "validated above: no errors means every required value is present";
    Ok(Config {
        clinic: Clinic {
            name: name.expect(some),
            address: address.expect(some),
            phone: phone.expect(some),
            timezone: timezone.expect(some),
            languages,
            emergency_number,
            opening_hours,
            holidays,
            next_weekday_following_week,
        },
        specialties,
        providers,
        staff,
        groups,
        database: DatabaseConfig { url, max_connections },
        http: HttpConfig {
            listen: listen.expect(some),
            header_read_timeout,
            request_timeout,
            max_connections: http_connections as usize,
            tls,
        },
        api: ApiConfig { tokens },
        store: StoreConfig { hold_seconds },
        escalation,
        sip,
        calls_app,
        calls,
        speech,
        logging: LoggingConfig { transcripts: raw.logging.transcripts.unwrap_or(false) },
        retention,
        verification,
        calendar,
        webhooks,
        node,
        demo: false,
    })
}

/// Default `[calls] max_active`: recognition is the bottleneck, and a call
/// needs it only while its caller has just spoken.
pub fn default_max_active() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get() * 2).max(2)
}

fn calls(e: &mut Errors, r: &RawCalls, app: CallsApp) -> CallsConfig {
    let max_active = r.max_active.unwrap_or(default_max_active() as i64);
    if !(1..=1000).contains(&max_active) {
        e.push("calls.max_active", "must be between 1 and 1000");
    }
    let max_queue = r.max_recognition_queue.unwrap_or(16);
    if !(1..=1000).contains(&max_queue) {
        e.push("calls.max_recognition_queue", "must be between 1 and 1000");
    }
    let per_caller = r.max_per_caller.unwrap_or(2);
    if !(1..=1000).contains(&per_caller) {
        e.push("calls.max_per_caller", "must be between 1 and 1000");
    }
    let per_caller_hour = r.max_per_caller_per_hour.unwrap_or(10);
    if !(1..=100_000).contains(&per_caller_hour) {
        e.push("calls.max_per_caller_per_hour", "must be between 1 and 100000");
    }
    let max_minutes = r.max_assistant_minutes.unwrap_or(15);
    if !(1..=240).contains(&max_minutes) {
        e.push("calls.max_assistant_minutes", "must be between 1 and 240");
    }
    let record_audio = r.record_audio.unwrap_or(false);
    if record_audio && app != CallsApp::Assistant {
        e.push("calls.record_audio", "only the assistant records calls (calls.app = \"assistant\")");
    }
    let recordings_dir = r.recordings_dir.clone().unwrap_or_else(|| "recordings".into());
    if recordings_dir.trim().is_empty() {
        e.push("calls.recordings_dir", "must not be empty (a directory, like \"recordings\")");
    }
    CallsConfig {
        max_active: max_active.clamp(1, 1000) as usize,
        max_recognition_queue: max_queue.clamp(1, 1000) as usize,
        max_per_caller: per_caller.clamp(1, 1000) as usize,
        max_per_caller_per_hour: per_caller_hour.clamp(1, 100_000) as usize,
        max_assistant: std::time::Duration::from_secs(60 * max_minutes.clamp(1, 240) as u64),
        record_audio,
        recordings_dir: recordings_dir.into(),
    }
}

/// A SIP URI as config takes it: `sip:`/`sips:`, a host after `@`, no spaces.
fn is_sip_uri(s: &str) -> bool {
    (s.starts_with("sip:") || s.starts_with("sips:")) && !s.contains(char::is_whitespace) && s.contains('@')
}

/// `[[groups]]`; "reception" rings every staff extension at once when not given.
fn groups(e: &mut Errors, raw: &[RawGroup], staff: &[Extension]) -> Vec<RingGroup> {
    let mut groups: Vec<RingGroup> = Vec::new();
    for (i, g) in raw.iter().enumerate() {
        let key = format!("groups[{i}]");
        let name = ident(e, &format!("{key}.name"), &g.name);
        if let Some(n) = &name {
            if groups.iter().any(|other| &other.name == n) {
                e.push(format!("{key}.name"), format!("{n:?} is defined twice"));
            }
        }
        let transfer = group_transfer(e, &key, g);
        // Judged by what was asked for, so a bad refer_to is one error, not two.
        let refer = g.transfer.as_deref() == Some("refer");
        if g.members.is_empty() && !refer {
            e.push(format!("{key}.members"), "needs at least one member");
        }
        if !g.members.is_empty() && refer {
            e.push(format!("{key}.members"), "are not rung with transfer = \"refer\" (the caller is sent to refer_to): remove them");
        }
        let mut members = Vec::new();
        for (j, m) in g.members.iter().enumerate() {
            let m = m.trim();
            if m.starts_with("sip:") || m.starts_with("sips:") {
                if !is_sip_uri(m) {
                    e.push(format!("{key}.members[{j}]"), format!("{m:?} is not a SIP URI like sip:desk@pbx.clinic"));
                } else {
                    members.push(GroupMember::Uri(m.to_string()));
                }
            } else if staff.iter().any(|x| x.extension == m) {
                members.push(GroupMember::Extension(m.to_string()));
            } else {
                e.push(format!("{key}.members[{j}]"), format!("{m:?} is neither a [[staff]] extension nor a sip: URI"));
            }
        }
        let strategy = match g.strategy.as_deref().unwrap_or("all") {
            "all" => RingStrategy::All,
            "order" => RingStrategy::Order,
            other => {
                e.push(format!("{key}.strategy"), format!("{other:?} is not \"all\" or \"order\""));
                RingStrategy::All
            }
        };
        let timeout = g.ring_timeout_s.unwrap_or(20);
        if !(5..=300).contains(&timeout) {
            e.push(format!("{key}.ring_timeout_s"), "must be between 5 and 300");
        }
        if let Some(name) = name {
            let ring_timeout = std::time::Duration::from_secs(timeout.clamp(5, 300) as u64);
            groups.push(RingGroup { name, members, strategy, ring_timeout, transfer });
        }
    }
    if !staff.is_empty() && !groups.iter().any(|g| g.name == "reception") {
        groups.push(RingGroup {
            name: "reception".into(),
            members: staff.iter().map(|x| GroupMember::Extension(x.extension.clone())).collect(),
            strategy: RingStrategy::All,
            ring_timeout: std::time::Duration::from_secs(20),
            transfer: GroupTransfer::Bridge,
        });
    }
    groups
}

/// `transfer` and `refer_to` of one `[[groups]]` entry.
fn group_transfer(e: &mut Errors, key: &str, g: &RawGroup) -> GroupTransfer {
    let refer_to = g.refer_to.as_deref().map(str::trim);
    match g.transfer.as_deref().unwrap_or("bridge") {
        "bridge" => {
            if refer_to.is_some() {
                e.push(format!("{key}.refer_to"), "is only used with transfer = \"refer\"");
            }
            GroupTransfer::Bridge
        }
        "refer" => match refer_to {
            Some(uri) if is_sip_uri(uri) => GroupTransfer::Refer(uri.to_string()),
            Some(uri) => {
                e.push(format!("{key}.refer_to"), format!("{uri:?} is not a SIP URI like sip:reception@pbx.clinic"));
                GroupTransfer::Bridge
            }
            None => {
                e.push(
                    format!("{key}.refer_to"),
                    "is required with transfer = \"refer\" (where the caller is sent, like sip:reception@pbx.clinic)",
                );
                GroupTransfer::Bridge
            }
        },
        other => {
            e.push(format!("{key}.transfer"), format!("{other:?} is not \"bridge\" or \"refer\""));
            GroupTransfer::Bridge
        }
    }
}

fn escalation(e: &mut Errors, r: &RawEscalation) -> EscalationConfig {
    let mut int = |key: &str, v: Option<i64>, default: i64, range: std::ops::RangeInclusive<i64>| {
        let v = v.unwrap_or(default);
        if !range.contains(&v) {
            e.push(format!("escalation.{key}"), format!("must be between {} and {}", range.start(), range.end()));
        }
        v
    };
    let reply_within = int("reply_within_hours", r.reply_within_hours, 24, 1..=336);
    let horizon = int("horizon_hours", r.horizon_hours, 72, 1..=720);
    let min_lead = int("min_lead_hours", r.min_lead_hours, 2, 0..=168);
    let max_attempts = int("max_attempts", r.max_attempts, 3, 1..=10);
    let spacing = int("spacing_minutes", r.spacing_minutes, 180, 5..=10080);
    let max_concurrent = int("max_concurrent_calls", r.max_concurrent_calls, 2, 1..=100);
    let refill_min_lead = int("refill_min_lead_hours", r.refill_min_lead_hours, 24, 0..=720);
    let refill_offer = int("refill_offer_minutes", r.refill_offer_minutes, 10, 1..=1440);
    let default_windows: BTreeMap<String, Vec<String>> = ["monday", "tuesday", "wednesday", "thursday", "friday"]
        .iter()
        .map(|d| (d.to_string(), vec!["09:00-20:00".to_string()]))
        .chain(std::iter::once(("saturday".to_string(), vec!["10:00-14:00".to_string()])))
        .collect();
    let calling_windows = weekly(e, "escalation.calling_windows", r.calling_windows.as_ref().unwrap_or(&default_windows));
    if calling_windows.0.iter().all(Vec::is_empty) {
        e.push("escalation.calling_windows", "needs at least one window");
    }
    EscalationConfig {
        enabled: r.enabled.unwrap_or(true),
        reply_within: chrono::Duration::hours(reply_within),
        horizon: chrono::Duration::hours(horizon),
        min_lead: chrono::Duration::hours(min_lead),
        max_attempts: max_attempts as u32,
        spacing: chrono::Duration::minutes(spacing),
        max_concurrent_calls: max_concurrent as u32,
        calling_windows,
        refill_enabled: r.refill_enabled.unwrap_or(true),
        refill_min_lead: chrono::Duration::hours(refill_min_lead),
        refill_offer: chrono::Duration::minutes(refill_offer),
    }
}

/// `[sip]` as the SIP layer reads it. Staff extensions with a password become
/// registrar accounts unless `[sip]` lists its own.
fn sip(e: &mut Errors, raw: Option<toml::Value>, staff: &[Extension]) -> Option<crate::sip::config::SipConfig> {
    let raw = raw?;
    let mut cfg: crate::sip::config::SipConfig = match raw.try_into() {
        Ok(c) => c,
        Err(err) => {
            e.push("sip", err.to_string().trim().to_string());
            return None;
        }
    };
    // Registrar accounts made from [[staff]]: remember which staff entry
    // each came from, so errors name the key the operator wrote.
    let mut from_staff = Vec::new();
    if cfg.extensions.is_empty() {
        for (i, x) in staff.iter().enumerate() {
            if x.password.is_none() && x.ha1_sha256.is_none() && x.ha1_md5.is_none() {
                continue;
            }
            from_staff.push(i);
            cfg.extensions.push(crate::sip::config::Extension {
                number: x.extension.clone(),
                password: x.password.clone(),
                ha1_sha256: x.ha1_sha256.clone(),
                ha1_md5: x.ha1_md5.clone(),
                display_name: Some(x.name.clone()),
                nat: x.nat,
                srtp: x.srtp,
            });
        }
    }
    if let Err(errors) = cfg.validate() {
        for (key, message) in errors {
            let staff_key = from_staff
                .iter()
                .enumerate()
                .find_map(|(k, i)| key.strip_prefix(&format!("sip.extensions[{k}]")).map(|rest| format!("staff[{i}]{rest}")));
            e.push(staff_key.unwrap_or(key), message);
        }
    }
    Some(cfg)
}

fn speech(e: &mut Errors, raw: RawSpeech, languages: &[String]) -> SpeechConfig {
    let model = raw.model.unwrap_or_else(|| crate::speech::models::DEFAULT_MODEL.into());
    let known = crate::speech::models::CATALOGUE.iter().map(|m| m.name).collect::<Vec<_>>().join(", ");
    if crate::speech::models::spec(&model).is_err() {
        e.push("speech.model", format!("{model:?} is not a known model ({known})"));
    } else if crate::speech::models::spec(&model).is_ok_and(|m| !m.multilingual) && languages.iter().any(|l| l != "en") {
        e.push("speech.model", format!("{model:?} understands only English, but the clinic speaks {languages:?}"));
    }
    let workers = raw.workers.unwrap_or(1);
    if !(1..=16).contains(&workers) {
        e.push("speech.workers", "must be between 1 and 16");
    }
    let threads = raw.threads_per_worker.unwrap_or(2);
    if !(1..=64).contains(&threads) {
        e.push("speech.threads_per_worker", "must be between 1 and 64");
    }
    let default_voice = |l: &str| match l {
        "en" => "en-us".to_string(),
        other => other.to_string(),
    };
    let mut voices = std::collections::BTreeMap::new();
    for l in languages {
        let v = raw.voices.get(l);
        let rate = v.and_then(|v| v.rate_wpm).unwrap_or(145);
        if !(80..=300).contains(&rate) {
            e.push(format!("speech.voices.{l}.rate_wpm"), "must be between 80 and 300");
        }
        voices.insert(l.clone(), (v.and_then(|v| v.name.clone()).unwrap_or_else(|| default_voice(l)), rate as u32));
    }
    for l in raw.voices.keys().filter(|l| !languages.contains(l)) {
        e.push(format!("speech.voices.{l}"), "is not one of clinic.languages");
    }
    SpeechConfig {
        model,
        models_dir: raw.models_dir.unwrap_or_else(|| "models".into()).into(),
        cache_dir: raw.cache_dir.unwrap_or_else(|| "models/cache".into()).into(),
        workers: workers.clamp(1, 16) as usize,
        threads_per_worker: threads.clamp(1, 64) as i32,
        voices,
    }
}

fn non_empty(e: &mut Errors, key: &str, v: &Option<String>) -> Option<String> {
    match v {
        Some(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(_) => {
            e.push(key, "must not be empty");
            None
        }
        None => {
            e.push(key, "is required");
            None
        }
    }
}

/// Ids appear in URLs, SIP headers and logs: keep them plain.
fn ident(e: &mut Errors, key: &str, v: &Option<String>) -> Option<String> {
    let id = non_empty(e, key, v)?;
    if id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
        Some(id)
    } else {
        e.push(key, format!("{id:?} may hold only a-z, 0-9, '-' and '_'"));
        None
    }
}

fn weekly(e: &mut Errors, key: &str, raw: &BTreeMap<String, Vec<String>>) -> WeeklyHours {
    let mut hours = WeeklyHours::default();
    for (day, ranges) in raw {
        let Some(idx) = WEEKDAYS.iter().position(|d| d == day) else {
            e.push(format!("{key}.{day}"), "is not a weekday (monday…sunday)");
            continue;
        };
        for (i, r) in ranges.iter().enumerate() {
            match parse_range(r) {
                Some(range) => hours.0[idx].push(range),
                None => e.push(format!("{key}.{day}[{i}]"), format!("{r:?} is not a range like \"09:00-14:00\"")),
            }
        }
        hours.0[idx].sort_by_key(|r| r.start);
        if hours.0[idx].windows(2).any(|w| w[1].start < w[0].end) {
            e.push(format!("{key}.{day}"), "has overlapping ranges");
        }
    }
    hours
}

fn parse_range(s: &str) -> Option<TimeRange> {
    let (a, b) = s.split_once('-')?;
    let start = NaiveTime::parse_from_str(a.trim(), "%H:%M").ok()?;
    let end = NaiveTime::parse_from_str(b.trim(), "%H:%M").ok()?;
    (start < end).then_some(TimeRange { start, end })
}

fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let hex = s.strip_prefix("sha256:")?;
    let bytes = hex::decode(hex).ok()?;
    bytes.try_into().ok()
}

/// `[privacy] verify_*`: 1–20 failures within 1 hour to 90 days.
fn verification(e: &mut Errors, r: &RawPrivacy) -> super::Verification {
    let d = super::Verification::default();
    let max_failures = match r.verify_max_failures {
        None => d.max_failures,
        Some(n @ 1..=20) => n as u32,
        Some(_) => {
            e.push("privacy.verify_max_failures", "must be between 1 and 20");
            d.max_failures
        }
    };
    let window = match r.verify_window_hours {
        None => d.window,
        Some(h @ 1..=2160) => chrono::Duration::hours(h),
        Some(_) => {
            e.push("privacy.verify_window_hours", "must be between 1 and 2160 (90 days)");
            d.window
        }
    };
    super::Verification { max_failures, window }
}

/// `[privacy]`: each period at least a day (an hour for idempotency keys,
/// which a client's retry needs) and at most ten years.
fn retention(e: &mut Errors, r: &RawPrivacy) -> crate::store::Retention {
    let d = crate::store::Retention::default();
    let mut period = |key: &str, v: Option<i64>, default: chrono::Duration, unit: fn(i64) -> chrono::Duration, max: i64| match v {
        None => default,
        Some(n) if (1..=max).contains(&n) => unit(n),
        Some(_) => {
            e.push(format!("privacy.{key}"), format!("must be between 1 and {max}"));
            default
        }
    };
    let days = chrono::Duration::days;
    crate::store::Retention {
        transcripts: period("transcripts_days", r.transcripts_days, d.transcripts, days, 3650),
        recordings: period("recordings_days", r.recordings_days, d.recordings, days, 3650),
        audit_snapshots: period("audit_snapshots_days", r.audit_snapshots_days, d.audit_snapshots, days, 3650),
        idempotency: period("idempotency_hours", r.idempotency_hours, d.idempotency, chrono::Duration::hours, 24 * 90),
        finished_jobs: period("finished_jobs_days", r.finished_jobs_days, d.finished_jobs, days, 3650),
        callbacks: period("callbacks_days", r.callbacks_days, d.callbacks, days, 3650),
        // Set from the lockout window by the caller.
        identity_failures: d.identity_failures,
        webhook_log: period("webhook_log_days", r.webhook_log_days, d.webhook_log, days, 3650),
    }
}

/// `[calendar]`: no key, no feeds; a key short enough to guess is refused.
fn calendar(e: &mut Errors, c: &super::raw::RawCalendar) -> Option<super::CalendarConfig> {
    let key = c.key.clone()?;
    if key.chars().count() < 32 {
        e.push("calendar.key", "must be at least 32 characters (the feeds' URLs are derived from it)");
    }
    let days_back = c.days_back.unwrap_or(14);
    if !(0..=366).contains(&days_back) {
        e.push("calendar.days_back", "must be between 0 and 366");
    }
    let days_ahead = c.days_ahead.unwrap_or(120);
    if !(1..=730).contains(&days_ahead) {
        e.push("calendar.days_ahead", "must be between 1 and 730");
    }
    Some(super::CalendarConfig { key, patient_names: c.patient_names.unwrap_or(false), days_back, days_ahead })
}
