//! Clock and executor.

use super::*;

struct ClockState {
    now_ms: Cell<u64>,
    sleepers: RefCell<Vec<(u64, Waker)>>,
}

/// A virtual clock: time moves only when every task waits, straight to the next deadline.
/// Clones share the same time.
#[derive(Clone)]
pub struct FakeClock(Rc<ClockState>);

impl FakeClock {
    pub fn at(now_ms: u64) -> Self {
        FakeClock(Rc::new(ClockState {
            now_ms: Cell::new(now_ms),
            sleepers: RefCell::new(Vec::new()),
        }))
    }

    /// Moves time forward (between steps of a test).
    pub fn advance(&self, ms: u64) {
        self.0.now_ms.set(self.0.now_ms.get() + ms);
    }

    pub fn set_secs(&self, secs: u64) {
        self.0.now_ms.set(secs * 1000);
    }

    /// Runs `future` to completion, moving time forward whenever nothing else can progress.
    /// Panics on a deadlock (every task waiting on something other than the clock).
    pub fn run<F: Future>(&self, future: F) -> F::Output {
        let flag = Arc::new(Flag(AtomicBool::new(true)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if flag.0.swap(false, Ordering::SeqCst) {
                if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                    return out;
                }
                continue;
            }
            // Nothing was woken: jump to the earliest deadline and wake its sleepers.
            let next = self.0.sleepers.borrow().iter().map(|(t, _)| *t).min();
            let Some(next) = next else {
                panic!("deadlock: no task can progress and no timer is pending");
            };
            if next > self.0.now_ms.get() {
                self.0.now_ms.set(next);
            }
            let now = self.0.now_ms.get();
            let due: Vec<Waker> = {
                let mut sleepers = self.0.sleepers.borrow_mut();
                let (due, rest): (Vec<_>, Vec<_>) =
                    sleepers.drain(..).partition(|(t, _)| *t <= now);
                *sleepers = rest;
                due.into_iter().map(|(_, w)| w).collect()
            };
            for w in due {
                w.wake();
            }
        }
    }
}

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

struct Sleep {
    clock: FakeClock,
    deadline: u64,
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.clock.0.now_ms.get() >= self.deadline {
            return Poll::Ready(());
        }
        self.clock
            .0
            .sleepers
            .borrow_mut()
            .push((self.deadline, cx.waker().clone()));
        Poll::Pending
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.0.now_ms.get()
    }

    async fn sleep(&self, ms: u64) {
        Sleep {
            clock: self.clone(),
            deadline: self.0.now_ms.get() + ms,
        }
        .await
    }
}
