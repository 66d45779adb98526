//! Channels of events to whoever subscribed (the registry's changes, the
//! watcher's loads): bounded, and never waited on by the publisher.
//!
//! A subscriber that stops reading (an embedding that keeps the receiver
//! and forgets it) would otherwise hold every event from then on. Each
//! channel holds at most [`BACKLOG`] unread events; past that, events are
//! dropped for that subscriber alone, and the log says so once each time
//! it falls behind. A dropped receiver unsubscribes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Mutex;

use crate::sync::lock;

/// Unread events a subscriber may have before newer ones are dropped for
/// it: a directory's worth of reloads read late. (The channel takes room
/// for them all when it is made.)
pub(crate) const BACKLOG: usize = 1024;

/// The subscribers to one kind of event.
pub(crate) struct Subscribers<E> {
    /// What they are told about, for the log.
    what: &'static str,
    senders: Mutex<Vec<Subscriber<E>>>,
}

struct Subscriber<E> {
    sender: SyncSender<E>,
    /// Whether its last event was dropped: said in the log once.
    behind: AtomicBool,
}

impl<E: Clone> Subscribers<E> {
    pub(crate) fn new(what: &'static str) -> Self {
        Subscribers {
            what,
            senders: Mutex::new(Vec::new()),
        }
    }

    /// A new subscriber's end: every event from now on.
    pub(crate) fn subscribe(&self) -> Receiver<E> {
        let (sender, receiver) = sync_channel(BACKLOG);
        lock(&self.senders).push(Subscriber {
            sender,
            behind: AtomicBool::new(false),
        });
        receiver
    }

    /// Whether anyone is subscribed.
    pub(crate) fn is_empty(&self) -> bool {
        lock(&self.senders).is_empty()
    }

    /// Tells every subscriber `event`, without waiting for any; forgets
    /// those whose receiver is gone.
    pub(crate) fn publish(&self, event: &E) {
        lock(&self.senders).retain(|s| match s.sender.try_send(event.clone()) {
            Ok(()) => {
                s.behind.store(false, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_)) => {
                if !s.behind.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "a subscriber to {} has {BACKLOG} events unread: newer ones are \
                         dropped for it until it reads",
                        self.what
                    );
                }
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriber_that_never_reads_holds_a_bounded_backlog() {
        let subscribers = Subscribers::new("numbers");
        let stuck = subscribers.subscribe();
        for n in 0..BACKLOG * 3 {
            subscribers.publish(&n);
        }
        // The oldest are kept, the rest dropped; reading makes room again.
        let held: Vec<usize> = stuck.try_iter().collect();
        assert_eq!(held, (0..BACKLOG).collect::<Vec<_>>());
        subscribers.publish(&7);
        assert_eq!(stuck.try_recv(), Ok(7));
    }

    #[test]
    fn a_dropped_receiver_unsubscribes() {
        let subscribers = Subscribers::new("numbers");
        let kept = subscribers.subscribe();
        drop(subscribers.subscribe());
        subscribers.publish(&1);
        assert_eq!(lock(&subscribers.senders).len(), 1);
        assert_eq!(kept.try_recv(), Ok(1));
    }
}
