//! Local servers that behave like FCM (OAuth token endpoint + `messages:send`) and APNs
//! (`/3/device/{token}` over cleartext HTTP/2), built on `wiremock`, that check every request
//! they get — JWT signatures with the matching public key, claims, headers, payload shape —
//! and record it. A check that fails is recorded as an error (and answered 400), so tests both
//! see the bridge react and can assert that no request was malformed.
//!
//! Shared by the bridge's tests and the end-to-end tests (`tests/push.rs` includes this file).

#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Upper bound of every positive wait.
pub const WAIT: Duration = Duration::from_secs(30);

/// The service account key the fake FCM trusts (PKCS#8, like Google's).
pub const RSA_PRIVATE_PEM: &str = include_str!("../data/rsa_private.pem");
/// Its public half, used to verify assertions.
pub const RSA_PUBLIC_PEM: &str = include_str!("../data/rsa_public.pem");

/// The fake FCM project.
pub const PROJECT: &str = "chatd-test";
/// The fake service account.
pub const CLIENT_EMAIL: &str = "chatd-push@chatd-test.iam.gserviceaccount.com";
/// The APNs key id.
pub const KEY_ID: &str = "ABC123DEFG";
/// The APNs team id.
pub const TEAM_ID: &str = "TEAM123456";
/// The app's bundle id.
pub const TOPIC: &str = "com.example.chat";

/// A scripted answer for one request to one token.
#[derive(Clone, Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
    /// `Retry-After` seconds.
    pub retry_after: Option<u64>,
}

impl Reply {
    /// A reply with `status` and `body`.
    pub fn new(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            retry_after: None,
        }
    }

    /// The same with a `Retry-After` header.
    pub fn retry_after(mut self, secs: u64) -> Reply {
        self.retry_after = Some(secs);
        self
    }

    fn template(&self) -> ResponseTemplate {
        let mut t = ResponseTemplate::new(self.status).set_body_json(&self.body);
        if let Some(s) = self.retry_after {
            t = t.insert_header("retry-after", s.to_string().as_str());
        }
        t
    }
}

/// One notification as a fake service received it.
#[derive(Clone, Debug)]
pub struct Push {
    /// The device token it was sent to.
    pub token: String,
    /// The JSON body.
    pub body: Value,
    /// Request headers (lower-case names).
    pub headers: HashMap<String, String>,
    /// The bearer token (OAuth access token or APNs provider JWT).
    pub bearer: String,
    /// When it arrived.
    pub at: Instant,
}

#[derive(Default)]
struct State {
    pushes: Vec<Push>,
    errors: Vec<String>,
    script: HashMap<String, VecDeque<Reply>>,
    /// FCM: access tokens issued.
    issued: HashSet<String>,
    exchanges: u64,
    /// Delay of every `messages:send` / `/3/device` answer.
    delay: Duration,
}

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn headers_of(req: &Request) -> HashMap<String, String> {
    req.headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("<binary>").to_string(),
            )
        })
        .collect()
}

/// What both fakes share: the server, the recorded state and the helpers to wait on it.
pub struct Fake {
    /// The wiremock server.
    pub server: MockServer,
    state: Shared,
}

impl Fake {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// Every notification received so far.
    pub fn pushes(&self) -> Vec<Push> {
        lock(&self.state).pushes.clone()
    }

    /// Check failures so far (should stay empty).
    pub fn errors(&self) -> Vec<String> {
        lock(&self.state).errors.clone()
    }

    /// Panics when any request failed a check.
    pub fn assert_clean(&self) {
        let errors = self.errors();
        assert!(errors.is_empty(), "malformed requests: {errors:#?}");
    }

    /// Answers the next requests for `token` with `replies`, in order (then 200 again).
    pub fn script(&self, token: &str, replies: Vec<Reply>) {
        lock(&self.state)
            .script
            .entry(token.to_string())
            .or_default()
            .extend(replies);
    }

    /// Delays every notification answer (to observe bounded concurrency).
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.state).delay = delay;
    }

    /// Waits up to [`WAIT`] until at least `n` notifications arrived; returns them all.
    pub async fn wait_pushes(&self, n: usize) -> Vec<Push> {
        let deadline = Instant::now() + WAIT;
        loop {
            let pushes = self.pushes();
            if pushes.len() >= n {
                return pushes;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} pushes within {WAIT:?}, got {}: {:#?}; errors {:#?}",
                pushes.len(),
                pushes.iter().map(|p| &p.body).collect::<Vec<_>>(),
                self.errors()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asserts that no more than `n` notifications arrive within `wait` (negative checks).
    pub async fn no_more_than(&self, n: usize, wait: Duration) {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            let got = self.pushes().len();
            assert!(got <= n, "expected at most {n} pushes, got {got}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The scripted answer for `token` (200 `{}` when none is left), after the configured delay.
fn answer(state: &Shared, token: &str) -> ResponseTemplate {
    let mut st = lock(state);
    let delay = st.delay;
    let reply = st.script.get_mut(token).and_then(VecDeque::pop_front);
    drop(st);
    reply
        .unwrap_or_else(|| Reply::new(200, json!({})))
        .template()
        .set_delay(delay)
}

/// Records an error and answers 400 with it.
fn refuse(state: &Shared, what: String) -> ResponseTemplate {
    lock(state).errors.push(what.clone());
    ResponseTemplate::new(400).set_body_json(
        json!({"error": {"code": 400, "message": what, "status": "FAKE_CHECK_FAILED"}}),
    )
}

/// Any request no other mock took is an error.
async fn catch_all(server: &MockServer, state: &Shared) {
    struct CatchAll(Shared);
    impl Respond for CatchAll {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            refuse(
                &self.0,
                format!("unexpected request {} {}", req.method, req.url),
            )
        }
    }
    Mock::given(wiremock::matchers::any())
        .respond_with(CatchAll(state.clone()))
        .with_priority(u8::MAX)
        .mount(server)
        .await;
}

// ---------------------------------------------------------------------------------------------
// FCM
// ---------------------------------------------------------------------------------------------

/// A fake FCM: `POST /token` (OAuth2 JWT bearer exchange) and
/// `POST /v1/projects/chatd-test/messages:send`.
pub struct FakeFcm {
    /// Server and records.
    pub fake: Fake,
    expires_in: Arc<Mutex<u64>>,
}

impl std::ops::Deref for FakeFcm {
    type Target = Fake;
    fn deref(&self) -> &Fake {
        &self.fake
    }
}

impl FakeFcm {
    /// Starts the fake.
    pub async fn start() -> FakeFcm {
        let server = MockServer::start().await;
        let state: Shared = Arc::default();
        let expires_in = Arc::new(Mutex::new(3600));
        let token_uri = format!("{}/token", server.uri());
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(TokenEndpoint {
                state: state.clone(),
                token_uri,
                expires_in: expires_in.clone(),
            })
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(format!("/v1/projects/{PROJECT}/messages:send")))
            .respond_with(FcmSend {
                state: state.clone(),
            })
            .mount(&server)
            .await;
        catch_all(&server, &state).await;
        FakeFcm {
            fake: Fake { server, state },
            expires_in,
        }
    }

    /// The service account JSON that points at this fake.
    pub fn service_account_json(&self) -> String {
        json!({
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "test-key-1",
            "private_key": RSA_PRIVATE_PEM,
            "client_email": CLIENT_EMAIL,
            "token_uri": format!("{}/token", self.uri()),
        })
        .to_string()
    }

    /// How many token exchanges were answered.
    pub fn exchanges(&self) -> u64 {
        lock(&self.state).exchanges
    }

    /// `expires_in` of the access tokens issued from now on.
    pub fn set_expires_in(&self, secs: u64) {
        *self.expires_in.lock().unwrap() = secs;
    }

    /// Stops accepting the access tokens issued so far (as if they were revoked).
    pub fn revoke_tokens(&self) {
        lock(&self.state).issued.clear();
    }
}

struct TokenEndpoint {
    state: Shared,
    token_uri: String,
    expires_in: Arc<Mutex<u64>>,
}

impl Respond for TokenEndpoint {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        match self.check(req) {
            Ok(()) => {
                let mut st = lock(&self.state);
                st.exchanges += 1;
                let token = format!("ya29.fake-{}", st.exchanges);
                st.issued.insert(token.clone());
                drop(st);
                let expires_in = *self.expires_in.lock().unwrap();
                ResponseTemplate::new(200).set_body_json(json!({
                    "access_token": token, "expires_in": expires_in, "token_type": "Bearer"
                }))
            }
            Err(e) => refuse(&self.state, format!("token exchange: {e}")),
        }
    }
}

impl TokenEndpoint {
    fn check(&self, req: &Request) -> Result<(), String> {
        let ct = headers_of(req)
            .get("content-type")
            .cloned()
            .unwrap_or_default();
        if ct != "application/x-www-form-urlencoded" {
            return Err(format!("content-type {ct:?}"));
        }
        let body = String::from_utf8(req.body.clone()).map_err(|e| e.to_string())?;
        let form: HashMap<String, String> = url_decode_form(&body);
        if form.get("grant_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return Err(format!("grant_type in {body:?}"));
        }
        let assertion = form.get("assertion").ok_or("no assertion")?;
        let header = jsonwebtoken::decode_header(assertion).map_err(|e| e.to_string())?;
        if header.alg != Algorithm::RS256 {
            return Err(format!("alg {:?}", header.alg));
        }
        let key =
            DecodingKey::from_rsa_pem(RSA_PUBLIC_PEM.as_bytes()).map_err(|e| e.to_string())?;
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&[&self.token_uri]);
        v.set_issuer(&[CLIENT_EMAIL]);
        v.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
        let data = jsonwebtoken::decode::<Value>(assertion, &key, &v)
            .map_err(|e| format!("assertion not valid: {e}"))?;
        let c = data.claims;
        if c["scope"] != "https://www.googleapis.com/auth/firebase.messaging" {
            return Err(format!("scope {}", c["scope"]));
        }
        let (iat, exp) = (
            c["iat"].as_u64().unwrap_or(0),
            c["exp"].as_u64().unwrap_or(0),
        );
        if exp <= iat || exp - iat > 3600 {
            return Err(format!("exp {exp} - iat {iat} not in (0, 3600]"));
        }
        if iat.abs_diff(now_secs()) > 300 {
            return Err(format!("iat {iat} is not now"));
        }
        Ok(())
    }
}

fn url_decode_form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct FcmSend {
    state: Shared,
}

impl Respond for FcmSend {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let state = &self.state;
        let headers = headers_of(req);
        let bearer = headers
            .get("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_string();
        if !lock(state).issued.contains(&bearer) {
            // What FCM says for a missing, expired or revoked access token.
            return ResponseTemplate::new(401).set_body_json(json!({"error": {
                "code": 401, "message": "Request had invalid authentication credentials.",
                "status": "UNAUTHENTICATED"}}));
        }
        let body: Value = match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => return refuse(state, format!("FCM body is not JSON: {e}")),
        };
        if let Err(e) = check_fcm_body(&body) {
            return refuse(state, format!("FCM body {body}: {e}"));
        }
        let token = body["message"]["token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        lock(state).pushes.push(Push {
            token: token.clone(),
            body,
            headers,
            bearer,
            at: Instant::now(),
        });
        answer(state, &token)
    }
}

/// The fields FCM v1 accepts, as this bridge uses them: data values must be strings, the
/// android block has a collapse key, priority and ttl.
fn check_fcm_body(body: &Value) -> Result<(), String> {
    let m = body
        .get("message")
        .and_then(Value::as_object)
        .ok_or("no message object")?;
    for k in m.keys() {
        if !["token", "notification", "data", "android", "apns"].contains(&k.as_str()) {
            return Err(format!("unexpected message field {k}"));
        }
    }
    if !m.get("token").is_some_and(Value::is_string) {
        return Err("no token".into());
    }
    if let Some(data) = m.get("data") {
        let data = data.as_object().ok_or("data is not an object")?;
        if let Some((k, _)) = data.iter().find(|(_, v)| !v.is_string()) {
            return Err(format!("data.{k} is not a string"));
        }
    }
    let android = m.get("android").ok_or("no android block")?;
    if !android["collapse_key"].is_string() {
        return Err("no android.collapse_key".into());
    }
    if !["HIGH", "NORMAL"].contains(&android["priority"].as_str().unwrap_or("")) {
        return Err(format!("android.priority {}", android["priority"]));
    }
    let ttl = android["ttl"].as_str().unwrap_or("");
    if !ttl.ends_with('s') || ttl.trim_end_matches('s').parse::<u64>().is_err() {
        return Err(format!("android.ttl {ttl:?}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// APNs
// ---------------------------------------------------------------------------------------------

/// A fake APNs: `POST /3/device/{token}` over cleartext HTTP/2.
pub struct FakeApns {
    /// Server and records.
    pub fake: Fake,
    /// The `.p8` key (PKCS#8 PEM) the provider signs with.
    pub key_pem: String,
}

impl std::ops::Deref for FakeApns {
    type Target = Fake;
    fn deref(&self) -> &Fake {
        &self.fake
    }
}

impl FakeApns {
    /// Starts the fake with a fresh P-256 key.
    pub async fn start() -> FakeApns {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("generate a P-256 key");
        let server = MockServer::start().await;
        let state: Shared = Arc::default();
        Mock::given(method("POST"))
            .and(path_regex(r"^/3/device/[^/]+$"))
            .respond_with(ApnsSend {
                state: state.clone(),
                public_pem: key.public_key_pem(),
            })
            .mount(&server)
            .await;
        catch_all(&server, &state).await;
        FakeApns {
            fake: Fake { server, state },
            key_pem: key.serialize_pem(),
        }
    }
}

struct ApnsSend {
    state: Shared,
    public_pem: String,
}

impl Respond for ApnsSend {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let state = &self.state;
        let token = req
            .url
            .path()
            .strip_prefix("/3/device/")
            .unwrap_or_default()
            .to_string();
        let headers = headers_of(req);
        let bearer = headers
            .get("authorization")
            .and_then(|a| a.strip_prefix("bearer "))
            .unwrap_or_default()
            .to_string();
        if let Err(e) = self.check(req, &headers, &bearer) {
            return refuse(state, format!("APNs request for {token}: {e}"));
        }
        let body: Value = match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => return refuse(state, format!("APNs body is not JSON: {e}")),
        };
        if !body["aps"]["alert"].is_object() {
            return refuse(state, format!("APNs body without aps.alert: {body}"));
        }
        lock(state).pushes.push(Push {
            token: token.clone(),
            body,
            headers,
            bearer,
            at: Instant::now(),
        });
        answer(state, &token)
    }
}

impl ApnsSend {
    fn check(
        &self,
        req: &Request,
        headers: &HashMap<String, String>,
        bearer: &str,
    ) -> Result<(), String> {
        // Over HTTP/2 hyper hands the server an absolute URI (from `:authority`); an HTTP/1.1
        // request has only a path, which wiremock completes with `localhost`.
        if req.url.host_str() == Some("localhost") {
            return Err("not HTTP/2".into());
        }
        let header = jsonwebtoken::decode_header(bearer).map_err(|e| format!("JWT: {e}"))?;
        if header.alg != Algorithm::ES256 || header.kid.as_deref() != Some(KEY_ID) {
            return Err(format!("JWT header {header:?}"));
        }
        let key =
            DecodingKey::from_ec_pem(self.public_pem.as_bytes()).map_err(|e| e.to_string())?;
        let mut v = Validation::new(Algorithm::ES256);
        v.set_issuer(&[TEAM_ID]);
        v.set_required_spec_claims(&["iss", "iat"]);
        v.validate_exp = false;
        let claims = jsonwebtoken::decode::<Value>(bearer, &key, &v)
            .map_err(|e| format!("JWT not valid: {e}"))?
            .claims;
        let iat = claims["iat"].as_u64().ok_or("no iat")?;
        if iat.abs_diff(now_secs()) > 3600 {
            return Err(format!("iat {iat} older than an hour"));
        }
        let want = [
            ("apns-topic", TOPIC),
            ("apns-push-type", "alert"),
            ("apns-priority", "10"),
            ("content-type", "application/json"),
        ];
        for (name, value) in want {
            if headers.get(name).map(String::as_str) != Some(value) {
                return Err(format!("{name}: {:?}", headers.get(name)));
            }
        }
        let expiration: u64 = headers
            .get("apns-expiration")
            .and_then(|e| e.parse().ok())
            .ok_or("apns-expiration missing")?;
        if expiration <= now_secs() {
            return Err(format!("apns-expiration {expiration} is in the past"));
        }
        let collapse = headers
            .get("apns-collapse-id")
            .ok_or("no apns-collapse-id")?;
        if collapse.is_empty() || collapse.len() > 64 {
            return Err(format!("apns-collapse-id {collapse:?}"));
        }
        Ok(())
    }
}
