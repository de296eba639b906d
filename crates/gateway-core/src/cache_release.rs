//! Asking every cache of recent things to let go, once a burst has passed.
//!
//! The caches that spare the hot path a lookup (the MQTT adapter's topics,
//! the aggregator's recent pairs, the units memo) keep the last entries a
//! burst put in them: small chunks (a topic, a device id's text) allocated
//! in the middle of the burst's buffers. Once those buffers are freed, the
//! kept chunks split the heap's free memory into holes smaller than a page,
//! which `malloc_trim` cannot give back: 1.4 MB in ~1 260 holes after
//! 10 000 devices × 5 metrics (`docs/PERFORMANCE.md`). The gateway's heap
//! check calls [`ask`] before it trims; each cache empties itself on its
//! owner's thread, so no cache needs a lock.
//!
//! What an owner pays on its hot path: a [`Seen`] is one relaxed load of a
//! counter nobody writes during traffic; a [`Listener`] polled in a task's
//! `select!` is the same load and a comparison of wakers, the lock taken
//! only the first time (and when the task's waker changes).

use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// Bumped by every [`ask`]; an owner whose last look saw another value
/// empties its cache.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The tasks to wake when a release is asked, by listener number.
static WAITING: Mutex<Vec<(u64, Waker)>> = Mutex::new(Vec::new());

static NEXT_LISTENER: AtomicU64 = AtomicU64::new(0);

/// Asks every cache to empty itself: each [`Seen`] answers true at its
/// next look, each [`Listener`]'s task is woken. Returns at once; the
/// caches empty on their owners' threads moments later.
pub fn ask() {
    GENERATION.fetch_add(1, Ordering::Release);
    let waiting = WAITING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (_, waker) in waiting.iter() {
        waker.wake_by_ref();
    }
}

fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// For a cache looked at on every use (a thread's memo): whether a
/// release was asked since the last look.
#[derive(Debug)]
pub struct Seen(u64);

impl Default for Seen {
    fn default() -> Self {
        Self(generation())
    }
}

impl Seen {
    /// True once per [`ask`] since the last call (several asks in between
    /// count as one).
    #[inline]
    pub fn asked(&mut self) -> bool {
        let now = generation();
        if now == self.0 {
            return false;
        }
        self.0 = now;
        true
    }
}

/// For a cache owned by a task that may sit idle after a burst: the task
/// waits on [`Listener::asked`] beside its other work and is woken by
/// [`ask`]. Meant for one task: it keeps that task's waker.
#[derive(Debug)]
pub struct Listener {
    seen: Seen,
    id: u64,
    /// The waker [`WAITING`] holds for this listener, if any.
    registered: Option<Waker>,
}

impl Default for Listener {
    fn default() -> Self {
        Self {
            seen: Seen::default(),
            id: NEXT_LISTENER.fetch_add(1, Ordering::Relaxed),
            registered: None,
        }
    }
}

impl Listener {
    /// Resolves once a release is asked (since the last time it resolved).
    pub async fn asked(&mut self) {
        poll_fn(|cx| self.poll_asked(cx)).await;
    }

    fn poll_asked(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.seen.asked() {
            return Poll::Ready(());
        }
        if self
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        let waker = cx.waker().clone();
        {
            let mut waiting = WAITING
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match waiting.iter_mut().find(|(id, _)| *id == self.id) {
                Some((_, w)) => w.clone_from(&waker),
                None => waiting.push((self.id, waker.clone())),
            }
        }
        self.registered = Some(waker);
        // An ask between the first look and the registration woke only the
        // wakers registered before it: look again.
        if self.seen.asked() {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if self.registered.is_some() {
            let mut waiting = WAITING
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            waiting.retain(|(id, _)| *id != self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn seen_answers_once_per_ask() {
        let mut seen = Seen::default();
        assert!(!seen.asked());
        ask();
        ask();
        assert!(seen.asked());
        assert!(!seen.asked());
    }

    #[tokio::test]
    async fn an_idle_listener_is_woken_by_an_ask() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut listener = Listener::default();
            let _ = tx.send(());
            for _ in 0..2 {
                listener.asked().await;
                let _ = tx.send(());
            }
        });
        rx.recv().await.expect("listening");
        // Parked on the listener (nothing else wakes it): each ask must.
        for _ in 0..2 {
            tokio::task::yield_now().await;
            ask();
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("woken by the ask")
                .expect("listening");
        }
        task.await.expect("listener task");
    }
}
