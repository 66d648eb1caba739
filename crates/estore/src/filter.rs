//! Server-side filters on `$all`: by stream name or event type, as a prefix list or a regex, with
//! the checkpoint interval the client asked for.

use regex::{Regex, RegexBuilder};
use tonic::Status;

use crate::proto::event_store::client::streams::read_req::options::{
    filter_options, FilterOptions,
};
use crate::storage::RecordedEvent;
use crate::wire::invalid;

/// Largest compiled filter regex, in bytes: a hostile pattern cannot eat the server's memory.
const REGEX_BYTES_MAX: usize = 1024 * 1024;
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
    Regex(Regex),
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
            let regex = RegexBuilder::new(&expression.regex)
                .size_limit(REGEX_BYTES_MAX)
                .build()
                .map_err(|e| invalid(format!("filter regex is invalid: {e}")))?;
            Matcher::Regex(regex)
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
            Matcher::Regex(regex) => regex.is_match(subject),
            Matcher::Prefixes(prefixes) => prefixes.iter().any(|p| subject.starts_with(p.as_str())),
        }
    }
}
