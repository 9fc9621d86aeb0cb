//! The writer of a channel: loans, sending, and retiring dead subscribers.
//! Creating and opening one is in `publisher/open.rs`.

mod open;

use std::marker::PhantomData;
use std::mem::size_of;
use std::time::Duration;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::*;
use crate::endpoint::{Overflow, WaitStrategy};
use crate::error::{Error, ErrorKind, Result};
use crate::sys;
use crate::wait::primitive::{Ordering, fence, spin_hint};
use crate::wait::{WaitEnd, Waiting, notify, wait};

/// The one writer of a channel.
///
/// ```no_run
/// use ipcx::shm::{Publisher, Subscriber};
/// # fn main() -> ipcx::Result<()> {
/// let mut publisher = Publisher::create("shm:prices?slots=1024&max_msg=4KiB")?;
/// let subscriber = Subscriber::open("shm:prices")?;
/// let mut loan = publisher.loan(5)?;
/// loan.copy_from_slice(b"hello"); // written in place, in shared memory
/// loan.send()?;
/// let sample = subscriber.recv()?; // read in place, no copy
/// assert_eq!(&*sample, b"hello");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Publisher {
    pub(super) ch: Channel,
    /// The subscribers' doorbells this publisher rang, kept open.
    ringer: crate::wait::doorbell::Ringer,
    overflow: Overflow,
    wait: WaitStrategy,
    spin: Duration,
    /// This publisher's entry among the channel's publishers.
    entry: usize,
    /// Our pid, the publish lock's value while we hold it (getpid is a
    /// system call: not one per message).
    pid: u32,
    /// Chunks this publisher saw come free when it released the ring's
    /// hold on them, most recent last: taken first by the next loans, as
    /// their mask lines (and payloads) are still in this CPU's cache.
    recent_free: std::cell::RefCell<Vec<u32>>,
    /// A lower bound of every subscriber's cursor, as last read: cursors
    /// only grow, and a new subscriber starts at the tail, so while it is
    /// past the slot to reuse there is no need to read the cursors (each
    /// read pulls a subscriber's cache line over).
    cursor_floor: std::cell::Cell<u64>,
}

impl Publisher {
    /// Takes the channel's publish lock; a holder that died is pushed aside.
    fn lock(&self) -> PublishLock<'_> {
        let me = self.pid;
        let p = self.ch.publishers();
        let mut spins = 0u32;
        loop {
            match p
                .lock
                .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return PublishLock(p),
                Err(holder) => {
                    spins = spins.wrapping_add(1);
                    if spins.is_multiple_of(4096) && !self.ch.publisher_alive(holder) {
                        let _ =
                            p.lock
                                .compare_exchange(holder, 0, Ordering::AcqRel, Ordering::Relaxed);
                    }
                    if spins > 64 && !cfg!(ipcx_loom) {
                        std::thread::yield_now();
                    } else {
                        spin_hint();
                    }
                }
            }
        }
    }

    /// The largest message (the chunk size).
    pub fn max_msg(&self) -> usize {
        self.ch.layout.chunk_size
    }

    /// Subscribers attached now.
    pub fn subscribers(&self) -> usize {
        self.ch.active().count()
    }

    /// Waits until at least `n` subscribers are attached (so that nothing
    /// is sent into the void), or `timeout` passes ([`ErrorKind::TimedOut`]).
    pub fn wait_for_subscribers(&self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = crate::deadline::far_after(timeout);
        let mut backoff = crate::deadline::Backoff::new(Duration::from_millis(1));
        while self.subscribers() < n {
            if !backoff.sleep_until(deadline) {
                return Err(Error::new(ErrorKind::TimedOut, "wait_for_subscribers"));
            }
        }
        Ok(())
    }

    /// Chunks no one holds (free for loans).
    pub fn free_chunks(&self) -> usize {
        (0..self.ch.layout.chunks as u32)
            .filter(|&c| self.ch.mask(c).load(Ordering::Acquire) == 0)
            .count()
    }

    /// Loans `len` bytes of shared memory to write a message into.
    pub fn loan(&mut self, len: usize) -> Result<Loan<'_>> {
        if len > self.max_msg() {
            return Err(Error::new(
                ErrorKind::MessageTooLarge {
                    len: len as u64,
                    max: self.max_msg() as u64,
                },
                "loan",
            ));
        }
        let chunk = loop {
            if let Some(c) = self.alloc() {
                // Recorded, so that survivors free it should we die first.
                self.entry().loaned.store(c + 1, Ordering::Relaxed);
                break c;
            }
            let freed = {
                let _lock = self.lock();
                self.release_consumed()
            };
            if freed {
                continue;
            }
            if self.overflow == Overflow::Fail {
                return Err(Error::new(ErrorKind::Full, "loan"));
            }
            // Subscribers hold every spare chunk: wait for one to come back,
            // or for the ring to hold chunks everyone has read.
            self.wait_space(|p| p.free_chunks() > 0 || p.releasable())?;
        };
        Ok(Loan {
            publisher: self,
            chunk,
            len,
        })
    }

    /// Loans memory for one `T`, a plain-data type (zerocopy's traits: any
    /// bit pattern is valid, no padding, no references), to fill in place.
    ///
    /// ```no_run
    /// # fn main() -> ipcx::Result<()> {
    /// let mut publisher = ipcx::shm::Publisher::create("shm:ticks?max_msg=64")?;
    /// let mut tick = publisher.loan_as::<[u64; 2]>()?;
    /// *tick = [1_700_000_000, 4242]; // written straight into shared memory
    /// tick.send()?;
    /// # Ok(()) }
    /// ```
    pub fn loan_as<T: FromBytes + IntoBytes + KnownLayout + Immutable>(
        &mut self,
    ) -> Result<TypedLoan<'_, T>> {
        if std::mem::align_of::<T>() > 64 {
            return Err(Error::new(
                ErrorKind::WrongType(format!(
                    "{} needs {}-byte alignment; chunks are 64-byte aligned",
                    std::any::type_name::<T>(),
                    std::mem::align_of::<T>()
                )),
                "loan",
            ));
        }
        let loan = self.loan(size_of::<T>())?;
        Ok(TypedLoan {
            loan,
            _type: PhantomData,
        })
    }

    /// Sends a copy of `msg` (a loan filled from it).
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        let mut loan = self.loan(msg.len())?;
        loan.copy_from_slice(msg);
        loan.send()
    }

    /// Takes the lowest free chunk: recently used chunks come back first,
    /// so the memory a busy channel touches stays small and in cache.
    fn alloc(&mut self) -> Option<u32> {
        let take = |c: u32| {
            self.ch
                .mask(c)
                .compare_exchange(0, LOANED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        };
        while let Some(c) = self.recent_free.get_mut().pop() {
            // Another publisher of the channel may have taken it since.
            if take(c) {
                return Some(c);
            }
        }
        (0..self.ch.layout.chunks as u32).find(|&c| {
            let mask = self.ch.mask(c);
            // Acquire: readers' last bit clears (release) happen before we
            // overwrite the chunk.
            mask.load(Ordering::Relaxed) == 0
                && mask
                    .compare_exchange(0, LOANED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
        })
    }

    /// Gives back the ring's hold on chunks every subscriber has read
    /// (new subscribers start at the tail, so nobody will read them again).
    /// True if any chunk came free.
    /// Called with the publish lock held.
    fn release_consumed(&self) -> bool {
        // Only what this pass frees: with several publishers, chunks pushed
        // by one pass and taken by another publisher would pile up here.
        self.recent_free.borrow_mut().clear();
        let tail = self.ch.header().tail.0.load(Ordering::Relaxed);
        let upto = self.slowest().unwrap_or(tail).min(tail);
        let released = &self.ch.publishers().released;
        // Only the last lap of slots can still hold chunks: a `released`
        // far behind (corrupt memory) must not mean 2^63 steps.
        let n = self.ch.layout.slots as u64;
        released.fetch_max(upto.saturating_sub(n), Ordering::Relaxed);
        let mut freed = false;
        while released.load(Ordering::Relaxed) < upto {
            let slot = self.ch.slot(released.load(Ordering::Relaxed));
            let chunk = slot.chunk.swap(NO_CHUNK, Ordering::Relaxed);
            if chunk != NO_CHUNK
                && self.ch.mask(chunk).fetch_and(!IN_RING, Ordering::AcqRel) == IN_RING
            {
                freed = true;
                self.recent_free.borrow_mut().push(chunk);
            }
            released.fetch_add(1, Ordering::Relaxed);
        }
        freed
    }

    pub(super) fn publish(&mut self, chunk: u32, len: usize) -> Result<()> {
        // One publisher at a time from here to the new tail.
        let _lock = self.lock();
        let h = self.ch.header();
        let s = h.tail.0.load(Ordering::Relaxed);
        let n = self.ch.layout.slots as u64;
        if s >= n && self.overflow != Overflow::DropOldest {
            // Slot s % n still holds message s - n: every subscriber must be past it.
            let free = |p: &Publisher| {
                p.cursor_floor.get() > s - n || {
                    let floor = p.slowest().unwrap_or(s);
                    p.cursor_floor.set(floor);
                    floor > s - n
                }
            };
            if !free(self) {
                // A dead subscriber must not make `fail` refuse forever.
                if self.overflow == Overflow::Fail && !(self.retire_dead() && free(self)) {
                    // The record first: a kill between the two then leaks
                    // the chunk instead of letting a survivor free it twice.
                    self.entry().loaned.store(0, Ordering::Release);
                    self.ch.mask(chunk).fetch_and(!LOANED, Ordering::Release);
                    return Err(Error::new(ErrorKind::Full, "send"));
                }
                self.wait_space(free)?;
            }
        }
        let slot = self.ch.slot(s);
        // Under drop_oldest, the message overwritten may still hold its chunk.
        let old = Some(slot.chunk.load(Ordering::Relaxed))
            .filter(|&c| s >= n && (c as usize) < self.ch.layout.chunks && c != chunk);
        // The ring's hold before the slot names the chunk: should we die in
        // between, a survivor freeing our loan leaves the ring's hold.
        let mask = self.ch.mask(chunk);
        mask.fetch_or(IN_RING, Ordering::AcqRel);
        // Seqlock write: readers that see the new sequence see the new chunk.
        slot.seq.store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        slot.chunk.store(chunk, Ordering::Relaxed);
        slot.len.store(len as u32, Ordering::Relaxed);
        slot.seq.store(s + 1, Ordering::Release);
        self.entry().loaned.store(0, Ordering::Release);
        mask.fetch_and(!LOANED, Ordering::AcqRel);
        if let Some(old) = old {
            self.ch.mask(old).fetch_and(!IN_RING, Ordering::AcqRel);
        }
        h.tail.0.store(s + 1, Ordering::Release);
        notify(&h.data.0);
        // After notify's fence: an async subscriber either sees this message
        // or has its doorbell bit seen here (the same Dekker pairing).
        let bells = self.ch.info().doorbells.load(Ordering::Relaxed);
        if bells != 0 {
            self.ring_doorbells(bells);
        }
        // Slots overwritten (drop_oldest) gave their chunk back above.
        self.ch
            .publishers()
            .released
            .fetch_max((s + 1).saturating_sub(n), Ordering::Relaxed);
        // Reading every cursor moves their cache lines here: do it in
        // batches (and whenever a loan finds no free chunk).
        if (s + 1).is_multiple_of(RELEASE_BATCH) {
            self.release_consumed();
        }
        Ok(())
    }

    /// Whether ring slots every subscriber passed still hold their chunks.
    fn releasable(&self) -> bool {
        let tail = self.ch.header().tail.0.load(Ordering::Relaxed);
        self.slowest().unwrap_or(tail).min(tail)
            > self.ch.publishers().released.load(Ordering::Relaxed)
    }

    /// The lowest cursor among attached subscribers.
    fn slowest(&self) -> Option<u64> {
        self.ch
            .active()
            .map(|i| self.ch.subscriber(i).cursor.load(Ordering::Acquire))
            .min()
    }

    /// Sleeps until `ready`, retiring dead subscribers on the way.
    fn wait_space(&self, ready: impl Fn(&Publisher) -> bool) -> Result<()> {
        loop {
            let how = Waiting {
                strategy: self.wait,
                spin: self.spin,
                deadline: None,
                peer_gone: &|| self.retire_dead(),
            };
            match wait(&self.ch.header().space.0, || ready(self), &how) {
                Ok(()) => return Ok(()),
                // A dead subscriber was retired: look again.
                Err(WaitEnd::PeerGone) | Err(WaitEnd::TimedOut) => {}
            }
        }
    }

    /// Rings the doorbells of the subscribers in `bells` (only those
    /// that sleep ask for it).
    fn ring_doorbells(&self, bells: u64) {
        if let Some(name) = self.ch.seg.name() {
            self.ringer.ring(name, bells);
        }
    }

    pub(super) fn entry(&self) -> &PublisherEntry {
        &self.ch.publishers().entries[self.entry]
    }

    /// Retires subscribers whose process died, returning every chunk they
    /// held, and frees the entries of publishers that died, returning the
    /// chunk each had on loan; true if anything was. Waits for space do
    /// this by themselves every liveness interval.
    pub fn recover(&self) -> bool {
        self.retire_dead()
    }

    /// Retires dead subscribers and publishers; true if any was.
    fn retire_dead(&self) -> bool {
        let mut any = false;
        for k in (0..MAX_PUBLISHERS).filter(|&k| k != self.entry) {
            any |= self.ch.reclaim_publisher(k);
        }
        for i in self.ch.active() {
            let e = self.ch.subscriber(i);
            let dead = |e: &SubscriberEntry| {
                !sys::process::is_alive(
                    e.pid.load(Ordering::Acquire),
                    e.start.load(Ordering::Acquire),
                )
            };
            if dead(e) && self.ch.detach_if(i, dead) {
                tracing::info!(
                    pid = e.pid.load(Ordering::Relaxed),
                    "retired dead subscriber"
                );
                any = true;
            }
        }
        any
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let p = self.ch.publishers();
        p.entries[self.entry].pid.store(0, Ordering::Release);
        if p.count.fetch_sub(1, Ordering::AcqRel) != 1 {
            return; // others still publish
        }
        let h = self.ch.header();
        h.info.0.publisher_gone.store(1, Ordering::Release);
        h.data.0.wake_all();
        fence(Ordering::SeqCst);
        let bells = self.ch.info().doorbells.load(Ordering::Relaxed);
        self.ring_doorbells(bells);
    }
}

/// The channel's publish lock, released on drop.
struct PublishLock<'a>(&'a Publishers);

impl Drop for PublishLock<'_> {
    fn drop(&mut self) {
        self.0.lock.store(0, Ordering::Release);
    }
}
