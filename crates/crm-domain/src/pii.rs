//! Personal data (national id, phone) in a type whose `Debug` and `Display` mask it,
//! so it can't reach a log or a trace by accident.

use std::fmt;

/// A piece of personal data. Read the clear value only through [`Pii::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Pii(String);

impl Pii {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The clear value: only for storage and for callers entitled to see it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Pii {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pii(***)")
    }
}

impl fmt::Display for Pii {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// At least this many characters are hidden: a short number (a landline, an old
/// id) masked in the standard shape would show nearly all of itself.
const MIN_HIDDEN: usize = 4;

/// Keeps the first `head` and last `tail` characters, stars in between; values too
/// short for that keep only their last quarter.
fn mask_middle(value: &str, head: usize, tail: usize) -> String {
    let chars: Vec<char> = value.chars().collect();
    let (head, tail) = if chars.len() >= head + tail + MIN_HIDDEN {
        (head, tail)
    } else {
        (0, chars.len() / 4)
    };
    if chars.len() <= head + tail {
        return "*".repeat(chars.len());
    }
    let mut masked: String = chars[..head].iter().collect();
    masked.push_str(&"*".repeat(chars.len() - head - tail));
    masked.extend(&chars[chars.len() - tail..]);
    masked
}

/// `110101199001011234` → `1101**********1234`.
pub fn mask_national_id(value: &str) -> String {
    mask_middle(value, 4, 4)
}

/// `13812345678` → `138****5678`.
pub fn mask_phone(value: &str) -> String {
    mask_middle(value, 3, 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_as_the_api_shows() {
        assert_eq!(mask_national_id("110101199001011234"), "1101**********1234");
        assert_eq!(mask_phone("13812345678"), "138****5678");
        assert_eq!(mask_phone("1234"), "***4");
        assert_eq!(mask_phone(""), "");
        // Short numbers keep their last quarter only.
        assert_eq!(mask_phone("62345678"), "******78");
        assert_eq!(mask_national_id("1101011234"), "********34");
        assert_eq!(mask_national_id("110101800101123"), "1101*******1123");
    }

    #[test]
    fn debug_and_display_never_show_the_value() {
        let pii = Pii::new("13812345678");
        assert!(!format!("{pii:?} {pii}").contains("1381"));
        assert_eq!(pii.expose(), "13812345678");
    }
}
