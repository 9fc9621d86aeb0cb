//! [`Loan`] and [`TypedLoan`]: a publisher's chunk, written in place and
//! then sent.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::LOANED;
use super::publisher::Publisher;
use crate::error::Result;

/// Shared memory loaned to the publisher: write the message, then
/// [`Loan::send`]. Dropped unsent, the chunk goes back to the pool and
/// nothing is delivered.
#[derive(Debug)]
pub struct Loan<'a> {
    pub(super) publisher: &'a mut Publisher,
    pub(super) chunk: u32,
    pub(super) len: usize,
}

impl Loan<'_> {
    /// Where the loaned memory lies in the segment's data region (the same
    /// place the subscribers' samples will show).
    pub fn offset(&self) -> usize {
        self.publisher.ch.layout.data + self.chunk as usize * self.publisher.ch.layout.chunk_size
    }

    /// Publishes the message to every subscriber.
    pub fn send(self) -> Result<()> {
        // Published, not given back: the drop that would free it is skipped.
        let mut loan = std::mem::ManuallyDrop::new(self);
        let (chunk, len) = (loan.chunk, loan.len);
        loan.publisher.publish(chunk, len)
    }
}

impl Deref for Loan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the chunk is loaned (its LOANED bit keeps it from anyone
        // else) and `len` fits in it (checked by `loan`).
        unsafe { std::slice::from_raw_parts(self.publisher.ch.chunk_ptr(self.chunk), self.len) }
    }
}

impl DerefMut for Loan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; the loan is the only writer of the chunk,
        // and `&mut self` makes this the only reference to it in-process.
        unsafe { std::slice::from_raw_parts_mut(self.publisher.ch.chunk_ptr(self.chunk), self.len) }
    }
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        // Dropped unsent (`send` skips this): the chunk goes back.
        self.publisher.entry().loaned.store(0, Ordering::Release);
        self.publisher
            .ch
            .mask(self.chunk)
            .fetch_and(!LOANED, Ordering::Release);
    }
}

/// A [`Loan`] seen as one `T` (see [`Publisher::loan_as`]).
#[derive(Debug)]
pub struct TypedLoan<'a, T> {
    pub(super) loan: Loan<'a>,
    pub(super) _type: PhantomData<T>,
}

impl<T> TypedLoan<'_, T> {
    /// Publishes the value to every subscriber.
    pub fn send(self) -> Result<()> {
        self.loan.send()
    }
}

impl<T: FromBytes + KnownLayout + Immutable> Deref for TypedLoan<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // Chunks are 64-byte aligned and exactly size_of::<T>() long here
        // (`loan_as` refuses alignments over 64 and sizes the loan).
        #[allow(clippy::expect_used)]
        T::ref_from_bytes(&self.loan).expect("a loan sized and aligned for T")
    }
}

impl<T: FromBytes + IntoBytes + KnownLayout + Immutable> DerefMut for TypedLoan<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // As in `deref`.
        #[allow(clippy::expect_used)]
        T::mut_from_bytes(&mut self.loan).expect("a loan sized and aligned for T")
    }
}
