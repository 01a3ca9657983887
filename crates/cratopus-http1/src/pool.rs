//! Read and write buffers lent to a connection while it has a request in hand, so that an idle
//! keep-alive connection holds none (issue 16: 10,000 idle connections in 20 MiB).
//!
//! Two sizes: [`SMALL`] for an ordinary head and body pieces, [`LARGE`] for a head that
//! outgrows it. The free lists are per thread (no lock, no atomic: a tokio worker takes and
//! gives back on its own list; a buffer given back on another thread lands on that thread's
//! list) and bounded ([`KEEP_SMALL`], [`KEEP_LARGE`] a thread), so that memory goes back to the
//! allocator once a burst of connections is over.
//!
//! Measured against plain allocation with mimalloc, the gateway's allocator
//! (`benches/codec.rs`, `buffer/*`, on this 2-core machine under load): one buffer taken and
//! given back in a loop costs 41 ns from the pool against 31 ns from mimalloc (whose own
//! per-thread free list is then the pool); 256 buffers out at once and then back — what many
//! connections with a request each do — cost 35 ns a buffer from the pool against 77 ns from
//! mimalloc. The pool is kept: it wins where it matters, bounds what a burst leaves behind, and
//! never hands out a buffer of the wrong size.

use bytes::BytesMut;
use std::cell::RefCell;

/// The usual buffer: a request head and the first body bytes fit.
pub const SMALL: usize = 4 * 1024;
/// For heads beyond [`SMALL`] (up to the configured head limit, reading on grows it).
pub const LARGE: usize = 32 * 1024;
/// Free buffers kept per thread.
pub const KEEP_SMALL: usize = 256;
pub const KEEP_LARGE: usize = 16;

struct Free {
    small: Vec<BytesMut>,
    large: Vec<BytesMut>,
}

thread_local! {
    static FREE: RefCell<Free> = const { RefCell::new(Free { small: Vec::new(), large: Vec::new() }) };
}

/// A buffer of [`SMALL`] capacity, empty.
pub fn take() -> BytesMut {
    FREE.with(|f| f.borrow_mut().small.pop())
        .unwrap_or_else(|| BytesMut::with_capacity(SMALL))
}

/// A buffer of [`LARGE`] capacity, empty.
pub fn take_large() -> BytesMut {
    FREE.with(|f| f.borrow_mut().large.pop())
        .unwrap_or_else(|| BytesMut::with_capacity(LARGE))
}

/// Gives a buffer back. Kept only if no `Bytes` split from it is still alive and it is one of
/// the two sizes (it may have been grown past them); otherwise freed.
pub fn give(mut buf: BytesMut) {
    buf.clear();
    // After `split_to`/`freeze` the buffer's front may belong to data still in flight; reclaim
    // succeeds only when the whole allocation is ours again.
    let cap = buf.capacity();
    if cap < SMALL && !buf.try_reclaim(SMALL) {
        return;
    }
    if cap < LARGE && cap > SMALL && !buf.try_reclaim(LARGE) {
        return;
    }
    let cap = buf.capacity();
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if cap == SMALL && f.small.len() < KEEP_SMALL {
            f.small.push(buf);
        } else if cap == LARGE && f.large.len() < KEEP_LARGE {
            f.large.push(buf);
        }
    });
}

/// Buffers kept on this thread (small, large): for tests and metrics.
pub fn kept() -> (usize, usize) {
    FREE.with(|f| {
        let f = f.borrow();
        (f.small.len(), f.large.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn reuses_and_bounds() {
        let a = take();
        assert_eq!(a.capacity(), SMALL);
        let before = kept().0;
        give(a);
        assert_eq!(kept().0, before + 1);
        let b = take();
        assert_eq!(kept().0, before);
        give(b);
        // A buffer grown past both sizes is freed, not kept.
        let mut big = take();
        big.put_slice(&[0u8; LARGE + 1]);
        let n = kept();
        give(big);
        assert_eq!(kept(), n);
        // One whose front is still shared by live data is not kept either.
        let mut c = take();
        c.put_slice(b"hello world");
        let data = c.split_to(5).freeze();
        let n = kept();
        give(c);
        assert_eq!(kept(), n);
        drop(data);
    }
}
