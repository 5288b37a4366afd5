//! Body types and wrappers: the boxed response body, a channel-fed body for streamed output, a
//! deadline on a body (read timeout, exec deadline), a completion hook, and the watchdog's own
//! error responses (spec §9).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type RespBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(b: impl Into<Bytes>) -> RespBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed_unsync()
}

pub fn empty() -> RespBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn boxed<B>(b: B) -> RespBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    b.map_err(Into::into).boxed_unsync()
}

pub const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
pub const X_DURATION: &str = "x-duration-seconds";

/// Seconds with 6 decimals, as upstream prints `X-Duration-Seconds`.
pub fn duration_value(d: Duration) -> HeaderValue {
    let mut s = d.as_secs().to_string();
    let micros = d.subsec_micros().to_string();
    s.push('.');
    s.extend(std::iter::repeat_n('0', 6 - micros.len()));
    s.push_str(&micros);
    HeaderValue::from_str(&s).expect("digits are a valid header value")
}

/// A response the watchdog generates itself: one plain-text line and `X-OpenFaaS-Internal`.
pub fn error_response(status: StatusCode, reason: &str, duration: Option<Duration>) -> Response<RespBody> {
    let mut resp = internal_error(status, reason, "of-watchdog");
    if let Some(d) = duration {
        resp.headers_mut().insert(X_DURATION, duration_value(d));
    }
    resp
}

/// One plain-text reason line marked with `X-OpenFaaS-Internal: <who>` (watchdog or gateway).
pub fn internal_error(status: StatusCode, reason: &str, who: &'static str) -> Response<RespBody> {
    let mut resp = Response::new(full(format!("{reason}\n")));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(http::header::CONTENT_TYPE, TEXT_PLAIN);
    h.insert("x-openfaas-internal", HeaderValue::from_static(who));
    resp
}

/// A bare status with an empty body (health, ready, classic 405).
pub fn status_only(status: StatusCode) -> Response<RespBody> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = status;
    resp
}

/// Frames received from a task that produces them (streamed function output).
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    pub fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        ChannelBody { rx }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DeadlineError(pub &'static str);

/// A body that fails once its deadline passes: bounds request reads (`read_timeout`) and
/// response copies (`exec_timeout`). The size is hidden unless the body is empty, so proxied
/// bodies go out chunked as upstream does.
pub struct Timed<B> {
    inner: B,
    deadline: Option<Instant>,
    /// Made on the first wait only: most bodies are read without ever waiting.
    sleep: Option<Pin<Box<Sleep>>>,
    what: &'static str,
}

impl<B> Timed<B> {
    pub fn new(inner: B, deadline: Option<Instant>, what: &'static str) -> Self {
        Timed { inner, deadline, sleep: None, what }
    }
}

impl<B> Body for Timed<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        if let Some(deadline) = this.deadline {
            let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            ready!(sleep.as_mut().poll(cx));
            return Poll::Ready(Some(Err(Box::new(DeadlineError(this.what)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.inner.is_end_stream() {
            SizeHint::with_exact(0)
        } else {
            SizeHint::default()
        }
    }
}

/// Runs `F` with the number of bytes sent once the body ends, fails or is dropped.
pub struct OnDone<B, F: FnOnce(u64)> {
    inner: B,
    bytes: u64,
    done: Option<F>,
}

impl<B, F: FnOnce(u64)> OnDone<B, F> {
    pub fn new(inner: B, done: F) -> Self {
        OnDone { inner, bytes: 0, done: Some(done) }
    }
    fn finish(&mut self) {
        if let Some(f) = self.done.take() {
            f(self.bytes);
        }
    }
}

impl<B, F: FnOnce(u64)> Drop for OnDone<B, F> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<B, F> Body for OnDone<B, F>
where
    B: Body<Data = Bytes> + Unpin,
    F: FnOnce(u64) + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let res = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &res {
            Some(Ok(frame)) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            _ => this.finish(),
        }
        Poll::Ready(res)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads a whole body, failing past `limit` bytes.
pub async fn collect_limited<B>(body: B, limit: usize) -> Result<Bytes, BoxError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let limited = http_body_util::Limited::new(body, limit);
    Ok(limited.collect().await?.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_header_has_six_decimals() {
        assert_eq!(duration_value(Duration::from_micros(1_500_007)), "1.500007");
        assert_eq!(duration_value(Duration::from_millis(3)), "0.003000");
        assert_eq!(duration_value(Duration::ZERO), "0.000000");
    }
}
