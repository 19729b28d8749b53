//! Bounds on what clients may store: lengths, the number of phones, and no
//! control characters (a NUL in a name breaks PostgreSQL text, terminals and
//! the CSV exports clinics make; an escape sequence in a log line or staff
//! screen is worse). Checked at the edge, before the store, as 422s naming
//! the field.

use super::Problem;

/// Phone numbers one patient may have.
pub const MAX_PHONES: usize = 5;
/// Characters in a person's name.
pub const MAX_NAME: usize = 200;
/// Characters in an id, token or other short code sent back to us.
pub const MAX_CODE: usize = 200;
/// Characters in free text (notes, what a patient wrote).
pub const MAX_TEXT: usize = 2000;

/// A one-line value (a name, an id): no control characters at all.
pub fn line(field: &str, value: &str, max: usize) -> Result<(), Problem> {
    check(field, value, max, |c| c.is_control())
}

/// Free text: line breaks and tabs are allowed, other control characters not.
pub fn text(field: &str, value: &str, max: usize) -> Result<(), Problem> {
    check(field, value, max, |c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
}

/// [`line`] for an optional value.
pub fn opt_line(field: &str, value: Option<&str>, max: usize) -> Result<(), Problem> {
    value.map_or(Ok(()), |v| line(field, v, max))
}

/// [`text`] for an optional value.
pub fn opt_text(field: &str, value: Option<&str>, max: usize) -> Result<(), Problem> {
    value.map_or(Ok(()), |v| text(field, v, max))
}

fn check(field: &str, value: &str, max: usize, refused: impl Fn(char) -> bool) -> Result<(), Problem> {
    if value.chars().count() > max {
        return Err(Problem::invalid(field, format!("at most {max} characters")));
    }
    if let Some(c) = value.chars().find(|c| refused(*c)) {
        return Err(Problem::invalid(field, format!("must not contain control characters (found U+{:04X})", c as u32)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused() {
        assert!(line("name", "María José Núñez-O'Brien", MAX_NAME).is_ok());
        for bad in ["Ana\0", "Ana\nPérez", "\u{1b}[31mAna", "Ana\u{7f}", "Ana\u{85}"] {
            let p = line("name", bad, MAX_NAME).unwrap_err();
            assert_eq!((p.status, p.errors[0].field.as_str()), (422, "name"), "{bad:?}");
        }
        assert!(text("notes", "línea 1\nlínea 2\ttab\r\n", MAX_TEXT).is_ok());
        assert!(text("notes", "a\0b", MAX_TEXT).is_err());
    }

    #[test]
    fn lengths_count_characters() {
        assert!(line("name", &"ñ".repeat(MAX_NAME), MAX_NAME).is_ok());
        assert!(line("name", &"ñ".repeat(MAX_NAME + 1), MAX_NAME).is_err());
        assert!(opt_text("notes", None, 1).is_ok());
    }
}
