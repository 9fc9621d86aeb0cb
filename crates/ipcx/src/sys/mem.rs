//! Memory copies for the layers that copy through raw pointers.

/// `std::ptr::copy_nonoverlapping(src, dst, len)`, without the cliff of
/// [`crate::copy`] (large copies between buffers whose relation modulo
/// 4 KiB is unlucky go in 64-byte blocks): for message payloads copied in
/// and out of shared memory and mappings.
///
/// # Safety
///
/// As `copy_nonoverlapping`: `src` valid for reading and `dst` for
/// writing `len` bytes, the two not overlapping.
pub unsafe fn copy(src: *const u8, dst: *mut u8, len: usize) {
    if !crate::copy::slow(dst, src, len) {
        // SAFETY: the caller's contract.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
        return;
    }
    let mut at = 0;
    while at < len {
        let n = crate::copy::BLOCK.min(len - at);
        // SAFETY: `at + n <= len`: within what the caller vouched for.
        unsafe { std::ptr::copy_nonoverlapping(src.add(at), dst.add(at), n) };
        at += n;
    }
}

/// Zeroed memory of this process's own, mapped privately: the kernel
/// gives each page only when it is first touched, so a large buffer of
/// which little is used costs little (a heap allocation of the same size
/// may be recycled memory that `calloc` clears whole). See `mmap(2)`
/// `MAP_ANONYMOUS | MAP_PRIVATE`.
pub struct Pages {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned, like a `Box<[u8]>`: nothing else in this
// process or another can reach it.
unsafe impl Send for Pages {}
// SAFETY: as above; shared access is through `&[u8]` only.
unsafe impl Sync for Pages {}

impl Pages {
    /// `len` (> 0) zeroed bytes.
    pub fn new(len: usize) -> std::io::Result<Pages> {
        // SAFETY: a new anonymous mapping aliases nothing.
        let p = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE,
            )?
        };
        let ptr = std::ptr::NonNull::new(p.cast::<u8>())
            .ok_or_else(|| std::io::Error::other("mmap gave a null mapping"))?;
        Ok(Pages { ptr, len })
    }
}

impl std::ops::Deref for Pages {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` bytes mapped readable and writable for our
        // lifetime, zero-filled at first, written only through `&mut self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for Pages {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: our own mapping, no view of it outlives `self`.
        if let Err(e) = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) } {
            tracing::warn!(error = %e, "munmap of a read buffer failed");
        }
    }
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pages({} bytes)", self.len)
    }
}

#[cfg(test)]
mod tests {
    /// Destination 0 to 79 bytes after the source modulo 4 KiB (the slow
    /// window and around it), lengths around a block and the threshold:
    /// the bytes arrive whole.
    #[test]
    fn copies_are_exact_in_every_window() {
        let src: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
        for d in 0..80usize {
            for len in [0, 1, 63, 64, 65, 2047, 2048, 2113, 9_000] {
                let mut dst = vec![0xAA_u8; 14_000];
                // Where in `dst` to write so that dst - src = d (mod 4096).
                let k = (src.as_ptr() as usize + d).wrapping_sub(dst.as_ptr() as usize) % 4096;
                // SAFETY: `src` holds 10 000 bytes, `dst` 14 000 (k < 4096,
                // len <= 9 000); two allocations do not overlap.
                unsafe { super::copy(src.as_ptr(), dst.as_mut_ptr().add(k), len) };
                assert_eq!(&dst[k..k + len], &src[..len], "d {d} len {len}");
                assert!(dst[..k].iter().chain(&dst[k + len..]).all(|&b| b == 0xAA));
            }
        }
    }
}
