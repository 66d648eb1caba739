//! Server-side filters on `$all`: by stream name or event type, as a prefix list or a regex, with
//! the checkpoint interval the client asked for.
//!
//! Regexes are evaluated as KurrentDB evaluates them (.NET): look-ahead, look-behind, atomic
//! groups and backreferences included — the official clients' default filters use look-ahead
//! to leave system streams out. `fancy-regex` gives those constructs and hands every pattern
//! without them to the linear-time `regex` engine; a backtracking pattern is bounded in steps per
//! match (a match that runs out counts as no match, and is logged), and every pattern in size.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fancy_regex::{Regex, RegexBuilder};
use tonic::Status;

use crate::proto::event_store::client::streams::read_req::options::{
    filter_options, FilterOptions,
};
use crate::storage::RecordedEvent;
use crate::wire::invalid;

/// Largest compiled filter regex, in bytes: a hostile pattern cannot eat the server's memory.
const REGEX_BYTES_MAX: usize = 1024 * 1024;
/// Most backtracking steps one match of a filter regex may take: a hostile pattern cannot stall
/// a reader (about a millisecond of work).
const REGEX_BACKTRACK_STEPS_MAX: usize = 100_000;
/// Longest filter regex, in bytes.
const REGEX_PATTERN_BYTES_MAX: usize = 4 * 1024;
/// Most prefixes in one filter.
const PREFIXES_MAX: usize = 1000;
/// Window the protocol uses when the client sends `count` instead of a maximum.
const DEFAULT_WINDOW_EVENTS: u64 = 32;

#[derive(Debug, Clone)]
enum Subject {
    StreamName,
    EventType,
}

#[derive(Debug, Clone)]
enum Matcher {
    /// With whether it has given up on a match yet (told once per filter, not per event).
    Regex(Regex, Arc<AtomicBool>),
    Prefixes(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct EventFilter {
    subject: Subject,
    matcher: Matcher,
    /// A checkpoint is due after this many considered events (matched or not).
    pub checkpoint_every_events: u64,
}

impl EventFilter {
    pub fn parse(options: FilterOptions) -> Result<EventFilter, Status> {
        let (subject, expression) = match options.filter {
            Some(filter_options::Filter::StreamIdentifier(e)) => (Subject::StreamName, e),
            Some(filter_options::Filter::EventType(e)) => (Subject::EventType, e),
            None => {
                return Err(invalid(
                    "filter has neither a stream nor an event type expression",
                ))
            }
        };
        let matcher = if !expression.regex.is_empty() {
            Matcher::Regex(compile(&expression.regex)?, Arc::default())
        } else if !expression.prefix.is_empty() {
            if expression.prefix.len() > PREFIXES_MAX {
                return Err(invalid(format!(
                    "a filter may have at most {PREFIXES_MAX} prefixes"
                )));
            }
            Matcher::Prefixes(expression.prefix)
        } else {
            return Err(invalid(
                "filter expression has neither a regex nor prefixes",
            ));
        };
        let window = match options.window {
            Some(filter_options::Window::Max(max)) if max > 0 => u64::from(max),
            _ => DEFAULT_WINDOW_EVENTS,
        };
        let multiplier = u64::from(options.checkpoint_interval_multiplier.max(1));
        Ok(EventFilter {
            subject,
            matcher,
            checkpoint_every_events: window.saturating_mul(multiplier),
        })
    }

    pub fn matches(&self, event: &RecordedEvent) -> bool {
        let subject = match self.subject {
            Subject::StreamName => event.stream.as_str(),
            Subject::EventType => event.event_type.as_str(),
        };
        match &self.matcher {
            Matcher::Regex(regex, gave_up) => regex.is_match(subject).unwrap_or_else(|e| {
                if !gave_up.swap(true, Ordering::Relaxed) {
                    tracing::warn!(pattern = %regex.as_str(), %subject, error = %e,
                        "filter regex gave up (told once per filter); such events do not match");
                }
                false
            }),
            Matcher::Prefixes(prefixes) => prefixes.iter().any(|p| subject.starts_with(p.as_str())),
        }
    }
}

/// A filter's regex, within the limits.
fn compile(pattern: &str) -> Result<Regex, Status> {
    if pattern.len() > REGEX_PATTERN_BYTES_MAX {
        return Err(invalid(format!(
            "a filter regex may have at most {REGEX_PATTERN_BYTES_MAX} bytes"
        )));
    }
    RegexBuilder::new(pattern)
        .delegate_size_limit(REGEX_BYTES_MAX)
        .backtrack_limit(REGEX_BACKTRACK_STEPS_MAX)
        .build()
        .map_err(|e| invalid(format!("filter regex is invalid: {e}")))
}

#[cfg(test)]
mod tests {
    use super::compile;

    #[test]
    fn the_clients_default_filters_with_look_ahead_compile_and_match_as_on_kurrentdb() {
        // The Python client's default: everything but system streams and its own bookkeeping.
        let not_system = compile(r"^(?!(\$.+$|PersistentConfig\d+$|Result$))").unwrap();
        assert!(not_system.is_match("order-1").unwrap());
        assert!(!not_system.is_match("$ce-order").unwrap());
        assert!(!not_system.is_match("PersistentConfig1").unwrap());
        let after = compile(r"(?<=order-)\d+$").unwrap();
        assert!(after.is_match("order-42").unwrap());
        assert!(!after.is_match("payment-42").unwrap());
        let atomic = compile(r"^(?>a+)b").unwrap();
        assert!(atomic.is_match("aab").unwrap());
    }

    #[test]
    fn a_hostile_pattern_gives_up_instead_of_stalling() {
        let started = std::time::Instant::now();
        // Catastrophic backtracking: (x+x+)+y against x…x with no y, a backreference forcing
        // the backtracking engine.
        let hostile = compile(r"^(?=(x+x+)+y)\1").unwrap();
        let subject = "x".repeat(64);
        let outcome = hostile.is_match(&subject);
        assert!(outcome.is_err(), "{outcome:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(compile(&"a".repeat(5000)).is_err());
        assert!(compile("([").is_err());
    }
}
