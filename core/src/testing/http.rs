//! HTTP.

use super::*;

/// A canned answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl FakeAnswer {
    pub fn status(status: u16) -> Self {
        FakeAnswer {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn json(value: serde_json::Value) -> Self {
        FakeAnswer {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

impl HttpAnswer for FakeAnswer {
    fn status(&self) -> u16 {
        self.status
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    async fn bytes(self) -> Result<Vec<u8>, FetchError> {
        Ok(self.body)
    }
}

/// A request as the fake peer saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub request: HttpRequest,
    pub at_ms: u64,
}

impl Seen {
    /// The URL's path (or the service path).
    pub fn path(&self) -> String {
        match &self.request.destination {
            crate::ports::Destination::Url(u) => url::Url::parse(u)
                .map(|u| u.path().to_owned())
                .unwrap_or_default(),
            crate::ports::Destination::Service { path, .. } => path.clone(),
        }
    }

    /// A query parameter of the URL.
    pub fn query(&self, name: &str) -> Option<String> {
        let url = url::Url::parse(self.request.url()?).ok()?;
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.request.body.as_deref().unwrap_or(b"null"))
            .unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Handler = Box<dyn Fn(&Seen) -> Result<FakeAnswer, FetchError>>;

/// A scripted HTTP peer: every request is recorded and answered by the handler, after an
/// optional delay on the fake clock.
#[derive(Clone)]
pub struct FakeHttp {
    clock: FakeClock,
    handler: Rc<RefCell<Handler>>,
    pub seen: Rc<RefCell<Vec<Seen>>>,
    pub delay_ms: Rc<Cell<u64>>,
    /// A delay of its own for the requests to one path.
    pub delay_for: Rc<RefCell<BTreeMap<String, u64>>>,
    /// Requests in flight now, and the most ever at once.
    pub in_flight: Rc<Cell<u32>>,
    pub max_in_flight: Rc<Cell<u32>>,
}

/// Counts a request out of flight when it ends, however it ends.
struct InFlight(Rc<Cell<u32>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

impl FakeHttp {
    pub fn new(
        clock: &FakeClock,
        handler: impl Fn(&Seen) -> Result<FakeAnswer, FetchError> + 'static,
    ) -> Self {
        FakeHttp {
            clock: clock.clone(),
            handler: Rc::new(RefCell::new(Box::new(handler))),
            seen: Rc::default(),
            delay_ms: Rc::default(),
            delay_for: Rc::default(),
            in_flight: Rc::default(),
            max_in_flight: Rc::default(),
        }
    }

    pub fn set_handler(&self, handler: impl Fn(&Seen) -> Result<FakeAnswer, FetchError> + 'static) {
        *self.handler.borrow_mut() = Box::new(handler);
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.borrow().clone()
    }

    pub fn count(&self, path: &str) -> usize {
        self.seen
            .borrow()
            .iter()
            .filter(|s| s.path() == path)
            .count()
    }
}

impl Http for FakeHttp {
    type Answer = FakeAnswer;

    async fn send(&self, request: &HttpRequest, timeout_ms: u64) -> Result<FakeAnswer, FetchError> {
        let seen = Seen {
            request: request.clone(),
            at_ms: self.clock.now_ms(),
        };
        self.seen.borrow_mut().push(seen.clone());
        self.in_flight.set(self.in_flight.get() + 1);
        self.max_in_flight
            .set(self.max_in_flight.get().max(self.in_flight.get()));
        let _in_flight = InFlight(self.in_flight.clone());
        let delay = self
            .delay_for
            .borrow()
            .get(&seen.path())
            .copied()
            .unwrap_or(self.delay_ms.get());
        if delay > timeout_ms {
            self.clock.sleep(timeout_ms).await;
            return Err(FetchError::Timeout);
        }
        if delay > 0 {
            self.clock.sleep(delay).await;
        }
        (self.handler.borrow())(&seen)
    }
}

/// A stand-in for WeChat's API: numbered tokens, `stable_token` semantics (the same token until
/// forced), the JS-SDK ticket, scripted errcodes and outages, and extra routes.
#[derive(Clone)]
pub struct FakeWeChat {
    pub http: FakeHttp,
    pub state: Rc<WeChatState>,
}

/// An extra API route: the request and the current token -> the answer.
pub type Route = Box<dyn Fn(&Seen, Option<String>) -> FakeAnswer>;

#[derive(Default)]
pub struct WeChatState {
    pub issued: Cell<u32>,
    /// The most recently issued token, of any app.
    pub current: RefCell<Option<String>>,
    /// The valid token of each app (AppID or corp id).
    pub by_app: RefCell<BTreeMap<String, String>>,
    /// errcodes to answer token requests with, once each, in order.
    pub token_errors: RefCell<Vec<i64>>,
    pub down: Cell<bool>,
    pub routes: RefCell<BTreeMap<String, Route>>,
}

pub const JSSDK_TICKET: &str =
    "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg";

impl WeChatState {
    fn issue(&self, app: &str) -> String {
        self.issued.set(self.issued.get() + 1);
        let token = format!("TOKEN_{}_{}", self.issued.get(), "x".repeat(40));
        *self.current.borrow_mut() = Some(token.clone());
        self.by_app
            .borrow_mut()
            .insert(app.to_owned(), token.clone());
        token
    }

    pub fn current(&self) -> Option<String> {
        self.current.borrow().clone()
    }

    /// The valid token of an app.
    pub fn token_of(&self, app: &str) -> Option<String> {
        self.by_app.borrow().get(app).cloned()
    }

    fn is_valid(&self, token: Option<&str>) -> bool {
        token.is_some_and(|t| self.by_app.borrow().values().any(|v| v == t))
    }

    fn next_error(&self) -> Option<FakeAnswer> {
        let mut errors = self.token_errors.borrow_mut();
        (!errors.is_empty()).then(|| {
            let errcode = errors.remove(0);
            FakeAnswer::json(serde_json::json!({
                "errcode": errcode, "errmsg": format!("fake error {errcode}")
            }))
        })
    }
}

impl FakeWeChat {
    pub fn new(clock: &FakeClock) -> Self {
        let state = Rc::new(WeChatState::default());
        let s = state.clone();
        let http = FakeHttp::new(clock, move |seen| s.answer(seen));
        FakeWeChat { http, state }
    }

    pub fn token_calls(&self) -> Vec<Seen> {
        self.http
            .requests()
            .into_iter()
            .filter(|s| s.path().ends_with("token"))
            .collect()
    }

    pub fn route(
        &self,
        path: &str,
        answer: impl Fn(&Seen, Option<String>) -> FakeAnswer + 'static,
    ) {
        self.state
            .routes
            .borrow_mut()
            .insert(path.to_owned(), Box::new(answer));
    }
}

impl WeChatState {
    /// The fake API's answer to a request.
    pub fn answer(&self, seen: &Seen) -> Result<FakeAnswer, FetchError> {
        if self.down.get() {
            return Err(FetchError::Network("connection refused".into()));
        }
        let path = seen.path();
        match path.as_str() {
            "/cgi-bin/stable_token" | "/cgi-bin/token" => {
                if let Some(error) = self.next_error() {
                    return Ok(error);
                }
                let app = seen
                    .query("appid")
                    .or_else(|| seen.json()["appid"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                let forced = path == "/cgi-bin/token" || seen.json()["force_refresh"] == true;
                let token = match self.token_of(&app) {
                    Some(t) if !forced => t,
                    _ => self.issue(&app),
                };
                Ok(FakeAnswer::json(
                    serde_json::json!({"access_token": token, "expires_in": 7200}),
                ))
            }
            // WeCom: the same token while it is valid, whatever the caller.
            "/cgi-bin/gettoken" => {
                if let Some(error) = self.next_error() {
                    return Ok(error);
                }
                let corp = seen.query("corpid").unwrap_or_default();
                if seen.query("corpsecret").unwrap_or_default().is_empty() {
                    return Ok(FakeAnswer::json(
                        serde_json::json!({"errcode": 41004, "errmsg": "corpsecret missing"}),
                    ));
                }
                let token = self.token_of(&corp).unwrap_or_else(|| self.issue(&corp));
                Ok(FakeAnswer::json(serde_json::json!({
                    "errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200
                })))
            }
            "/cgi-bin/ticket/getticket" | "/cgi-bin/get_jsapi_ticket" => {
                if !self.is_valid(seen.query("access_token").as_deref()) {
                    return Ok(FakeAnswer::json(
                        serde_json::json!({"errcode": 40001, "errmsg": "invalid credential"}),
                    ));
                }
                Ok(FakeAnswer::json(serde_json::json!({
                    "errcode": 0, "errmsg": "ok", "ticket": JSSDK_TICKET, "expires_in": 7200
                })))
            }
            other => match self.routes.borrow().get(other) {
                Some(route) => Ok(route(seen, self.current())),
                None => Ok(FakeAnswer::json(
                    serde_json::json!({"errcode": 404, "errmsg": "fake: no such api"}),
                )),
            },
        }
    }
}
