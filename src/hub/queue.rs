//! A connection's bounded queue of events, from the hub to the connection's task.
//!
//! Hand-written over tokio's bounded `mpsc` because that costs about 800 bytes
//! per connection (its channel, semaphore and first block of slots) whether
//! anything is queued or not; 10,000 idle WebSockets paid 8 MB for it. This
//! one is a locked `VecDeque` and a waker in one small allocation, and its
//! storage is let go whenever the connection has drained it.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use futures_util::task::AtomicWaker;

use crate::hub::event::Outgoing;

/// Makes a queue holding at most `capacity` events.
pub fn bounded(capacity: usize) -> (Outbox, Inbox) {
    let queue = Arc::new(Queue {
        state: Mutex::new(State::default()),
        waker: AtomicWaker::new(),
        capacity: capacity.max(1),
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

/// What both ends share.
#[derive(Debug)]
struct Queue {
    state: Mutex<State>,
    waker: AtomicWaker,
    capacity: usize,
}

/// The events, and whether the hub's end is gone.
#[derive(Debug, Default)]
struct State {
    events: VecDeque<Arc<Outgoing>>,
    outbox_dropped: bool,
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
    /// Queues `event` and wakes the connection.
    ///
    /// # Errors
    /// [`Full`] when `capacity` events are already waiting.
    pub fn push(&self, event: Arc<Outgoing>) -> Result<(), Full> {
        {
            let mut state = self.queue.state();
            if state.events.len() >= self.queue.capacity {
                return Err(Full);
            }
            state.events.push_back(event);
        }
        self.queue.waker.wake();
        Ok(())
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.queue.state().outbox_dropped = true;
        self.queue.waker.wake();
    }
}

impl Inbox {
    /// The next event; `None` once the hub has let go of the connection and
    /// everything queued was taken.
    pub async fn recv(&mut self) -> Option<Arc<Outgoing>> {
        poll_fn(|cx| {
            if let Some(ready) = self.try_recv() {
                return Poll::Ready(ready);
            }
            self.queue.waker.register(cx.waker());
            // An event pushed between the look and the registration woke nobody.
            match self.try_recv() {
                Some(ready) => Poll::Ready(ready),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// An event if one is queued (`Some(None)` when the hub's end is gone and
    /// the queue is empty), `None` when the connection has to wait.
    fn try_recv(&mut self) -> Option<Option<Arc<Outgoing>>> {
        let mut state = self.queue.state();
        match state.events.pop_front() {
            Some(event) => {
                release_if_drained(&mut state);
                Some(Some(event))
            }
            None if state.outbox_dropped => Some(None),
            None => None,
        }
    }

    /// Moves queued events onto `events` until it holds `max`.
    pub fn drain_into(&mut self, events: &mut Vec<Arc<Outgoing>>, max: usize) {
        let mut state = self.queue.state();
        let take = max.saturating_sub(events.len()).min(state.events.len());
        events.extend(state.events.drain(..take));
        release_if_drained(&mut state);
    }

    /// How many events are waiting.
    pub fn len(&self) -> usize {
        self.queue.state().events.len()
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    fn notice(text: &str) -> Arc<Outgoing> {
        Outgoing::new(Event::Notice(text.into()))
    }

    fn text(event: &Outgoing) -> String {
        match &event.event {
            Event::Notice(text) => text.clone(),
            other => panic!("not a notice: {other:?}"),
        }
    }

    #[tokio::test]
    async fn events_arrive_in_order_and_the_queue_is_bounded() {
        let (outbox, mut inbox) = bounded(2);
        assert_eq!(outbox.push(notice("a")), Ok(()));
        assert_eq!(outbox.push(notice("b")), Ok(()));
        assert_eq!(outbox.push(notice("c")), Err(Full));
        assert_eq!(inbox.len(), 2);
        assert_eq!(text(&inbox.recv().await.unwrap()), "a");
        let mut batch = Vec::new();
        inbox.drain_into(&mut batch, 10);
        assert_eq!(batch.iter().map(|e| text(e)).collect::<Vec<_>>(), ["b"]);
        assert!(inbox.is_empty());
        assert_eq!(inbox.queue.state().events.capacity(), 0, "storage let go");
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_and_sees_the_end() {
        let (outbox, mut inbox) = bounded(4);
        let receiver = tokio::spawn(async move {
            let first = inbox.recv().await.map(|e| text(&e));
            (first, inbox.recv().await.is_none())
        });
        tokio::task::yield_now().await;
        outbox.push(notice("late")).unwrap();
        drop(outbox);
        assert_eq!(receiver.await.unwrap(), (Some("late".into()), true));
    }

    #[test]
    fn a_batch_stops_at_its_limit() {
        let (outbox, mut inbox) = bounded(8);
        for n in 0..5 {
            outbox.push(notice(&n.to_string())).unwrap();
        }
        let mut batch = vec![notice("already")];
        inbox.drain_into(&mut batch, 3);
        assert_eq!(batch.len(), 3);
        assert_eq!(inbox.len(), 3);
    }
}
