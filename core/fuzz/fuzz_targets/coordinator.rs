//! What reaches an account object: arbitrary request bodies (a request or nothing, never a
//! panic), and arbitrary stored bucket contents (read back without a panic, as a corrupted row
//! would be after an upgrade).
#![no_main]

use std::cell::RefCell;
use std::rc::Rc;

use libfuzzer_sys::fuzz_target;
use wechat_relay_core::coordinator::{
    decode_request, decode_response, encode, encode_response, AccountObject, Request, Rows,
    RowsError, StoredBucket,
};

#[derive(Clone, Default)]
struct Buckets(Rc<RefCell<Vec<StoredBucket>>>);

impl Rows for Buckets {
    fn buckets(&self, now_secs: u64) -> Result<Vec<StoredBucket>, RowsError> {
        Ok(self
            .0
            .borrow()
            .iter()
            .filter(|b| b.expires_at >= now_secs)
            .cloned()
            .collect())
    }
    fn put_bucket(&self, bucket: &StoredBucket) -> Result<(), RowsError> {
        let mut all = self.0.borrow_mut();
        all.retain(|b| b.key != bucket.key);
        all.push(bucket.clone());
        Ok(())
    }
    fn purge(&self, now_secs: u64) -> Result<(), RowsError> {
        self.0.borrow_mut().retain(|b| b.expires_at >= now_secs);
        Ok(())
    }
}

const NOW_MS: u64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    let _ = decode_response(data);
    let rows = Buckets::default();
    rows.0.borrow_mut().push(StoredBucket {
        key: 0,
        expires_at: u64::MAX,
        content: String::from_utf8_lossy(data).into_owned(),
    });
    let mut object = AccountObject::new(rows);
    let request = decode_request(data).unwrap_or(Request::Claim {
        event_id: "e".into(),
        attempt: "a".into(),
        nonce: None,
        settled: Vec::new(),
    });
    assert_eq!(decode_request(encode(&request).as_bytes()), Some(request.clone()));
    let response = object.handle(request, NOW_MS);
    assert!(decode_response(encode_response(&response).as_bytes()).is_ok());
});
