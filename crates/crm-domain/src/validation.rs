//! Collects every bad field of a request, not only the first, so a caller fixes
//! their input in one round trip.

/// One bad field: its path in the request and why it was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

/// The bad fields of one request, in the order they were found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations {
    violations: Vec<FieldViolation>,
}

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.violations.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// Records the error of a parse under `field` and gives back the value, if any.
    pub fn check<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        parsed: Result<T, E>,
    ) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(error) => {
                self.add(field, error.to_string());
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn len(&self) -> usize {
        self.violations.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldViolation> {
        self.violations.iter()
    }

    /// `Ok(value)` when nothing was found wrong, else every violation.
    pub fn finish<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T, Violations> {
        if !self.is_empty() {
            return Err(self);
        }
        match value() {
            Some(value) => Ok(value),
            None => {
                let mut violations = self;
                violations.add("request", "incomplete request");
                Err(violations)
            }
        }
    }
}

impl std::fmt::Display for Violations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fields: Vec<&str> = self.violations.iter().map(|v| v.field.as_str()).collect();
        write!(f, "invalid fields: {}", fields.join(", "))
    }
}

/// Checks a free-text field's length in characters (not bytes: names are often Chinese).
/// A key one system makes for another (an idempotency key, an event id, a
/// core-banking reference): at most `max_len` printable ASCII characters, no
/// spaces or control characters, which every database stores and every log shows
/// as they are. Empty passes: whether one is required is the caller's rule.
pub fn is_token(value: &str, max_len: usize) -> bool {
    value.len() <= max_len && value.bytes().all(|b| b.is_ascii_graphic())
}

pub fn check_text(
    violations: &mut Violations,
    field: &str,
    value: &str,
    required: bool,
    max_chars: usize,
) {
    let trimmed = value.trim();
    if required && trimmed.is_empty() {
        violations.add(field, "is required");
    } else if value.chars().count() > max_chars {
        violations.add(field, format!("must be at most {max_chars} characters"));
    } else if value.chars().any(is_forbidden_control) {
        // NUL can't be stored in PostgreSQL text at all; the other control
        // characters have no place in a name or a note and hide text in logs.
        violations.add(field, "must not contain control characters");
    }
}

/// A client segment's name (`payroll`, `key_list_2026`): the client book's rule,
/// which campaign audiences filter by as well.
pub fn check_segment(violations: &mut Violations, field: &str, segment: &str) {
    let well_formed = !segment.is_empty()
        && segment.len() <= 40
        && segment
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !well_formed {
        violations.add(field, "must be 1 to 40 of a-z, 0-9, '_'");
    }
}

/// A control character other than tab, line feed and carriage return.
fn is_forbidden_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_field_is_reported_in_order() {
        let mut violations = Violations::new();
        check_text(&mut violations, "name", "", true, 10);
        check_text(&mut violations, "note", &"x".repeat(11), false, 10);
        check_text(&mut violations, "city", "上海", true, 2);
        check_text(&mut violations, "reason", "a\0b", false, 10);
        check_text(&mut violations, "line", "two\nlines\tand a tab", false, 40);
        let fields: Vec<_> = violations.iter().map(|v| v.field.clone()).collect();
        assert_eq!(fields, vec!["name", "note", "reason"]);
    }

    #[test]
    fn finish_without_violations_gives_the_value() {
        assert_eq!(Violations::new().finish(|| Some(3)), Ok(3));
    }
}
