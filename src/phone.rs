//! E.164 phone numbers, parsed once at the edge ("parse, don't validate").

use std::fmt;

/// A phone number in E.164 form: `+` then 8 to 15 digits, the first not 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct E164(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an E.164 phone number like +34600111222")]
pub struct NotE164(pub String);

impl E164 {
    /// Accepts the spacing, dots, dashes and parentheses people type around
    /// digits (`+34 600 11-12-22`), and the `00` international prefix.
    pub fn parse(text: &str) -> Result<E164, NotE164> {
        let bad = || NotE164(text.to_string());
        let trimmed = text.trim();
        let rest = if let Some(r) = trimmed.strip_prefix('+') {
            r
        } else if let Some(r) = trimmed.strip_prefix("00") {
            r
        } else {
            return Err(bad());
        };
        let mut digits = String::with_capacity(16);
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(bad()),
            }
        }
        if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
            return Err(bad());
        }
        Ok(E164(format!("+{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The country calling code with its `+` (ITU-T E.164 assignments:
    /// one digit for zones 1 and 7, two digits for the codes listed, three
    /// for the rest), e.g. `+34` for `+34600111222`.
    pub fn country_code(&self) -> &str {
        const TWO: &[&str] = &[
            "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47", "48", "49", "51", "52", "53",
            "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94",
            "95", "98",
        ];
        let d = &self.0[1..];
        let len = if d.starts_with('1') || d.starts_with('7') {
            1
        } else if TWO.iter().any(|c| d.starts_with(c)) {
            2
        } else {
            3
        };
        &self.0[..1 + len]
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `number`, as dialled through a trunk, is one Clinivox may call:
/// in international form (`+…` or `00…`) it must start with one of
/// `allow` (`+34`, or finer prefixes like `+346`); in national form it is
/// read as a number of `home` (the clinic's country code) first. A
/// configuration mistake or a waiting-list entry then cannot dial premium
/// or foreign numbers at the clinic's expense.
pub fn dial_allowed(number: &str, allow: &[String], home: &str) -> bool {
    let digits: String = number.chars().filter(|c| c.is_ascii_digit()).collect();
    let international = if number.starts_with('+') {
        format!("+{digits}")
    } else if let Some(rest) = digits.strip_prefix("00") {
        format!("+{rest}")
    } else {
        format!("{home}{digits}")
    };
    allow.iter().any(|p| international.starts_with(p.as_str()))
}

/// `text` (a number, a SIP URI, a From header) for the log: every run of
/// five or more digits keeps only its last two (`sip:+34600222333@x` →
/// `sip:+*********33@x`). Enough for staff to tell two calls apart, not
/// enough to identify the patient who made them.
pub fn masked(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 5 {
            out.extend(std::iter::repeat_n('*', run.len() - 2));
            out.push_str(&run[run.len() - 2..]);
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// A caller's From (a URI, perhaps with a display name) for the log: the
/// display name dropped, the user part masked like [`masked`] (letters
/// too: `sip:maria.lopez@…` names a patient as surely as a number).
pub fn masked_uri(from: &str) -> String {
    let uri = match (from.find('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => &from[a + 1..b],
        _ => from.split(';').next().unwrap_or(from),
    };
    let (scheme, rest) = match uri.split_once(':') {
        Some((s, r)) if matches!(s.to_ascii_lowercase().as_str(), "sip" | "sips" | "tel") => (Some(s), r),
        _ => (None, uri),
    };
    let (user, host) = match rest.split_once('@') {
        Some((u, h)) => (u, Some(h)),
        None if scheme.is_some_and(|s| s.eq_ignore_ascii_case("tel")) => (rest, None),
        None => ("", Some(rest)),
    };
    let chars: Vec<char> = user.chars().collect();
    let user: String = if chars.len() > 4 {
        chars.iter().enumerate().map(|(i, c)| if i + 2 >= chars.len() || *c == '+' { *c } else { '*' }).collect()
    } else {
        user.to_string()
    };
    let mut out = String::new();
    if let Some(s) = scheme {
        out.push_str(s);
        out.push(':');
    }
    out.push_str(&user);
    if let Some(h) = host {
        if !user.is_empty() {
            out.push('@');
        }
        out.push_str(h);
    }
    out
}

#[cfg(test)]
mod masking_tests {
    use super::{masked, masked_uri};

    #[test]
    fn a_callers_uri_loses_its_display_name_and_user() {
        assert_eq!(masked_uri("\"José Martínez\" <sip:+34600222333@10.0.0.1>;tag=9"), "sip:+*********33@10.0.0.1");
        assert_eq!(masked_uri("sip:maria.lopez@example.org"), "sip:*********ez@example.org");
        assert_eq!(masked_uri("sip:201@clinic"), "sip:201@clinic");
        assert_eq!(masked_uri("tel:+34600222333"), "tel:+*********33");
        assert_eq!(masked_uri("sip:clinic.example"), "sip:clinic.example");
    }

    #[test]
    fn long_digit_runs_keep_their_last_two() {
        assert_eq!(masked("+34600222333"), "+*********33");
        assert_eq!(masked("sip:+34600222333@127.0.0.1:5060"), "sip:+*********33@127.0.0.1:5060");
        assert_eq!(masked("\"José\" <sip:600222333@clinic>;tag=1234"), "\"José\" <sip:*******33@clinic>;tag=1234");
        assert_eq!(masked("ext 201"), "ext 201");
        assert_eq!(masked(""), "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_codes_and_the_dial_allow_list() {
        let cc = |n: &str| E164::parse(n).unwrap().country_code().to_string();
        assert_eq!(cc("+34600111222"), "+34");
        assert_eq!(cc("+351912345678"), "+351");
        assert_eq!(cc("+390612345678"), "+39");
        assert_eq!(cc("+14155550100"), "+1");
        assert_eq!(cc("+447911123456"), "+44");
        let es = vec!["+34".to_string()];
        assert!(dial_allowed("+34600111222", &es, "+34"));
        assert!(dial_allowed("0034600111222", &es, "+34"));
        assert!(dial_allowed("600111222", &es, "+34"), "national form, the clinic's country");
        assert!(!dial_allowed("+44909123456", &es, "+34"), "abroad");
        assert!(!dial_allowed("00881234567", &es, "+34"), "satellite, through 00");
        let mobiles = vec!["+346".to_string(), "+347".to_string(), "+349".to_string()];
        assert!(dial_allowed("+34600111222", &mobiles, "+34"));
        assert!(!dial_allowed("803123456", &mobiles, "+34"), "a premium national number outside the prefixes");
    }

    #[test]
    fn parses_common_spellings() {
        assert_eq!(E164::parse("+34 600 11-12-22").unwrap().as_str(), "+34600111222");
        assert_eq!(E164::parse("0034600111222").unwrap().as_str(), "+34600111222");
        assert!(E164::parse("(+39) 06.1234.5678").is_err());
    }

    #[test]
    fn rejects_non_numbers() {
        for bad in ["", "+", "600111222", "+34abc", "+0123456789", "+1234567", "+1234567890123456", "+34 600 ☎"] {
            assert!(E164::parse(bad).is_err(), "{bad}");
        }
    }
}
