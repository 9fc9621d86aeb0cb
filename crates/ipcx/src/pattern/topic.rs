//! Topics and subscription patterns, as NATS writes them: levels split by
//! `.` (`sensors.lidar.front`); in a pattern `*` stands for one level and
//! a last `>` for one or more.

use crate::error::{Error, ErrorKind, Result};

/// Longest topic or pattern, in bytes.
pub const TOPIC_MAX: usize = 255;

/// What a level may hold: ASCII letters, digits, `_`, `-`.
fn level_ok(level: &str) -> bool {
    level
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn invalid(what: &str, text: &str, why: String) -> Error {
    Error::new(
        ErrorKind::InvalidArgument(format!("{what} `{}`: {why}", text.escape_debug())),
        "topic",
    )
}

/// The levels of `text`, each checked: non-empty, and of letters,
/// digits, `_` and `-` (or, in a pattern, `*`, and `>` last).
fn levels<'a>(what: &str, text: &'a str, wildcards: bool) -> Result<Vec<&'a str>> {
    if text.is_empty() {
        return Err(invalid(what, text, "it is empty".into()));
    }
    if text.len() > TOPIC_MAX {
        return Err(invalid(
            what,
            text,
            format!("{} bytes, at most {TOPIC_MAX}", text.len()),
        ));
    }
    let levels: Vec<&str> = text.split('.').collect();
    for (i, level) in levels.iter().enumerate() {
        let n = i + 1;
        if level.is_empty() {
            return Err(invalid(what, text, format!("level {n} is empty")));
        }
        if wildcards && *level == "*" {
            continue;
        }
        if wildcards && *level == ">" {
            if n != levels.len() {
                return Err(invalid(
                    what,
                    text,
                    format!("`>` must be the last level, it is level {n}"),
                ));
            }
            continue;
        }
        if !level_ok(level) {
            let bad = level
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
                .unwrap_or('?');
            let allowed = if wildcards {
                "letters, digits, `_`, `-`, or a whole level of `*` or `>`"
            } else {
                "letters, digits, `_` and `-`"
            };
            return Err(invalid(
                what,
                text,
                format!("level {n} holds {bad:?}; a level is {allowed}"),
            ));
        }
    }
    Ok(levels)
}

/// Checks that `topic` is a topic one can publish on (no wildcards).
pub fn check_topic(topic: &str) -> Result<()> {
    levels("topic", topic, false).map(drop)
}

/// A subscription pattern, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    levels: Vec<Level>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Exact(String),
    /// `*`
    One,
    /// `>`
    Rest,
}

impl Pattern {
    /// Parses `text`: levels split by `.`, `*` for any one level, a last
    /// `>` for one or more.
    pub fn parse(text: &str) -> Result<Pattern> {
        let levels = levels("pattern", text, true)?
            .into_iter()
            .map(|l| match l {
                "*" => Level::One,
                ">" => Level::Rest,
                exact => Level::Exact(exact.to_string()),
            })
            .collect();
        Ok(Pattern {
            text: text.to_string(),
            levels,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `topic` (a checked topic) matches.
    pub fn matches(&self, topic: &str) -> bool {
        let mut parts = topic.split('.');
        for level in &self.levels {
            match (level, parts.next()) {
                (Level::Rest, Some(_)) => return true,
                (Level::One, Some(_)) => {}
                (Level::Exact(e), Some(p)) if e == p => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_nats_does() {
        let m = |p: &str, t: &str| Pattern::parse(p).expect("a pattern").matches(t);
        assert!(m("sensors.lidar.front", "sensors.lidar.front"));
        assert!(!m("sensors.lidar.front", "sensors.lidar.back"));
        assert!(m("sensors.*.front", "sensors.lidar.front"));
        assert!(!m("sensors.*.front", "sensors.lidar.front.left"));
        assert!(!m("sensors.*", "sensors"));
        assert!(m("sensors.>", "sensors.lidar"));
        assert!(m("sensors.>", "sensors.lidar.front.left"));
        assert!(!m("sensors.>", "sensors"));
        assert!(m(">", "a"));
        assert!(m("*.*", "a.b"));
        assert!(!m("*.*", "a.b.c"));
        assert!(!m("a.b", "a"));
    }

    #[test]
    fn malformed_topics_and_patterns_say_what_is_wrong() {
        let why = |r: Result<()>| r.expect_err("malformed").to_string();
        assert!(why(check_topic("")).contains("empty"));
        assert!(why(check_topic("a..b")).contains("level 2 is empty"));
        assert!(why(check_topic("a.")).contains("level 2 is empty"));
        assert!(why(check_topic("a.*")).contains("level 2 holds '*'"));
        assert!(why(check_topic("a b")).contains("level 1 holds ' '"));
        assert!(why(check_topic(&"x".repeat(256))).contains("at most 255"));
        let pat = |p: &str| why(Pattern::parse(p).map(drop));
        assert!(pat("a.>.b").contains("`>` must be the last level, it is level 2"));
        assert!(pat("a.b*").contains("level 2 holds '*'"));
        assert!(pat("a..>").contains("level 2 is empty"));
        assert!(pat("a.é").contains("level 2 holds 'é'"));
    }
}
