//! A connection's bounded queue of events, from the hub to the connection's task,
//! which also carries the hub's decision to drop the connection (it fell
//! behind, or the server is stopping).
//!
//! Hand-written over tokio's bounded `mpsc` because that costs about 800 bytes
//! per connection (its channel, semaphore and first block of slots) whether
//! anything is queued or not; 10,000 idle WebSockets paid 8 MB for it. This
//! one is a locked `VecDeque` and a waker in one small allocation, and its
//! storage is let go whenever the connection has drained it. Carrying the
//! kick here too spares each connection a cancellation token and its waiter
//! (about 250 bytes, and a lock taken on every wake-up).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use futures_util::task::AtomicWaker;

use crate::hub::Traffic;
use crate::hub::event::Outgoing;

/// Makes a queue holding at most `capacity` events.
pub fn bounded(capacity: usize) -> (Outbox, Inbox) {
    let queue = Arc::new(Queue {
        state: Mutex::new(State::default()),
        waker: AtomicWaker::new(),
        capacity: capacity.max(1),
        traffic: Traffic::default(),
    });
    (
        Outbox {
            queue: Arc::clone(&queue),
        },
        Inbox { queue },
    )
}

/// The hub's end: queues events without waiting.
#[derive(Debug)]
pub struct Outbox {
    queue: Arc<Queue>,
}

/// The connection's end: waits for events and takes them in batches.
#[derive(Debug)]
pub struct Inbox {
    queue: Arc<Queue>,
}

/// The queue is full: the connection is not keeping up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

/// Why the hub dropped a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kick {
    /// Its queue filled up: it is not reading fast enough.
    TooSlow,
    /// The server is shutting down.
    ServerStopping,
}

/// What a connection's task gets next.
#[derive(Debug)]
pub enum Next {
    /// An event to send.
    Event(Arc<Outgoing>),
    /// The hub dropped the connection; queued events are not sent.
    Kicked(Kick),
    /// The hub let go of the connection and everything queued was taken.
    Closed,
}

/// What both ends share.
#[derive(Debug)]
struct Queue {
    state: Mutex<State>,
    waker: AtomicWaker,
    capacity: usize,
    /// The connection's byte counters: both ends hold this block anyway.
    traffic: Traffic,
}

/// The events, whether the hub's end is gone, and whether it kicked the connection.
#[derive(Debug, Default)]
struct State {
    events: VecDeque<Arc<Outgoing>>,
    outbox_dropped: bool,
    kicked: Option<Kick>,
}

impl Queue {
    /// The state; a poisoned lock is taken over (no section can leave it inconsistent).
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Outbox {
    /// The connection's byte counters.
    pub fn traffic(&self) -> &Traffic {
        &self.queue.traffic
    }

    /// Queues `event`; the connection's task is added to `wakeups`, to be
    /// woken once the caller has let go of its locks. A kicked connection
    /// gets nothing more.
    ///
    /// # Errors
    /// [`Full`] when `capacity` events are already waiting.
    pub fn push(&self, event: Arc<Outgoing>, wakeups: &mut Wakeups) -> Result<(), Full> {
        {
            let mut state = self.queue.state();
            if state.kicked.is_some() {
                return Ok(());
            }
            if state.events.len() >= self.queue.capacity {
                return Err(Full);
            }
            state.events.push_back(event);
        }
        wakeups.add(&self.queue.waker);
        Ok(())
    }

    /// Drops the connection for `reason`: its task learns of it next, before
    /// any queued event. A slow connection's queue is let go at once; a
    /// stopping server's is kept, for the task to write out before its
    /// goodbye. `false` when it was kicked already.
    pub fn kick(&self, reason: Kick, wakeups: &mut Wakeups) -> bool {
        {
            let mut state = self.queue.state();
            if state.kicked.is_some() {
                return false;
            }
            state.kicked = Some(reason);
            if reason == Kick::TooSlow {
                state.events = VecDeque::new();
            }
        }
        wakeups.add(&self.queue.waker);
        true
    }
}

/// Connection tasks to wake, collected while the hub's lock is held and
/// woken when this is dropped: a task woken under the lock could run on the
/// other core straight into it. Declare it before the lock's guard, so it is
/// dropped (and wakes) after the guard.
#[derive(Debug, Default)]
pub struct Wakeups(Vec<Waker>);

impl Wakeups {
    /// Takes the task registered in `waker`, if it waits.
    fn add(&mut self, waker: &AtomicWaker) {
        if let Some(task) = waker.take() {
            self.0.push(task);
        }
    }
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        for task in self.0.drain(..) {
            task.wake();
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.queue.state().outbox_dropped = true;
        self.queue.waker.wake();
    }
}

impl Inbox {
    /// The most events a transport writes in one batch.
    pub const MAX_BATCH: usize = 256;

    /// Takes every event still queued: what a connection writes before its
    /// goodbye when the server stops.
    pub fn take_remaining(&mut self) -> Vec<Arc<Outgoing>> {
        let mut remaining = Vec::new();
        self.drain_into(&mut remaining, usize::MAX);
        remaining
    }

    /// Moves events already queued onto `events`, until it holds
    /// [`Self::MAX_BATCH`]: a transport writes them in one go instead of one
    /// wake-up each.
    pub fn take_queued(&mut self, events: &mut Vec<Arc<Outgoing>>) {
        self.drain_into(events, Self::MAX_BATCH);
    }

    /// Waits for the next event, the kick or the end.
    pub fn next(&self) -> impl Future<Output = Next> + Send + '_ {
        self.wait_for(Self::try_next)
    }

    /// Resolves once the connection is kicked, with the reason: a write in
    /// progress races this, so a peer that stopped reading cannot hold its
    /// task forever.
    pub fn kicked(&self) -> impl Future<Output = Kick> + Send + '_ {
        self.wait_for(|inbox| inbox.queue.state().kicked)
    }

    /// Polls `ready` until it gives a value, registering for a wake-up in
    /// between. A closure rather than an `async fn`: the future lives in
    /// every idle connection's, and this way it is two pointers.
    fn wait_for<T>(
        &self,
        ready: impl Fn(&Self) -> Option<T> + Send + 'static,
    ) -> impl Future<Output = T> + Send + '_ {
        poll_fn(move |cx| {
            if let Some(value) = ready(self) {
                return Poll::Ready(value);
            }
            self.queue.waker.register(cx.waker());
            // A push between the look and the registration woke nobody.
            ready(self).map_or(Poll::Pending, Poll::Ready)
        })
    }

    /// What is next, if anything: the kick comes before queued events.
    fn try_next(&self) -> Option<Next> {
        let mut state = self.queue.state();
        if let Some(reason) = state.kicked {
            return Some(Next::Kicked(reason));
        }
        match state.events.pop_front() {
            Some(event) => {
                release_if_drained(&mut state);
                Some(Next::Event(event))
            }
            None if state.outbox_dropped => Some(Next::Closed),
            None => None,
        }
    }

    /// Moves queued events onto `events` until it holds `max`.
    fn drain_into(&mut self, events: &mut Vec<Arc<Outgoing>>, max: usize) {
        let mut state = self.queue.state();
        let take = max.saturating_sub(events.len()).min(state.events.len());
        events.extend(state.events.drain(..take));
        release_if_drained(&mut state);
    }

    /// The connection's byte counters.
    pub fn traffic(&self) -> &Traffic {
        &self.queue.traffic
    }

    /// The most events the queue holds.
    pub fn capacity(&self) -> usize {
        self.queue.capacity
    }
}

/// Lets go of the queue's storage once it is empty, so a burst does not leave
/// an idle connection holding room for 1,024 events.
fn release_if_drained(state: &mut State) {
    if state.events.is_empty() && state.events.capacity() > 0 {
        state.events = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::event::Event;

    impl Outbox {
        fn push_now(&self, event: Arc<Outgoing>) -> Result<(), Full> {
            self.push(event, &mut Wakeups::default())
        }

        fn kick_now(&self, reason: Kick) -> bool {
            self.kick(reason, &mut Wakeups::default())
        }
    }

    fn queued(inbox: &Inbox) -> usize {
        inbox.queue.state().events.len()
    }

    fn notice(text: &str) -> Arc<Outgoing> {
        Outgoing::new(Event::Notice(text.into()))
    }

    fn text(event: &Outgoing) -> String {
        match &event.event {
            Event::Notice(text) => text.clone(),
            other => panic!("not a notice: {other:?}"),
        }
    }

    async fn next_event(inbox: &mut Inbox) -> String {
        match inbox.next().await {
            Next::Event(event) => text(&event),
            other => panic!("not an event: {other:?}"),
        }
    }

    #[tokio::test]
    async fn events_arrive_in_order_and_the_queue_is_bounded() {
        let (outbox, mut inbox) = bounded(2);
        assert_eq!(outbox.push_now(notice("a")), Ok(()));
        assert_eq!(outbox.push_now(notice("b")), Ok(()));
        assert_eq!(outbox.push_now(notice("c")), Err(Full));
        assert_eq!(queued(&inbox), 2);
        assert_eq!(next_event(&mut inbox).await, "a");
        let mut batch = Vec::new();
        inbox.drain_into(&mut batch, 10);
        assert_eq!(batch.iter().map(|e| text(e)).collect::<Vec<_>>(), ["b"]);
        assert_eq!(queued(&inbox), 0);
        assert_eq!(inbox.queue.state().events.capacity(), 0, "storage let go");
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_and_sees_the_end() {
        let (outbox, mut inbox) = bounded(4);
        let receiver = tokio::spawn(async move {
            let first = next_event(&mut inbox).await;
            (first, matches!(inbox.next().await, Next::Closed))
        });
        tokio::task::yield_now().await;
        outbox.push_now(notice("late")).unwrap();
        drop(outbox);
        assert_eq!(receiver.await.unwrap(), ("late".into(), true));
    }

    #[tokio::test]
    async fn a_kick_comes_before_queued_events_and_stops_further_ones() {
        let (outbox, inbox) = bounded(4);
        outbox.push_now(notice("queued")).unwrap();
        let waiting = tokio::spawn(async move {
            let reason = inbox.kicked().await;
            (reason, inbox)
        });
        tokio::task::yield_now().await;
        assert!(outbox.kick_now(Kick::TooSlow));
        assert!(
            !outbox.kick_now(Kick::ServerStopping),
            "the first reason stays"
        );
        let (reason, inbox) = waiting.await.unwrap();
        assert_eq!(reason, Kick::TooSlow);
        assert_eq!(outbox.push_now(notice("after")), Ok(()));
        assert_eq!(queued(&inbox), 0, "nothing is queued once kicked");
        assert!(matches!(inbox.next().await, Next::Kicked(Kick::TooSlow)));
    }

    #[tokio::test]
    async fn a_stopping_server_keeps_what_was_queued_for_the_goodbye() {
        let (outbox, mut inbox) = bounded(4);
        outbox.push_now(notice("said before the stop")).unwrap();
        assert!(outbox.kick_now(Kick::ServerStopping));
        assert!(matches!(
            inbox.next().await,
            Next::Kicked(Kick::ServerStopping)
        ));
        let mut rest = Vec::new();
        inbox.drain_into(&mut rest, usize::MAX);
        assert_eq!(
            rest.iter().map(|e| text(e)).collect::<Vec<_>>(),
            ["said before the stop"]
        );
    }

    #[test]
    fn a_batch_stops_at_its_limit() {
        let (outbox, mut inbox) = bounded(8);
        for n in 0..5 {
            outbox.push_now(notice(&n.to_string())).unwrap();
        }
        let mut batch = vec![notice("already")];
        inbox.drain_into(&mut batch, 3);
        assert_eq!(batch.len(), 3);
        assert_eq!(queued(&inbox), 3);
    }
}
