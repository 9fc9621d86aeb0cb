//! [`Poller`]: one thread waits on many links, listeners, queues, signals
//! and event counts at once, as `epoll`, `zmq_poll` and iceoryx2's waitset
//! allow.
//!
//! A poller owns what it watches: [`Poller::add`] takes a source and gives
//! back its key, [`Poller::wait`] returns the keys of the sources that are
//! ready, and [`Poller::get_mut`] lends one to receive from (or
//! [`Poller::remove`] gives it back). Owning them lets the poller be
//! exact: a source is ready when a receive would give something now —
//! a message on its descriptor, a message a stream link already read
//! ahead, an `shm:` ring holding one, a peer gone, an error — and stays
//! ready (level-triggered) until that receive is made. Receive until
//! `try_recv` finds nothing, or once per wake-up: both work.
//!
//! It is epoll underneath (the `polling` crate, level-triggered); `shm:`
//! links take part through their doorbells, System V queues and journals
//! through the eventfd their watcher raises, and an `shm:` peer that was
//! killed (which rings nothing) is looked for every liveness interval.
//! Listeners: a socket one through an epoll of its own (the listening
//! socket and the peers whose hello is due), an `shm:` one through the
//! doorbell its connectors ring (and a look every liveness interval), a
//! queue one through an eventfd that holds 1 while no link it handed out
//! lives. A FIFO listener cannot take part (see [`Poller::add`]).
//!
//! ```
//! # fn main() -> ipcx::Result<()> {
//! # let dir = std::env::temp_dir().join(format!("ipcx-doc-poller-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let url = format!("unix:{}/app.sock", dir.display());
//! use std::time::Duration;
//! use ipcx::{Link, Listener, Poller, Source};
//!
//! let mut poller = Poller::new()?;
//! let listener = poller.add(Source::Listener(Listener::bind(&url)?))?;
//! let mut client = Link::connect(&url)?;
//! client.send(b"hello")?;
//! let mut said = None;
//! while said.is_none() {
//!     for key in poller.wait(Some(Duration::from_secs(5)))?.to_vec() {
//!         match poller.get_mut(key) {
//!             Some(Source::Listener(l)) => {
//!                 let peer = l.accept()?;
//!                 poller.add(Source::Link(peer))?;
//!             }
//!             Some(Source::Link(peer)) => said = peer.try_recv()?,
//!             _ => {}
//!         }
//!     }
//! }
//! assert_eq!(said.as_deref(), Some(&b"hello"[..]));
//! # drop(poller); std::fs::remove_dir_all(&dir).ok();
//! # let _ = listener;
//! # Ok(()) }
//! ```

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};

/// What a [`Poller`] can watch.
pub trait Pollable {
    /// The descriptor that is readable while there may be something to
    /// take; `None` if there is none (the poller then refuses it).
    fn poll_fd(&self) -> Option<BorrowedFd<'_>>;

    /// Whether something can be taken now whatever the descriptor says (a
    /// message already read ahead). Asked before each wait for sources
    /// lent out since, and for those that were ready last time.
    fn ready_now(&mut self) -> bool {
        false
    }

    /// Asked when the descriptor is readable: whether something can really
    /// be taken. A descriptor that can stay readable after what it
    /// announced was taken (a doorbell, an eventfd a thread raises) is
    /// lowered here, so that the poller reports only what is there.
    fn confirm(&mut self) -> bool {
        true
    }

    /// How often [`Pollable::ready_now`] must be asked although the
    /// descriptor stays quiet (a peer that dies without a word).
    fn check_every(&self) -> Option<Duration> {
        None
    }
}

/// The sources ipcx makes, in one type for a poller that watches several
/// kinds (`Poller<Source>`). A poller of one kind (`Poller<Link>`) needs
/// no enum.
#[derive(Debug)]
pub enum Source {
    /// A link: ready when a receive would give a message, an error or the
    /// end.
    Link(crate::Link),
    /// A listener (not a FIFO one, which has no descriptor): ready when
    /// an accept would not wait.
    Listener(crate::Listener),
    /// Signal subscriptions: ready when a signal came.
    Signals(crate::signal::Signals),
    /// An eventfd: ready when its count is above zero.
    EventFd(crate::sync::EventFd),
}

impl Source {
    fn pollable(&self) -> &dyn Pollable {
        match self {
            Source::Link(l) => l,
            Source::Listener(l) => l,
            Source::Signals(s) => s,
            Source::EventFd(e) => e,
        }
    }

    fn pollable_mut(&mut self) -> &mut dyn Pollable {
        match self {
            Source::Link(l) => l,
            Source::Listener(l) => l,
            Source::Signals(s) => s,
            Source::EventFd(e) => e,
        }
    }
}

/// Each kind as it is on its own.
impl Pollable for Source {
    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        self.pollable().poll_fd()
    }

    fn ready_now(&mut self) -> bool {
        self.pollable_mut().ready_now()
    }

    fn confirm(&mut self) -> bool {
        self.pollable_mut().confirm()
    }

    fn check_every(&self) -> Option<Duration> {
        self.pollable().check_every()
    }
}

impl Pollable for crate::signal::Signals {
    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(std::os::fd::AsFd::as_fd(self))
    }
}

impl Pollable for crate::sync::EventFd {
    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(std::os::fd::AsFd::as_fd(self))
    }
}

/// A source [`Poller::add`] could not take, given back with why.
#[derive(Debug)]
pub struct Refused<S> {
    /// Why.
    pub error: Error,
    /// The source, unchanged.
    pub source: S,
}

impl<S> From<Refused<S>> for Error {
    fn from(r: Refused<S>) -> Error {
        r.error
    }
}

/// One source and what the poller keeps of it.
#[derive(Debug)]
struct Entry<S> {
    source: S,
    /// Its next liveness look, if it needs them.
    check_at: Option<Instant>,
    /// Already in the list to look at before the next wait.
    listed: bool,
}

/// Waits on many sources at once; see the [module docs](self).
#[derive(Debug)]
pub struct Poller<S: Pollable = Source> {
    epoll: polling::Poller,
    events: polling::Events,
    entries: Vec<Option<Entry<S>>>,
    free: Vec<usize>,
    /// Keys to ask `ready_now` before the next wait: lent out since the
    /// last, or ready then.
    recheck: Vec<usize>,
    ready: Vec<usize>,
}

impl<S: Pollable> Poller<S> {
    /// An empty poller.
    pub fn new() -> Result<Poller<S>> {
        Ok(Poller {
            epoll: polling::Poller::new().map_err(|e| Error::io("poller", e))?,
            events: polling::Events::new(),
            entries: Vec::new(),
            free: Vec::new(),
            recheck: Vec::new(),
            ready: Vec::new(),
        })
    }

    /// Watches `source`; returns its key. A source without a descriptor
    /// (a FIFO listener) is refused and given back.
    pub fn add(&mut self, source: S) -> std::result::Result<usize, Refused<S>> {
        let key = self.free.last().copied().unwrap_or(self.entries.len());
        let added = match source.poll_fd() {
            None => Err(Error::new(
                ErrorKind::Unsupported(
                    "this source has no descriptor to wait on (a FIFO listener \
                     hands out one link at a time: accept on a thread of its own)"
                        .into(),
                ),
                "poll",
            )),
            // SAFETY: the poller owns `source` from here on, and deletes
            // the descriptor from epoll before it gives the source back
            // (`remove`) or drops it (`Drop`), so epoll never holds a
            // descriptor number that was closed and reused meanwhile.
            #[allow(unsafe_code)]
            Some(fd) => unsafe {
                self.epoll.add_with_mode(
                    &fd,
                    polling::Event::readable(key),
                    polling::PollMode::Level,
                )
            }
            .map_err(|e| Error::io("poll", e)),
        };
        if let Err(error) = added {
            return Err(Refused { error, source });
        }
        if self.free.last() == Some(&key) {
            self.free.pop();
        }
        let entry = Entry {
            check_at: source.check_every().map(|_| Instant::now()),
            source,
            listed: true,
        };
        match self.entries.get_mut(key) {
            Some(free) => *free = Some(entry),
            None => self.entries.push(Some(entry)),
        }
        self.recheck.push(key);
        Ok(key)
    }

    /// Stops watching the source of `key` and gives it back.
    pub fn remove(&mut self, key: usize) -> Option<S> {
        let entry = self.entries.get_mut(key)?.take()?;
        if let Some(fd) = entry.source.poll_fd() {
            let _ = self.epoll.delete(fd);
        }
        self.free.push(key);
        Some(entry.source)
    }

    /// The source of `key`.
    pub fn get(&self, key: usize) -> Option<&S> {
        self.entries.get(key)?.as_ref().map(|s| &s.source)
    }

    /// The source of `key`, to receive from (it is looked at again before
    /// the next wait: what it has left is still reported). Use it, do not
    /// replace it (`*poller.get_mut(k)? = other`): the poller watches the
    /// descriptor it had when added; `remove` it and `add` the new one.
    pub fn get_mut(&mut self, key: usize) -> Option<&mut S> {
        let entry = self.entries.get_mut(key)?.as_mut()?;
        if !entry.listed {
            entry.listed = true;
            self.recheck.push(key);
        }
        Some(&mut entry.source)
    }

    /// How many sources are watched.
    pub fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys of every source watched.
    pub fn keys(&self) -> impl Iterator<Item = usize> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(k, s)| s.as_ref().map(|_| k))
    }

    /// Waits up to `timeout` (`None`: as long as it takes) until at least
    /// one source is ready; returns the keys of those that are (empty if
    /// the time ran out). Each key appears once.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<&[usize]> {
        let deadline = timeout.and_then(crate::deadline::after);
        loop {
            self.ready.clear();
            let now = Instant::now();
            // Sources that may hold something their descriptor does not
            // show, and those whose liveness look is due.
            let mut recheck = std::mem::take(&mut self.recheck);
            let mut next_check: Option<Instant> = None;
            for (key, entry) in self.entries.iter_mut().enumerate() {
                let Some(entry) = entry else { continue };
                if let (Some(at), Some(every)) = (entry.check_at, entry.source.check_every()) {
                    let due = if at <= now {
                        recheck.push(key);
                        now.checked_add(every)
                            .unwrap_or_else(|| crate::deadline::far_after(every))
                    } else {
                        at
                    };
                    entry.check_at = Some(due);
                    // When that look is due, not an interval from now
                    // (each wait would push it on).
                    next_check = Some(next_check.map_or(due, |n| n.min(due)));
                }
            }
            recheck.sort_unstable();
            recheck.dedup();
            for key in recheck {
                if let Some(Some(entry)) = self.entries.get_mut(key) {
                    entry.listed = false;
                    if entry.source.ready_now() {
                        self.ready.push(key);
                    }
                }
            }
            let wait_until = if self.ready.is_empty() {
                match (deadline, next_check) {
                    (Some(d), Some(c)) => Some(d.min(c)),
                    (d, c) => d.or(c),
                }
            } else {
                Some(now)
            };
            self.events.clear();
            let timeout = wait_until.map(|t| t.saturating_duration_since(Instant::now()));
            match self.epoll.wait(&mut self.events, timeout) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("poll", e)),
            }
            for ev in self.events.iter() {
                if let Some(Some(entry)) = self.entries.get_mut(ev.key)
                    && entry.source.confirm()
                {
                    self.ready.push(ev.key);
                }
            }
            self.ready.sort_unstable();
            self.ready.dedup();
            // Ready now, and until a receive says otherwise: asked again.
            for &key in &self.ready {
                if let Some(Some(entry)) = self.entries.get_mut(key)
                    && !entry.listed
                {
                    entry.listed = true;
                    self.recheck.push(key);
                }
            }
            if !self.ready.is_empty() || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(&self.ready);
            }
        }
    }
}

impl<S: Pollable> Drop for Poller<S> {
    fn drop(&mut self) {
        for entry in self.entries.iter().flatten() {
            if let Some(fd) = entry.source.poll_fd() {
                let _ = self.epoll.delete(fd);
            }
        }
    }
}
