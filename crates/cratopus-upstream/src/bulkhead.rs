//! A bulkhead: a cap on the requests in flight through one route or to one upstream, so that
//! one slow dependency cannot tie up every connection, task and buffer of the gateway while
//! its requests pile up (the other routes keep their share, like a ship's compartments).
//!
//! A request over the cap is refused at once, or, when the bulkhead has a queue, waits for a
//! place: at most `max_waiting` requests wait, each at most `max_wait`; past either it is
//! refused. The queue absorbs a short burst without refusing it; keeping it short and brief
//! keeps the latency it adds bounded. Waiters are served first come, first served (tokio's
//! semaphore is fair), and a new request never jumps the queue.
//!
//! The place is held by a [`BulkheadPermit`], an owned value that the response body carries
//! until the response has been sent in full or abandoned: "in flight" ends when the response
//! does, not when its head arrives.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// The runtime form of a bulkhead's queue (`BulkheadQueueConfig` in cratopus-config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// Requests that may wait for a place at once.
    pub max_waiting: usize,
    /// How long one request may wait.
    pub max_wait: Duration,
}

/// Why [`Bulkhead::acquire`] refused a request. The gateway answers 503 either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejected {
    /// Every place is taken and there is no queue, or the queue is full.
    Full,
    /// The request waited `max_wait` in the queue without getting a place.
    TimedOut,
}

impl Rejected {
    /// `full` or `timed_out`, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejected::Full => "full",
            Rejected::TimedOut => "timed_out",
        }
    }
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rejected::Full => "too many requests in flight",
            Rejected::TimedOut => "no place became free in time",
        })
    }
}

impl std::error::Error for Rejected {}

/// A cap on requests in flight, with an optional short queue.
#[derive(Debug)]
pub struct Bulkhead {
    max_inflight: usize,
    semaphore: Arc<Semaphore>,
    queue: Option<QueueSettings>,
    waiting: AtomicUsize,
    rejected: AtomicU64,
}

impl Bulkhead {
    /// A bulkhead of `max_inflight` places (at most tokio's `Semaphore::MAX_PERMITS`), with a
    /// queue or without.
    pub fn new(max_inflight: usize, queue: Option<QueueSettings>) -> Bulkhead {
        let max_inflight = max_inflight.min(Semaphore::MAX_PERMITS);
        Bulkhead {
            max_inflight,
            semaphore: Arc::new(Semaphore::new(max_inflight)),
            queue,
            waiting: AtomicUsize::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    /// Takes a place, waiting in the queue if there is one. Without a queue this never awaits.
    /// Cancel-safe: a waiter dropped while it waits leaves the queue.
    pub async fn acquire(&self) -> Result<BulkheadPermit, Rejected> {
        match self.semaphore.clone().try_acquire_owned() {
            Ok(permit) => return Ok(BulkheadPermit { _permit: permit }),
            // The semaphore is never closed; treat it as full rather than panic.
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {}
        }
        let Some(queue) = self.queue else {
            return Err(self.reject(Rejected::Full));
        };
        let Some(_waiter) = Waiter::enter(&self.waiting, queue.max_waiting) else {
            return Err(self.reject(Rejected::Full));
        };
        match tokio::time::timeout(queue.max_wait, self.semaphore.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(BulkheadPermit { _permit: permit }),
            Ok(Err(_closed)) => Err(self.reject(Rejected::Full)),
            Err(_elapsed) => Err(self.reject(Rejected::TimedOut)),
        }
    }

    /// Takes a place if one is free now, never waiting (also when the bulkhead has a queue).
    pub fn try_acquire(&self) -> Result<BulkheadPermit, Rejected> {
        self.semaphore
            .clone()
            .try_acquire_owned()
            .map(|permit| BulkheadPermit { _permit: permit })
            .map_err(|_| self.reject(Rejected::Full))
    }

    /// Requests holding a place now.
    pub fn inflight(&self) -> usize {
        self.max_inflight.saturating_sub(self.semaphore.available_permits())
    }

    /// Requests waiting in the queue now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// The cap.
    pub fn max_inflight(&self) -> usize {
        self.max_inflight
    }

    /// Requests refused since the bulkhead was built (a counter for metrics).
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    fn reject(&self, why: Rejected) -> Rejected {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        why
    }
}

/// One place in a [`Bulkhead`], given back when dropped. Owned (`'static`, `Send`), so the
/// response body can hold it to the end of the response.
#[derive(Debug)]
#[must_use = "the place is given back as soon as the permit is dropped"]
pub struct BulkheadPermit {
    _permit: OwnedSemaphorePermit,
}

/// A place in the queue, given back when the wait ends in any way (place, timeout, or the
/// request future dropped).
struct Waiter<'a>(&'a AtomicUsize);

impl<'a> Waiter<'a> {
    /// Joins the queue unless `max` requests already wait in it.
    fn enter(waiting: &'a AtomicUsize, max: usize) -> Option<Waiter<'a>> {
        waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| Waiter(waiting))
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[tokio::test]
    async fn without_a_queue_excess_is_refused_at_once() {
        let b = Bulkhead::new(2, None);
        let p1 = b.acquire().await.unwrap();
        let _p2 = b.acquire().await.unwrap();
        assert_eq!(b.inflight(), 2);
        assert_eq!(b.acquire().await.unwrap_err(), Rejected::Full);
        assert_eq!(b.try_acquire().unwrap_err(), Rejected::Full);
        assert_eq!(b.rejected(), 2);
        drop(p1);
        assert_eq!(b.inflight(), 1);
        let _p3 = b.try_acquire().unwrap();
        assert_eq!(b.inflight(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gets_the_next_free_place() {
        let b = Bulkhead::new(
            1,
            Some(QueueSettings {
                max_waiting: 1,
                max_wait: Duration::from_millis(100),
            }),
        );
        let first = b.acquire().await.unwrap();
        let mut second = pin!(b.acquire());
        assert!(poll_once(second.as_mut()).is_pending());
        assert_eq!(b.waiting(), 1);
        // The queue is full: the third is refused without waiting.
        assert_eq!(b.acquire().await.unwrap_err(), Rejected::Full);
        tokio::time::advance(Duration::from_millis(60)).await;
        drop(first);
        // The freed place is the waiter's: a new request does not jump the queue.
        assert_eq!(b.try_acquire().unwrap_err(), Rejected::Full);
        let _second = second.await.expect("got the freed place");
        assert_eq!((b.inflight(), b.waiting()), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gives_up_after_max_wait() {
        let b = Bulkhead::new(
            1,
            Some(QueueSettings {
                max_waiting: 4,
                max_wait: Duration::from_millis(250),
            }),
        );
        let _held = b.acquire().await.unwrap();
        let start = tokio::time::Instant::now();
        assert_eq!(b.acquire().await.unwrap_err(), Rejected::TimedOut);
        // Paused time jumps straight to the deadline: this measures the deadline, not a clock.
        assert_eq!(start.elapsed(), Duration::from_millis(250));
        assert_eq!(b.waiting(), 0);
        assert_eq!(b.rejected(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_waiter_leaves_the_queue() {
        let b = Bulkhead::new(
            1,
            Some(QueueSettings {
                max_waiting: 1,
                max_wait: Duration::from_secs(1),
            }),
        );
        let held = b.acquire().await.unwrap();
        {
            let mut waiter = pin!(b.acquire());
            assert!(poll_once(waiter.as_mut()).is_pending());
            assert_eq!(b.waiting(), 1);
        } // the client went away
        assert_eq!(b.waiting(), 0);
        drop(held);
        // Its place in the semaphore's queue went with it: the next request gets the place.
        let _p = b.try_acquire().unwrap();
    }

    #[tokio::test]
    async fn the_permit_outlives_the_borrow() {
        let b = Arc::new(Bulkhead::new(1, None));
        let permit = b.acquire().await.unwrap();
        // Moved into another task, as a response body would carry it.
        let task = tokio::spawn(async move {
            tokio::task::yield_now().await;
            drop(permit);
        });
        task.await.unwrap();
        assert_eq!(b.inflight(), 0);
        let zero = Bulkhead::new(0, None);
        assert_eq!(zero.acquire().await.unwrap_err(), Rejected::Full);
    }
}
