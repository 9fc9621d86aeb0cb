//! What a [`Link`] on a message queue or a journal adds: priorities
//! (`mq:`), message types (`sysvmq:`), the queue's depth and record
//! sequence numbers (`journal:`).

use std::time::Duration;

use super::{Link, Until};
use crate::error::Result;

impl Link {
    /// Sends one message with `priority` on an `mq:` link, where the
    /// highest priority is taken first (`0`, the lowest, is what
    /// [`Link::send`] gives). Other links have no priorities: any other
    /// value is refused there ([`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported)).
    pub fn send_with_priority(&mut self, msg: &[u8], priority: u32) -> Result<()> {
        self.tx.send_with_priority(msg, priority, Until::Forever)
    }

    /// [`Link::send_with_priority`] without waiting, as [`Link::try_send`].
    pub fn try_send_with_priority(&mut self, msg: &[u8], priority: u32) -> Result<()> {
        self.tx.send_with_priority(msg, priority, Until::NoWait)
    }

    /// [`Link::send_with_priority`] waiting at most `timeout`, as
    /// [`Link::send_timeout`].
    pub fn send_timeout_with_priority(
        &mut self,
        msg: &[u8],
        priority: u32,
        timeout: Duration,
    ) -> Result<()> {
        self.tx
            .send_with_priority(msg, priority, Until::after(timeout))
    }

    /// Sends one message with the System V message type `mtype` (> 0) on
    /// a `sysvmq:` link (a plain [`Link::send`] gives `?type=`, default 1).
    pub fn send_typed(&mut self, msg: &[u8], mtype: i64) -> Result<()> {
        self.tx.send_typed(msg, mtype, Until::Forever)
    }

    /// [`Link::send_typed`] without waiting, as [`Link::try_send`].
    pub fn try_send_typed(&mut self, msg: &[u8], mtype: i64) -> Result<()> {
        self.tx.send_typed(msg, mtype, Until::NoWait)
    }

    /// Receives the first message `msgtyp` selects on a `sysvmq:` link, and
    /// its type: `0` the first of any type (what [`Link::recv`] takes),
    /// `N > 0` the first of type N, `-N` the first of the lowest type up to
    /// N (`msgrcv(2)`).
    pub fn recv_typed(&mut self, msgtyp: i64) -> Result<(Vec<u8>, i64)> {
        self.rx.recv_typed(msgtyp, Until::Forever)
    }

    /// [`Link::recv_typed`] without waiting: `WouldBlock` when nothing is
    /// selected.
    pub fn try_recv_typed(&mut self, msgtyp: i64) -> Result<(Vec<u8>, i64)> {
        self.rx.recv_typed(msgtyp, Until::NoWait)
    }

    /// The type of the message received last (`sysvmq:` links; `0` on
    /// others).
    pub fn last_type(&self) -> i64 {
        self.rx.last_type()
    }

    /// Receives one message and its priority (`mq:` links; `0` on others).
    /// After [`Link::try_recv`] or [`Link::recv_timeout`],
    /// [`Link::last_priority`] tells the same.
    pub fn recv_with_priority(&mut self) -> Result<(Vec<u8>, u32)> {
        let msg = self.recv()?;
        Ok((msg, self.last_priority()))
    }

    /// The priority of the message received last (`mq:` links; `0` on
    /// others).
    pub fn last_priority(&self) -> u32 {
        self.rx.last_priority()
    }

    /// How many messages wait in the queue this link takes from (`mq:`,
    /// `sysvmq:`; `None` elsewhere).
    pub fn queued(&self) -> Option<Result<usize>> {
        self.rx.queued()
    }

    /// The sequence number of the record received last (`journal:` links;
    /// `0` on others).
    pub fn last_seq(&self) -> u64 {
        self.rx.last_seq()
    }
}
