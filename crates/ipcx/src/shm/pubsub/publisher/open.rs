//! A channel's publisher made: the channel created (its first publisher),
//! or another publisher attached to it.

use std::time::Duration;

use super::super::*;
use super::Publisher;
use crate::endpoint::{Endpoint, Overflow, WaitStrategy};
use crate::error::{Error, ErrorKind, Result};
use crate::shm::segment::Segment;
use crate::sys;
use crate::wait::primitive::Ordering;

impl Publisher {
    /// Creates the channel `url` (`shm:name?slots=256&max_msg=64KiB&overflow=block`).
    pub fn create(url: &str) -> Result<Publisher> {
        Publisher::create_endpoint(&Endpoint::parse(url)?)
    }

    /// Creates the channel `url` for messages of one type, `schema`:
    /// publishers and subscribers that open it typed must name the same
    /// (see [`Subscriber::open_typed`]); `ipcx ls` shows it.
    pub fn create_typed(url: &str, schema: &Schema) -> Result<Publisher> {
        Publisher::create_as(&Endpoint::parse(url)?, Some(schema))
    }

    /// [`Publisher::create`] with a parsed endpoint.
    pub fn create_endpoint(ep: &Endpoint) -> Result<Publisher> {
        Publisher::create_as(ep, None)
    }

    fn create_as(ep: &Endpoint, schema: Option<&Schema>) -> Result<Publisher> {
        need_shm(ep, "create")?;
        let o = ep.options();
        // A typed channel's chunk holds one value unless ?max_msg= says more.
        let chunk = match schema {
            Some(s) if !o.max_msg_given => s.size as usize,
            _ => chunk_size_for(ep),
        };
        let bad_max = |reason: String| {
            Error::new(
                ErrorKind::InvalidOption {
                    scheme: "shm",
                    option: "max_msg".into(),
                    reason,
                },
                "create",
            )
            .at(ep)
        };
        if chunk > u32::MAX as usize / 2 {
            return Err(bad_max(
                "must be under 2 GiB for publish/subscribe chunks".into(),
            ));
        }
        if let Some(s) = schema.filter(|s| s.size as usize > chunk) {
            return Err(bad_max(format!("smaller than one {s}")));
        }
        let layout = Layout::new(o.slots, chunk);
        let mut sized = ep.clone();
        sized.options_mut().size = layout.total;
        let ch = Channel {
            seg: Segment::create_endpoint(&sized)?,
            layout,
        };
        if let Some(schema) = schema {
            // Before the magic that publishes the channel.
            ch.schema().store(schema);
        }
        Ok(Publisher::init(ch, o.overflow, o.wait, o.spin))
    }

    /// Writes a fresh channel's facts and this publisher's entry, magic
    /// last, and becomes its first publisher.
    pub(in crate::shm::pubsub) fn init(
        ch: Channel,
        overflow: Overflow,
        wait: WaitStrategy,
        spin: Duration,
    ) -> Publisher {
        let layout = ch.layout;
        let i = ch.info();
        let pid = sys::process::pid();
        i.version.store(VERSION, Ordering::Relaxed);
        i.overflow.store(overflow as u32, Ordering::Relaxed);
        i.slots.store(layout.slots as u32, Ordering::Relaxed);
        i.chunks.store(layout.chunks as u32, Ordering::Relaxed);
        i.chunk_size
            .store(layout.chunk_size as u32, Ordering::Relaxed);
        let me = &ch.publishers().entries[0];
        me.pid.store(pid, Ordering::Relaxed);
        me.start.store(
            sys::process::start_time(pid).unwrap_or(0),
            Ordering::Relaxed,
        );
        ch.publishers().count.store(1, Ordering::Relaxed);
        // The segment is fresh (all zero): every subscriber entry is FREE,
        // every chunk free, every slot empty.
        i.magic.store(MAGIC, Ordering::Release);
        Publisher {
            ch,
            overflow,
            wait,
            spin,
            entry: 0,
            pid,
            recent_free: Default::default(),
            cursor_floor: Default::default(),
            ringer: Default::default(),
        }
    }

    /// Attaches another publisher to the existing channel `url` (up to
    /// [`MAX_PUBLISHERS`]); publishers take turns through a lock in the
    /// channel, each message whole. The creator keeps the name: when it
    /// exits, others attached carry on, but nobody new can open the channel.
    pub fn open(url: &str) -> Result<Publisher> {
        Publisher::open_as(url, None)
    }

    /// [`Publisher::open`] for a typed channel: it must carry `schema`
    /// ([`ErrorKind::Handshake`] naming both if not).
    pub fn open_typed(url: &str, schema: &Schema) -> Result<Publisher> {
        Publisher::open_as(url, Some(schema))
    }

    fn open_as(url: &str, schema: Option<&Schema>) -> Result<Publisher> {
        let ep = Endpoint::parse(url)?;
        let ch = open_channel(&ep)?;
        if let Some(want) = schema {
            ch.schema().check(want, "open").map_err(|e| e.at(&ep))?;
        }
        let pid = sys::process::pid();
        let start = sys::process::start_time(pid).unwrap_or(0);
        let p = ch.publishers();
        let Some(entry) = (0..MAX_PUBLISHERS).find(|&k| {
            // An entry is free, or its publisher died (then freed first).
            ch.reclaim_publisher(k);
            // Held as CLAIMING until our start time is there: a survivor
            // must never judge our pid by the last user's start time.
            p.entries[k]
                .pid
                .compare_exchange(0, CLAIMING_PLACE, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        }) else {
            return Err(Error::new(
                ErrorKind::LimitReached(format!(
                    "the channel already has {MAX_PUBLISHERS} publishers; close one, or send through one of them"
                )),
                "open",
            )
            .at(&ep));
        };
        p.entries[entry].start.store(start, Ordering::Release);
        p.entries[entry].loaned.store(0, Ordering::Release);
        p.count.fetch_add(1, Ordering::AcqRel);
        p.entries[entry].pid.store(pid, Ordering::Release);
        ch.info().publisher_gone.store(0, Ordering::Release);
        let o = ep.options();
        let overflow = match ch.info().overflow.load(Ordering::Relaxed) {
            x if x == Overflow::DropOldest as u32 => Overflow::DropOldest,
            x if x == Overflow::Fail as u32 => Overflow::Fail,
            _ => Overflow::Block,
        };
        Ok(Publisher {
            ch,
            overflow,
            wait: o.wait,
            spin: o.spin,
            entry,
            pid,
            recent_free: Default::default(),
            cursor_floor: Default::default(),
            ringer: Default::default(),
        })
    }
}
