//! In-memory implementations of the [`crate::ports`], for native tests of every flow: a virtual
//! clock with its own executor, a store with expiry, and scripted HTTP peers (a fake WeChat API
//! among them).
//!
//! Available to the crate's own tests and, with the `testing` feature, to integration tests.
//! One file per fake (`clock`, `store`, `http`, `queue`, `logs`, `coordinator`), the token service's world
//! (`world`), and the fixtures of WeChat's side of a callback (`fixtures`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crate::ports::{Clock, FetchError, Http, HttpAnswer, HttpRequest, Store, StoreError};

mod clock;
mod coordinator;
mod fixtures;
mod http;
mod logs;
mod queue;
mod store;
mod world;

pub use clock::*;
pub use coordinator::*;
pub use fixtures::*;
pub use http::*;
pub use logs::*;
pub use queue::*;
pub use store::*;
pub use world::*;
