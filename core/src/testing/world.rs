//! A token service world.

use super::*;

/// Settings from pairs (later pairs win; an empty value unsets).
pub fn config(pairs: &[(&str, &str)]) -> crate::config::Config {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    crate::config::Config::load(|k| {
        pairs
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    })
}

/// A clock, a store, a fake WeChat API, an isolate's memory and settings for the account
/// `default` (AppID `wx_test_app`, API base `http://wechat.test`).
pub struct World {
    pub clock: FakeClock,
    pub store: MemoryStore,
    pub wechat: FakeWeChat,
    pub memory: crate::token::Memory,
    pub config: crate::config::Config,
}

impl World {
    pub fn new(now_secs: u64, extra: &[(&str, &str)]) -> World {
        let clock = FakeClock::at(now_secs * 1000);
        let mut pairs = vec![
            ("WECHAT_API_BASE", "http://wechat.test"),
            ("WECHAT_APP_ID", "wx_test_app"),
            ("WECHAT_APP_SECRET", "s3cr3t-app-secret"),
        ];
        pairs.extend_from_slice(extra);
        World {
            store: MemoryStore::new(&clock),
            wechat: FakeWeChat::new(&clock),
            clock,
            memory: crate::token::Memory::default(),
            config: config(&pairs),
        }
    }

    pub fn creds(&self) -> crate::token::Credentials<'_, FakeClock, MemoryStore, FakeHttp> {
        crate::token::Credentials {
            clock: &self.clock,
            store: &self.store,
            http: &self.wechat.http,
            memory: &self.memory,
            account: self.config.default_account(),
        }
    }

    /// The credentials of a named account.
    pub fn creds_for(
        &self,
        account: &str,
    ) -> crate::token::Credentials<'_, FakeClock, MemoryStore, FakeHttp> {
        crate::token::Credentials {
            account: self.config.account(account).unwrap(),
            ..self.creds()
        }
    }

    pub fn now(&self) -> u64 {
        self.clock.now_secs()
    }

    pub fn put(&self, key: &str, value: serde_json::Value) {
        self.store.insert(key, &value.to_string());
    }
}
