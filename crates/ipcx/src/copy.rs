//! Copies of message bytes that avoid a cliff in `memcpy`.
//!
//! glibc's `memcpy` copies large blocks with `rep movsb`, which on the AMD
//! EPYC of these machines (glibc 2.36) is 15-30× slower when the
//! destination lies 1 to 15 bytes after the source modulo 4 KiB: 64 KiB
//! took 19 µs instead of 1.2 µs. Two buffers from `malloc` of the same
//! size lie 16 bytes apart modulo 4 KiB, and a payload 3 bytes into one
//! (after a length) copied to the start of the other is 13 bytes behind:
//! exactly the slow case, and the typed link's 64 KiB receive paid it.
//! Such copies go in 64-byte blocks (vector moves, no `rep movsb`); the
//! others are one `memcpy`.

/// Bytes of one block of a copy that avoids `rep movsb`.
pub(crate) const BLOCK: usize = 64;

/// Copies shorter than this are vector moves in `memcpy` anyway.
const SHORT: usize = 2048;

/// Whether copying `src` to `dst` hits the slow window (the destination
/// 1 to 63 bytes after the source modulo 4 KiB).
pub(crate) fn slow(dst: *const u8, src: *const u8, len: usize) -> bool {
    len >= SHORT && (1..BLOCK).contains(&((dst as usize).wrapping_sub(src as usize) % 4096))
}

/// Appends `src` to `dst` (`extend_from_slice`, without the cliff).
pub(crate) fn extend(dst: &mut Vec<u8>, src: &[u8]) {
    dst.reserve(src.len());
    let at = dst.as_ptr().wrapping_add(dst.len());
    if !slow(at, src.as_ptr(), src.len()) {
        dst.extend_from_slice(src);
        return;
    }
    for block in src.chunks(BLOCK) {
        dst.extend_from_slice(block);
    }
}

/// `src.to_vec()`, without the cliff.
pub(crate) fn to_vec(src: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    extend(&mut v, src);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Destination 0 to 79 bytes after the source modulo 4 KiB (the slow
    /// window and around it), lengths around a block and the threshold:
    /// the bytes arrive whole and in order.
    #[test]
    fn copies_are_exact_in_every_window() {
        let src: Vec<u8> = (0..16_384u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut windows = 0;
        for d in 0..80usize {
            for len in [0, 1, 63, 64, 65, SHORT - 1, SHORT, SHORT + 65, 9_000] {
                let mut dst: Vec<u8> = Vec::with_capacity(12_000);
                dst.extend_from_slice(&[0xAA; 7]);
                let at = dst.as_ptr() as usize + dst.len();
                // Where in `src` to start so that dst - src = d (mod 4096).
                let o = at.wrapping_sub(src.as_ptr() as usize).wrapping_sub(d) % 4096;
                let from = &src[o..o + len];
                windows += usize::from(slow(dst.as_ptr().wrapping_add(7), from.as_ptr(), len));
                extend(&mut dst, from);
                assert_eq!(&dst[7..], from, "d {d} len {len}");
                assert_eq!(&dst[..7], &[0xAA; 7]);
            }
        }
        // 63 relations in the window, three lengths at or over the threshold.
        assert_eq!(windows, 63 * 3);
        assert_eq!(to_vec(&src), src);
    }

    #[test]
    fn the_slow_window_is_the_one_measured() {
        let base = 0x10000 as *const u8;
        assert!(!slow(base, base, 1 << 16));
        assert!(slow(base.wrapping_add(13), base, 1 << 16));
        assert!(slow(base.wrapping_add(4096 + 1), base, 1 << 16));
        assert!(!slow(base.wrapping_add(64), base, 1 << 16));
        assert!(!slow(base.wrapping_add(13), base, 100));
    }
}
