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
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_spellings() {
        assert_eq!(E164::parse("+34 600 11-12-22").unwrap().as_str(), "+34600111222");
        assert_eq!(E164::parse("0034600111222").unwrap().as_str(), "+34600111222");
        assert_eq!(E164::parse("(+39) 06.1234.5678").is_err(), true);
    }

    #[test]
    fn rejects_non_numbers() {
        for bad in ["", "+", "600111222", "+34abc", "+0123456789", "+1234567", "+1234567890123456", "+34 600 ☎"] {
            assert!(E164::parse(bad).is_err(), "{bad}");
        }
    }
}
