//! AMQP topic matching for the in-process transport: words split on `.`, `*` matches
//! one word, `#` zero or more.

pub fn matches(pattern: &str, routing_key: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = routing_key.split('.').collect();
    matches_words(&pattern, &key)
}

fn matches_words(pattern: &[&str], key: &[&str]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((&"#", rest)) => (0..=key.len()).any(|skip| matches_words(rest, &key[skip..])),
        Some((word, rest)) => match key.split_first() {
            Some((first, key_rest)) => {
                (*word == "*" || word == first) && matches_words(rest, key_rest)
            }
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn topic_patterns_match_like_rabbitmq() {
        assert!(matches("referral.assigned", "referral.assigned"));
        assert!(!matches("referral.assigned", "referral.accepted"));
        assert!(matches("referral.*", "referral.accepted"));
        assert!(!matches("referral.*", "referral.a.b"));
        assert!(matches("#", "anything.at.all"));
        assert!(matches("rm.#", "rm.RM-001"));
        assert!(matches("#.assigned", "referral.assigned"));
        assert!(!matches("rm.RM-001", "rm.RM-0011"));
    }
}
