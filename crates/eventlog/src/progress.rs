//! Whether the process's followers make progress: a follower that is catching up (it has not
//! reached the end of the log since it last subscribed, so work is pending) and has handed out
//! nothing for a while is stuck — its owner stopped asking, or the subscription stopped
//! delivering. A live follower waiting for new events is never stuck.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::LogPosition;

/// Every follower of this process (dropped ones are forgotten).
static FOLLOWERS: Mutex<Vec<Weak<Mutex<Progress>>>> = Mutex::new(Vec::new());

#[derive(Debug)]
pub(crate) struct Progress {
    name: &'static str,
    catching_up: bool,
    since: Instant,
    /// The last event handed out.
    after: Option<LogPosition>,
    /// Events of its streams stored after `after`, as last counted (`None`: not yet).
    behind: Option<u64>,
}

/// One follower's progress, registered for `stalled_followers`.
pub(crate) fn register(name: &'static str, after: Option<LogPosition>) -> Arc<Mutex<Progress>> {
    let progress = Arc::new(Mutex::new(Progress {
        name,
        catching_up: true,
        since: Instant::now(),
        after,
        behind: None,
    }));
    let mut followers = FOLLOWERS.lock().unwrap_or_else(|e| e.into_inner());
    followers.retain(|follower| follower.strong_count() > 0);
    followers.push(Arc::downgrade(&progress));
    progress
}

impl Progress {
    /// It (re)subscribed: catching up from here.
    pub(crate) fn subscribed(&mut self) {
        self.catching_up = true;
        self.since = Instant::now();
    }

    /// It handed out an event (at `to`) or passed a checkpoint.
    pub(crate) fn moved(&mut self, to: Option<LogPosition>) {
        self.since = Instant::now();
        if to.is_some() {
            self.after = to;
        }
    }

    pub(crate) fn after(&self) -> Option<LogPosition> {
        self.after
    }

    pub(crate) fn counted_behind(&mut self, events: u64) {
        self.behind = Some(events);
    }

    pub(crate) fn caught_up(&mut self) {
        self.catching_up = false;
        self.since = Instant::now();
    }
}

/// How many events of their streams the followers of this process named `name` have not handed
/// out yet, the most of them, as last counted (`None`: none counted yet).
pub fn events_behind(name: &str) -> Option<u64> {
    of_each_follower(|progress| (progress.name == name).then_some(progress.behind).flatten())
        .into_iter()
        .max()
}

/// How long the followers of this process named `name` have been catching up without handing
/// out an event, the longest of them, in seconds (0 when they are live).
pub fn seconds_stalled(name: &str) -> f64 {
    stalled_followers(Duration::ZERO)
        .into_iter()
        .filter(|(stalled, _)| *stalled == name)
        .map(|(_, still)| still.as_secs_f64())
        .fold(0.0, f64::max)
}

/// The followers of this process that are catching up and have made no progress for `limit`,
/// with how long.
pub fn stalled_followers(limit: Duration) -> Vec<(&'static str, Duration)> {
    of_each_follower(|progress| {
        let still = progress.since.elapsed();
        (progress.catching_up && still >= limit).then_some((progress.name, still))
    })
}

/// What `pick` finds in each follower of this process (the ones it finds something in).
fn of_each_follower<T>(pick: impl Fn(&Progress) -> Option<T>) -> Vec<T> {
    let followers = FOLLOWERS.lock().unwrap_or_else(|e| e.into_inner());
    followers
        .iter()
        .filter_map(Weak::upgrade)
        .filter_map(|progress| pick(&progress.lock().unwrap_or_else(|e| e.into_inner())))
        .collect()
}
