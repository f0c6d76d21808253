//! A response body read ahead, handed on whole: what was read, then the
//! rest of the original body. For the async clients, whose responses
//! stream: a refusal predicate ([`Builder::refresh_when`](crate::Builder::refresh_when))
//! sees the start of a body that the caller still gets in full.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// What was read, then the rest of the original body (none when it was
/// read to the end, its trailers, if any, kept).
#[derive(Debug)]
pub struct ReadFirst<B> {
    read: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
    rest: Option<B>,
}

/// Read `body` to its end or past `limit` bytes: the body to hand on
/// (what was read, then the rest, every frame kept: data, then trailers),
/// and what was read if that was the whole of it.
pub async fn read_ahead<B>(
    mut body: B,
    limit: usize,
) -> Result<(ReadFirst<B>, Option<Vec<u8>>), B::Error>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut read = Vec::new();
    let mut trailers = None;
    let complete = loop {
        match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            None => break true,
            Some(frame) => match frame?.into_data() {
                Ok(data) => {
                    read.extend_from_slice(&data);
                    if read.len() > limit {
                        break false;
                    }
                }
                // Trailers end a body.
                Err(frame) => trailers = frame.into_trailers().ok(),
            },
        }
    };
    let shown = complete.then(|| read.clone());
    let body = ReadFirst {
        read: Some(Bytes::from(read)),
        trailers,
        rest: (!complete).then_some(body),
    };
    Ok((body, shown))
}

impl<B: Body<Data = Bytes> + Unpin> Body for ReadFirst<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(read) = self.read.take().filter(|r| !r.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(read))));
        }
        match &mut self.rest {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t)))),
        }
    }

    /// What was read plus what the rest says of itself: the exact length
    /// when it was known.
    fn size_hint(&self) -> SizeHint {
        let read = self.read.as_ref().map_or(0, |r| r.len() as u64);
        let rest = match &self.rest {
            Some(rest) => rest.size_hint(),
            None => SizeHint::with_exact(0),
        };
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(read));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(read));
        }
        hint
    }

    fn is_end_stream(&self) -> bool {
        self.read.as_ref().is_none_or(|r| r.is_empty())
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }
}
