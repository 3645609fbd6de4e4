//! Queue.

use super::*;

/// A message in the fake queue.
#[derive(Debug, Clone)]
pub struct Queued {
    pub text: String,
    pub visible_at_ms: u64,
    pub enqueued_ms: u64,
    /// Deliveries to the consumer so far.
    pub attempts: u32,
}

/// A queue like Cloudflare Queues on the fake clock: delayed messages, per-message retries with
/// a delay, `max_retries`, and a dead-letter queue. Sends can be made to fail.
#[derive(Clone)]
pub struct FakeQueue {
    clock: FakeClock,
    pub messages: Rc<RefCell<Vec<Queued>>>,
    pub dead: Rc<RefCell<Vec<Queued>>>,
    /// The next n sends fail.
    pub fail_next: Rc<Cell<u32>>,
    /// Every successful send: (text, delay_secs).
    pub sent: Rc<RefCell<Vec<(String, u32)>>>,
    /// How long a message is kept (Cloudflare: 24 h on the free plan); older ones vanish.
    pub retention_ms: Rc<Cell<u64>>,
    /// Messages that vanished past the retention.
    pub expired: Rc<RefCell<Vec<Queued>>>,
}

impl FakeQueue {
    pub fn new(clock: &FakeClock) -> Self {
        FakeQueue {
            clock: clock.clone(),
            messages: Rc::default(),
            dead: Rc::default(),
            fail_next: Rc::default(),
            sent: Rc::default(),
            retention_ms: Rc::new(Cell::new(86_400_000)),
            expired: Rc::default(),
        }
    }

    /// Up to `n` messages visible now (or, if none is, the earliest ones once visible), taken
    /// out of the queue as one batch. Messages past the retention vanish on the way.
    pub fn take_batch(&self, n: usize) -> Vec<Queued> {
        let Some(first) = self.take_next() else {
            return Vec::new();
        };
        let visible = first.visible_at_ms.max(self.clock.now_ms());
        let mut batch = vec![first];
        while batch.len() < n {
            let next = self
                .messages
                .borrow()
                .iter()
                .position(|m| m.visible_at_ms <= visible);
            match next {
                Some(i) => batch.push(self.messages.borrow_mut().remove(i)),
                None => break,
            }
        }
        batch
    }

    pub fn len(&self) -> usize {
        self.messages.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The earliest visible message, taken out of the queue. Messages past the retention
    /// vanish on the way, as on Cloudflare: not dead-lettered, just gone.
    pub fn take_next(&self) -> Option<Queued> {
        let retention = self.retention_ms.get();
        let mut messages = self.messages.borrow_mut();
        let (kept, gone): (Vec<Queued>, Vec<Queued>) = messages
            .drain(..)
            .partition(|m| m.visible_at_ms <= m.enqueued_ms.saturating_add(retention));
        *messages = kept;
        self.expired.borrow_mut().extend(gone);
        let (i, _) = messages
            .iter()
            .enumerate()
            .min_by_key(|(_, m)| m.visible_at_ms)?;
        Some(messages.remove(i))
    }

    /// Puts a message back to be delivered again after `delay_secs`.
    pub fn retry(&self, mut message: Queued, delay_secs: u32) {
        message.visible_at_ms = self.clock.now_ms() + u64::from(delay_secs) * 1000;
        self.messages.borrow_mut().push(message);
    }
}

impl crate::ports::Queue for FakeQueue {
    async fn send_batch(&self, messages: &[(String, u32)]) -> Result<(), crate::ports::QueueError> {
        if messages.len() > 100 || messages.iter().map(|(m, _)| m.len()).sum::<usize>() > 256_000 {
            return Err(crate::ports::QueueError(
                "batch larger than 100 messages or 256 KB (fake)".into(),
            ));
        }
        if self.fail_next.get() > 0 {
            self.fail_next.set(self.fail_next.get() - 1);
            return Err(crate::ports::QueueError("queue unavailable (fake)".into()));
        }
        for (message, delay) in messages {
            self.push(message, *delay);
        }
        Ok(())
    }

    async fn send(&self, message: &str, delay_secs: u32) -> Result<(), crate::ports::QueueError> {
        if self.fail_next.get() > 0 {
            self.fail_next.set(self.fail_next.get() - 1);
            return Err(crate::ports::QueueError("queue unavailable (fake)".into()));
        }
        self.push(message, delay_secs);
        Ok(())
    }
}

impl FakeQueue {
    fn push(&self, message: &str, delay_secs: u32) {
        if message.len() > 128_000 {
            panic!("a queue message over 128 KB (Cloudflare refuses it)");
        }
        let now = self.clock.now_ms();
        self.sent
            .borrow_mut()
            .push((message.to_owned(), delay_secs));
        self.messages.borrow_mut().push(Queued {
            text: message.to_owned(),
            visible_at_ms: now + u64::from(delay_secs) * 1000,
            enqueued_ms: now,
            attempts: 0,
        });
    }
}
