//! A response body read ahead, handed on whole: what was read, then the
//! rest of the original body. For the async clients, whose responses
//! stream: a refusal predicate ([`Builder::refresh_when`](crate::Builder::refresh_when))
//! sees the start of a body that the caller still gets in full.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// What was read, then the rest of the original body (none when it was
/// read to the end).
#[derive(Debug)]
pub struct ReadFirst<B> {
    read: Option<Bytes>,
    rest: Option<B>,
}

impl<B> ReadFirst<B> {
    /// `read`, followed by `rest` (`None`: the body ended with `read`).
    pub fn new(read: Vec<u8>, rest: Option<B>) -> ReadFirst<B> {
        ReadFirst {
            read: Some(Bytes::from(read)),
            rest,
        }
    }
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
            None => Poll::Ready(None),
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
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }
}
