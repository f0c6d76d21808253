//! A request body that is sent while it is recorded, so that a call refused
//! for its token can be sent again: for bodies that are neither `Clone` nor
//! re-readable (tonic's), without waiting for them to end first (a
//! bidirectional stream may only go on once the server has answered).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;

use crate::BoxError;

/// A frame read from the caller's body, kept for the next attempt.
#[derive(Debug)]
enum Recorded {
    Data(Bytes),
    Trailers(HeaderMap),
}

impl Recorded {
    fn frame(&self) -> Frame<Bytes> {
        match self {
            Recorded::Data(data) => Frame::data(data.clone()),
            Recorded::Trailers(trailers) => Frame::trailers(trailers.clone()),
        }
    }

    fn into_frame(self) -> Frame<Bytes> {
        match self {
            Recorded::Data(data) => Frame::data(data),
            Recorded::Trailers(trailers) => Frame::trailers(trailers),
        }
    }

    fn len(&self) -> usize {
        match self {
            Recorded::Data(data) => data.len(),
            Recorded::Trailers(_) => 0,
        }
    }
}

/// What the attempts of one call share: the caller's body, read once, and
/// what was read of it while it may still have to be sent again.
#[derive(Debug)]
struct Tape {
    /// The caller's body, until it ended or failed.
    source: Option<UnsyncBoxBody<Bytes, BoxError>>,
    /// The frames read from it (while recording), or those the newest
    /// reader has yet to send (once not).
    frames: VecDeque<Recorded>,
    /// Where the newest reader is in `frames`, while recording.
    cursor: usize,
    /// Data bytes in `frames`.
    recorded: usize,
    /// The most data to keep: a longer body cannot be sent again.
    limit: usize,
    /// Frames are kept, so a new reader can start from the beginning:
    /// false once the body outgrew the limit, failed, or the call ended.
    recording: bool,
    /// The newest reader's; an older reader's attempt was superseded.
    epoch: u64,
}

impl Tape {
    /// No more frames kept: only what the newest reader has yet to send.
    fn stop_recording(&mut self) {
        if self.recording {
            self.frames.drain(..self.cursor);
            self.cursor = 0;
            self.recorded = 0;
            self.recording = false;
        }
    }

    /// The next frame the newest reader sends from what was read before.
    fn next_read(&mut self) -> Option<Frame<Bytes>> {
        if self.recording {
            let frame = self.frames.get(self.cursor)?.frame();
            self.cursor += 1;
            Some(frame)
        } else {
            self.frames.pop_front().map(Recorded::into_frame)
        }
    }

    /// Keep `frame`, just read from the source, if it fits.
    fn record(&mut self, frame: &Frame<Bytes>) {
        if !self.recording {
            return;
        }
        let kept = if let Some(data) = frame.data_ref() {
            Recorded::Data(data.clone())
        } else if let Some(trailers) = frame.trailers_ref() {
            Recorded::Trailers(trailers.clone())
        } else {
            // A frame kind of a later http-body: it cannot be sent again.
            self.stop_recording();
            return;
        };
        if self.recorded + kept.len() > self.limit {
            self.stop_recording();
            return;
        }
        self.recorded += kept.len();
        self.frames.push_back(kept);
        self.cursor += 1;
    }

    /// Data bytes the newest reader has yet to send from `frames`.
    fn unsent(&self) -> u64 {
        let skip = if self.recording { self.cursor } else { 0 };
        self.frames.iter().skip(skip).map(|f| f.len() as u64).sum()
    }
}

/// The body of one attempt of a call through a
/// [`GrpcRefreshService`](crate::GrpcRefreshService): what was read of the
/// caller's body so far, then the rest of it as it comes, every frame
/// (data and trailers) as the caller's body gave it. Make the inner
/// service's body type from it (`tonic::body::Body::new`).
///
/// Once a later attempt of the same call has started, polling this one
/// fails (its stream is reset), so that two attempts never share the rest
/// of the caller's body.
#[derive(Debug)]
pub struct ReplayBody {
    tape: Arc<Mutex<Tape>>,
    epoch: u64,
}

/// An attempt's body, polled after a later attempt of the call started.
#[derive(Debug)]
struct Superseded;

impl std::fmt::Display for Superseded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body superseded by a retry of the call")
    }
}

impl std::error::Error for Superseded {}

/// The caller's body of one call, for its attempts.
#[derive(Debug)]
pub(crate) struct Recording {
    tape: Arc<Mutex<Tape>>,
}

fn lock(tape: &Mutex<Tape>) -> MutexGuard<'_, Tape> {
    tape.lock().unwrap_or_else(|e| e.into_inner())
}

impl Recording {
    /// Record `body` (at most `limit` bytes of data kept).
    pub(crate) fn new<B>(body: B, limit: usize) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let tape = Tape {
            source: Some(body.map_err(Into::into).boxed_unsync()),
            frames: VecDeque::new(),
            cursor: 0,
            recorded: 0,
            limit,
            recording: true,
            epoch: 0,
        };
        Recording {
            tape: Arc::new(Mutex::new(tape)),
        }
    }

    /// The body of a new attempt, from the beginning; `None` when the body
    /// cannot be sent again (longer than the limit, or it failed). The
    /// reader of any earlier attempt is cut off.
    pub(crate) fn reader(&self) -> Option<ReplayBody> {
        let mut tape = lock(&self.tape);
        if !tape.recording {
            return None;
        }
        tape.epoch += 1;
        tape.cursor = 0;
        Some(ReplayBody {
            tape: Arc::clone(&self.tape),
            epoch: tape.epoch,
        })
    }

    /// The call has its outcome: no attempt follows, keep nothing more
    /// (the last attempt's stream may go on sending the rest).
    pub(crate) fn finish(&self) {
        lock(&self.tape).stop_recording();
    }
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut tape = lock(&self.tape);
        if tape.epoch != self.epoch {
            return Poll::Ready(Some(Err(Box::new(Superseded))));
        }
        if let Some(frame) = tape.next_read() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let Some(source) = tape.source.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(Pin::new(source).poll_frame(cx)) {
            None => {
                tape.source = None;
                Poll::Ready(None)
            }
            Some(Err(e)) => {
                // What was sent of it cannot be sent again.
                tape.source = None;
                tape.stop_recording();
                Poll::Ready(Some(Err(e)))
            }
            Some(Ok(frame)) => {
                tape.record(&frame);
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let tape = lock(&self.tape);
        tape.epoch == self.epoch
            && tape.source.is_none()
            && tape.frames.len() == if tape.recording { tape.cursor } else { 0 }
    }

    fn size_hint(&self) -> SizeHint {
        let tape = lock(&self.tape);
        let unsent = tape.unsent();
        let rest = match &tape.source {
            Some(source) => source.size_hint(),
            None => SizeHint::with_exact(0),
        };
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(unsent));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(unsent));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Data then trailers, in `n` frames.
    fn stream(n: usize) -> impl Body<Data = Bytes, Error = std::convert::Infallible> + Send {
        let mut frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = (0..n)
            .map(|i| Ok(Frame::data(Bytes::from(vec![i as u8; 10]))))
            .collect();
        let mut trailers = HeaderMap::new();
        trailers.insert("x-end", "yes".parse().unwrap());
        frames.push(Ok(Frame::trailers(trailers)));
        StreamBody::new(futures_util::stream::iter(frames))
    }

    async fn read(body: ReplayBody) -> (Bytes, Option<HeaderMap>) {
        let collected = body.collect().await.unwrap();
        let trailers = collected.trailers().cloned();
        (collected.to_bytes(), trailers)
    }

    #[test]
    fn a_later_reader_gets_every_frame_again_and_the_earlier_one_is_cut_off() {
        block_on(async {
            let recording = Recording::new(stream(3), 1024);
            let mut first = recording.reader().unwrap();
            // The first attempt read one frame, then its answer came.
            let frame = first.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), Bytes::from(vec![0u8; 10]));
            let second = recording.reader().unwrap();
            assert!(first.frame().await.unwrap().is_err(), "superseded");
            let (data, trailers) = read(second).await;
            assert_eq!(data.len(), 30);
            assert_eq!(&data[..10], &[0u8; 10]);
            assert_eq!(&data[20..], &[2u8; 10]);
            assert_eq!(trailers.unwrap()["x-end"], "yes");
            // Read to its end within the limit: a third attempt is possible.
            let (again, _) = read(recording.reader().unwrap()).await;
            assert_eq!(again, data);
        });
    }

    #[test]
    fn a_body_past_the_limit_is_sent_whole_once_and_not_again() {
        block_on(async {
            let recording = Recording::new(stream(5), 25);
            let (data, trailers) = read(recording.reader().unwrap()).await;
            assert_eq!(data.len(), 50, "never truncated");
            assert!(trailers.is_some());
            assert!(recording.reader().is_none());
        });
    }

    #[test]
    fn a_reader_after_the_limit_was_passed_mid_replay_keeps_going() {
        block_on(async {
            // 2 frames read by the first attempt, then a replay that reads
            // past the limit: it still sends the whole body.
            let recording = Recording::new(stream(5), 25);
            let mut first = recording.reader().unwrap();
            first.frame().await.unwrap().unwrap();
            first.frame().await.unwrap().unwrap();
            let (data, _) = read(recording.reader().unwrap()).await;
            assert_eq!(data.len(), 50);
            assert!(recording.reader().is_none());
        });
    }

    #[test]
    fn a_finished_call_keeps_only_what_its_last_attempt_has_yet_to_send() {
        block_on(async {
            let recording = Recording::new(stream(3), 1024);
            let mut first = recording.reader().unwrap();
            first.frame().await.unwrap().unwrap();
            first.frame().await.unwrap().unwrap();
            let mut second = recording.reader().unwrap();
            second.frame().await.unwrap().unwrap();
            recording.finish();
            assert_eq!(lock(&recording.tape).frames.len(), 1);
            assert!(recording.reader().is_none());
            let (data, trailers) = read(second).await;
            assert_eq!(data.len(), 20, "the rest, after the frame already sent");
            assert!(trailers.is_some());
        });
    }

    #[test]
    fn an_empty_body_is_an_empty_body_every_time() {
        block_on(async {
            let recording = Recording::new(Full::<Bytes>::default(), 10);
            let first = recording.reader().unwrap();
            assert_eq!(first.size_hint().upper(), Some(0));
            assert!(read(first).await.0.is_empty());
            let second = recording.reader().unwrap();
            assert!(second.is_end_stream());
        });
    }
}
