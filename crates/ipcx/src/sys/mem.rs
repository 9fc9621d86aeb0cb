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
