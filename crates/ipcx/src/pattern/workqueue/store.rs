//! The journal a durable pusher keeps its jobs in
//! ([`Pusher::bind_durable`](super::Pusher::bind_durable)): a record per
//! job pushed (`J`, id, priority u32, payload), handed out (`D`, id; written before the
//! send, and undone by `U`, id, when the send did not take it) and
//! acknowledged (`A`, id). Opening it again replays them: the jobs not acknowledged
//! wait again, each with the deliveries it had. Whole segments that hold
//! only finished jobs are removed as the queue moves on.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::pusher::Job;
use super::{ACK, JOB};
use crate::error::{Error, ErrorKind, Result};
use crate::journal::{JournalReader, JournalWriter};

const DELIVERED: u8 = b'D';
const UNDONE: u8 = b'U';

/// A durable pusher's journal, and where each unfinished job's record is.
#[derive(Debug)]
pub(super) struct Store {
    writer: JournalWriter,
    /// The journal sequence number of each unfinished job's `J` record:
    /// nothing before the lowest is needed.
    at: HashMap<u64, u64>,
    buf: Vec<u8>,
}

/// What replaying a journal found.
#[derive(Debug, Default)]
pub(super) struct Recovered {
    /// The jobs not acknowledged, in the order they were pushed.
    pub(super) jobs: Vec<Job>,
    /// One past the highest job id recorded.
    pub(super) next_id: u64,
    /// How many of them had been handed out already.
    pub(super) redelivered: u64,
}

fn broken(url: &str, why: &'static str) -> Error {
    Error::new(
        ErrorKind::Foreign(format!(
            "{why}: is {url} another program's journal? give the work queue a journal of its own"
        )),
        "open",
    )
    .at(url)
}

impl Store {
    /// Opens the journal at `url` (made if missing) as its one writer and
    /// replays it.
    pub(super) fn open(url: &str) -> Result<(Store, Recovered)> {
        let writer = JournalWriter::open(url)?;
        let stat = crate::journal::stat(url)?;
        // Unfinished jobs by id (`deliveries` counting hand-outs so far),
        // with their record's seq.
        let mut jobs: BTreeMap<u64, (Job, u64)> = BTreeMap::new();
        let mut next_id = 0;
        if stat.next_seq > stat.first_seq {
            let mut r = JournalReader::open(url, stat.first_seq)?;
            while let Some((seq, rec)) = r.try_next()? {
                let (kind, id, rest) = open(&rec)
                    .ok_or_else(|| broken(url, "a journal record that is no work-queue record"))?;
                let after = id
                    .checked_add(1)
                    .ok_or_else(|| broken(url, "a job id out of range"))?;
                next_id = next_id.max(after);
                match kind {
                    JOB => {
                        let (priority, payload) = rest
                            .split_first_chunk::<4>()
                            .ok_or_else(|| broken(url, "a job record cut short"))?;
                        let job = Job {
                            id,
                            deliveries: 0,
                            priority: u32::from_le_bytes(*priority),
                            payload: Arc::from(payload),
                        };
                        jobs.insert(id, (job, seq));
                    }
                    DELIVERED => {
                        if let Some((j, _)) = jobs.get_mut(&id) {
                            j.deliveries = j.deliveries.saturating_add(1);
                        }
                    }
                    UNDONE => {
                        if let Some((j, _)) = jobs.get_mut(&id) {
                            j.deliveries = j.deliveries.saturating_sub(1);
                        }
                    }
                    ACK => {
                        jobs.remove(&id);
                    }
                    _ => return Err(broken(url, "a journal record of an unknown kind")),
                }
                if seq + 1 >= stat.next_seq {
                    break;
                }
            }
        }
        let mut recovered = Recovered {
            next_id,
            ..Recovered::default()
        };
        let mut at = HashMap::new();
        for (id, (mut job, seq)) in jobs {
            at.insert(id, seq);
            recovered.redelivered += u64::from(job.deliveries > 0);
            job.deliveries += 1;
            recovered.jobs.push(job);
        }
        let store = Store {
            writer,
            at,
            buf: Vec::new(),
        };
        Ok((store, recovered))
    }

    fn append(&mut self, kind: u8, id: u64, parts: &[&[u8]]) -> Result<u64> {
        self.buf.clear();
        self.buf.push(kind);
        self.buf.extend_from_slice(&id.to_le_bytes());
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        self.writer.append(&self.buf)
    }

    /// Records a job pushed; it is queued only once this succeeded.
    pub(super) fn pushed(&mut self, job: &Job) -> Result<()> {
        let seq = self.append(JOB, job.id, &[&job.priority.to_le_bytes(), &job.payload])?;
        self.at.insert(job.id, seq);
        Ok(())
    }

    /// Records a job about to be handed out (a failure costs only the
    /// count of its deliveries after a restart).
    pub(super) fn handing_out(&mut self, id: u64) {
        if let Err(e) = self.append(DELIVERED, id, &[]) {
            tracing::warn!(job = id, error = %e, "work queue: a hand-out not recorded");
        }
    }

    /// Undoes [`Store::handing_out`]: the send did not take the job.
    pub(super) fn not_handed_out(&mut self, id: u64) {
        if let Err(e) = self.append(UNDONE, id, &[]) {
            tracing::warn!(job = id, error = %e, "work queue: an undone hand-out not recorded");
        }
    }

    /// Records a job finished (acknowledged, or refused): it is not
    /// handed out again after a restart.
    pub(super) fn finished(&mut self, id: u64) {
        if let Err(e) = self.append(ACK, id, &[]) {
            tracing::warn!(job = id, error = %e, "work queue: an acknowledgement not recorded; the job would be handed out again after a restart");
        }
        self.at.remove(&id);
    }

    /// Removes the segments that hold only finished jobs.
    pub(super) fn compact(&mut self) {
        let floor = (self.at.values().copied().min()).unwrap_or(self.writer.next_seq());
        if let Err(e) = self.writer.release_before(floor) {
            tracing::warn!(error = %e, "work queue: finished segments not removed");
        }
    }
}

/// Kind, job id and rest of a record.
fn open(rec: &[u8]) -> Option<(u8, u64, &[u8])> {
    let (&kind, rest) = rec.split_first()?;
    let (id, rest) = rest.split_first_chunk::<8>()?;
    Some((kind, u64::from_le_bytes(*id), rest))
}
