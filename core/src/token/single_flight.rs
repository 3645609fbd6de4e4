//! Single flight: concurrent requests of one isolate that need the same credential share one
//! upstream fetch.
//!
//! Why it works by polling. A Worker isolate runs one thread, but each request has its own I/O
//! context, and a promise (a `fetch`, a timer) created by one request cannot be awaited from
//! another: workerd refuses it, or the waiter hangs. So the leader's future is never shared.
//! Instead the leader publishes its result in isolate memory ([`Flights`]), tagged with a
//! generation, and followers poll for it with their own timers ([`Clock::sleep`]).
//!
//! Why a follower cannot wait forever. A leader's request can be cancelled mid-fetch (the client
//! went away, the isolate is evicted mid-request). When its future is dropped, its
//! [`LeaderGuard`] marks the flight abandoned and followers take over at once; if it is merely
//! stuck, followers stop waiting after [`MAX_WAIT_MS`] and fetch themselves. Across
//! isolates and locations nothing is shared: there the upstream's own idempotence
//! (`stable_token`) keeps concurrent refreshes harmless.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;

use crate::ports::Clock;

/// How long a follower waits for a leader before fetching itself.
pub const MAX_WAIT_MS: u64 = 15_000;
/// How often a follower looks for the leader's result.
pub const POLL_MS: u64 = 20;

struct Flight<V> {
    /// Bumped by every new leader.
    generation: u64,
    /// When the current leader started, while it runs.
    leader_started_ms: Option<u64>,
    /// The latest finished generation and its result.
    finished: Option<(u64, V)>,
    /// A generation whose leader went away without a result.
    abandoned: Option<u64>,
}

impl<V> Default for Flight<V> {
    fn default() -> Self {
        Flight {
            generation: 0,
            leader_started_ms: None,
            finished: None,
            abandoned: None,
        }
    }
}

/// What a request is to do about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Fetch, then [`Flights::finish`] this generation.
    Lead(u64),
    /// Wait for this generation's result.
    Follow(u64),
}

/// What a follower finds when it looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found<V> {
    Ready(V),
    /// The leader is still at it.
    Waiting,
    /// The leader went away without a result: rejoin.
    Abandoned,
}

/// One isolate's flights, by key. Not `Sync`: one per isolate (a thread-local in the shell).
pub struct Flights<K, V> {
    state: RefCell<HashMap<K, Flight<V>>>,
    max_wait_ms: u64,
}

impl<K: Eq + Hash + Clone, V: Clone> Default for Flights<K, V> {
    fn default() -> Self {
        Flights::new(MAX_WAIT_MS)
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Flights<K, V> {
    pub fn new(max_wait_ms: u64) -> Self {
        Flights {
            state: RefCell::new(HashMap::new()),
            max_wait_ms,
        }
    }

    /// Leads a new generation unless a leader started less than `max_wait_ms` ago and is
    /// still running.
    pub fn join(&self, key: &K, now_ms: u64) -> Role {
        let mut state = self.state.borrow_mut();
        let flight = state.entry(key.clone()).or_default();
        match flight.leader_started_ms {
            Some(started)
                if now_ms.saturating_sub(started) < self.max_wait_ms
                    && flight.abandoned != Some(flight.generation) =>
            {
                Role::Follow(flight.generation)
            }
            _ => {
                flight.generation += 1;
                flight.leader_started_ms = Some(now_ms);
                Role::Lead(flight.generation)
            }
        }
    }

    /// Whether a leader of `key` is running now (and would be followed).
    pub fn is_running(&self, key: &K, now_ms: u64) -> bool {
        self.state.borrow().get(key).is_some_and(|flight| {
            flight.abandoned != Some(flight.generation)
                && flight
                    .leader_started_ms
                    .is_some_and(|started| now_ms.saturating_sub(started) < self.max_wait_ms)
        })
    }

    /// Publishes a leader's result.
    pub fn finish(&self, key: &K, generation: u64, value: V) {
        let mut state = self.state.borrow_mut();
        let flight = state.entry(key.clone()).or_default();
        if flight.generation == generation {
            flight.leader_started_ms = None;
        }
        flight.finished = Some((generation, value));
    }

    /// Records that a leader went away without a result.
    pub fn abandon(&self, key: &K, generation: u64) {
        let mut state = self.state.borrow_mut();
        if let Some(flight) = state.get_mut(key) {
            if flight.generation == generation {
                flight.leader_started_ms = None;
                flight.abandoned = Some(generation);
            }
        }
    }

    /// What a follower of `generation` finds now.
    pub fn look(&self, key: &K, generation: u64) -> Found<V> {
        let state = self.state.borrow();
        let Some(flight) = state.get(key) else {
            return Found::Abandoned;
        };
        match &flight.finished {
            Some((g, value)) if *g == generation => Found::Ready(value.clone()),
            _ if flight.abandoned == Some(generation) => Found::Abandoned,
            _ => Found::Waiting,
        }
    }

    /// Runs `fetch` as the leader, or shares the result of the request that already leads.
    /// `fetch` is only called (and awaited) when this request leads.
    pub async fn run<C, F, Fut>(&self, clock: &C, key: K, fetch: F) -> V
    where
        C: Clock,
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        loop {
            match self.join(&key, clock.now_ms()) {
                Role::Lead(generation) => {
                    let guard = LeaderGuard {
                        flights: self,
                        key: key.clone(),
                        generation,
                        done: false,
                    };
                    let value = fetch().await;
                    guard.finish(value.clone());
                    return value;
                }
                Role::Follow(generation) => {
                    let deadline = clock.now_ms().saturating_add(self.max_wait_ms);
                    loop {
                        clock.sleep(POLL_MS).await;
                        match self.look(&key, generation) {
                            Found::Ready(value) => return value,
                            Found::Abandoned => break,
                            Found::Waiting if clock.now_ms() >= deadline => break,
                            Found::Waiting => {}
                        }
                    }
                    // The leader is gone or stuck: join again (and most likely lead).
                }
            }
        }
    }
}

/// Held by a leader while it fetches; dropping it without [`LeaderGuard::finish`] (the
/// request was cancelled) abandons the flight so followers stop waiting at once.
pub struct LeaderGuard<'a, K: Eq + Hash + Clone, V: Clone> {
    flights: &'a Flights<K, V>,
    key: K,
    generation: u64,
    done: bool,
}

impl<K: Eq + Hash + Clone, V: Clone> LeaderGuard<'_, K, V> {
    pub fn finish(mut self, value: V) {
        self.done = true;
        self.flights.finish(&self.key, self.generation, value);
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Drop for LeaderGuard<'_, K, V> {
    fn drop(&mut self) {
        if !self.done {
            self.flights.abandon(&self.key, self.generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeClock;
    use futures_util::future::{join, select, Either};
    use std::cell::Cell;

    #[test]
    fn followers_share_the_leaders_result() {
        let clock = FakeClock::at(1_000_000);
        let flights: Flights<&str, u32> = Flights::default();
        let calls = Cell::new(0);
        let fetch = || async {
            calls.set(calls.get() + 1);
            clock.sleep(300).await;
            7
        };
        let (a, (b, c)) = clock.run(join(
            flights.run(&clock, "k", fetch),
            join(
                flights.run(&clock, "k", fetch),
                flights.run(&clock, "k", fetch),
            ),
        ));
        assert_eq!((a, b, c), (7, 7, 7));
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn keys_do_not_share() {
        let clock = FakeClock::at(0);
        let flights: Flights<&str, u32> = Flights::default();
        let calls = Cell::new(0);
        let (a, b) = clock.run(join(
            flights.run(&clock, "a", || async {
                calls.set(calls.get() + 1);
                clock.sleep(100).await;
                1
            }),
            flights.run(&clock, "b", || async {
                calls.set(calls.get() + 1);
                clock.sleep(100).await;
                2
            }),
        ));
        assert_eq!((a, b, calls.get()), (1, 2, 2));
    }

    #[test]
    fn a_later_request_after_the_flight_fetches_again() {
        let clock = FakeClock::at(0);
        let flights: Flights<&str, u32> = Flights::default();
        assert_eq!(clock.run(flights.run(&clock, "k", || async { 1 })), 1);
        assert_eq!(clock.run(flights.run(&clock, "k", || async { 2 })), 2);
    }

    #[test]
    fn a_cancelled_leader_does_not_stall_its_followers() {
        let clock = FakeClock::at(0);
        let flights: Flights<&str, u32> = Flights::default();
        // The leader's fetch would take 60 s; its request is cancelled after 50 ms (the select
        // drops it). The follower takes over at once instead of waiting 15 s.
        let leader = async {
            let fetch = flights.run(&clock, "k", || async {
                clock.sleep(60_000).await;
                1
            });
            let cancel = clock.sleep(50);
            futures_util::pin_mut!(fetch);
            futures_util::pin_mut!(cancel);
            match select(fetch, cancel).await {
                Either::Left((v, _)) => Some(v),
                Either::Right(_) => None,
            }
        };
        let follower = async {
            clock.sleep(10).await;
            let started = clock.now_ms();
            let v = flights
                .run(&clock, "k", || async {
                    clock.sleep(100).await;
                    2
                })
                .await;
            (v, clock.now_ms() - started)
        };
        let (led, (followed, waited)) = clock.run(join(leader, follower));
        assert_eq!(led, None);
        assert_eq!(followed, 2);
        assert!(waited < 500, "waited {waited} ms");
    }

    #[test]
    fn a_stuck_leader_is_given_up_after_max_wait() {
        let clock = FakeClock::at(0);
        let flights: Flights<&str, u32> = Flights::new(1_000);
        let (a, (b, waited)) = clock.run(join(
            flights.run(&clock, "k", || async {
                clock.sleep(5_000).await;
                1
            }),
            async {
                clock.sleep(1).await;
                let started = clock.now_ms();
                let v = flights.run(&clock, "k", || async { 2 }).await;
                (v, clock.now_ms() - started)
            },
        ));
        assert_eq!((a, b), (1, 2));
        assert!((1_000..1_100).contains(&waited), "waited {waited} ms");
    }

    #[test]
    fn bookkeeping_by_generation() {
        let flights: Flights<u8, &str> = Flights::new(1_000);
        assert_eq!(flights.join(&1, 0), Role::Lead(1));
        assert_eq!(flights.join(&1, 10), Role::Follow(1));
        assert_eq!(flights.look(&1, 1), Found::Waiting);
        // After max_wait a newcomer leads a new generation; the old leader's late result does
        // not satisfy the new generation's followers.
        assert_eq!(flights.join(&1, 1_000), Role::Lead(2));
        flights.finish(&1, 1, "old");
        assert_eq!(flights.look(&1, 2), Found::Waiting);
        assert_eq!(flights.look(&1, 1), Found::Ready("old"));
        flights.abandon(&1, 2);
        assert_eq!(flights.look(&1, 2), Found::Abandoned);
        assert_eq!(flights.join(&1, 1_001), Role::Lead(3));
        assert_eq!(flights.look(&9, 1), Found::Abandoned);
    }
}
