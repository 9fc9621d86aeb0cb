//! [`RecvStream`] and [`SendSink`]: the halves of an [`AsyncLink`] as the
//! `futures` [`Stream`] and [`Sink`] traits, for code written against them
//! (combinators, `forward`, frameworks that take a stream).
//!
//! Each message in flight is a boxed future of the half's own `recv` or
//! `send` (one allocation per message): the plain `recv().await` and
//! `send().await` are the fast path.
//!
//! [`AsyncLink`]: super::AsyncLink

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use futures_sink::Sink;

use super::{AsyncRecvHalf, AsyncSendHalf};
use crate::error::{Error, ErrorKind, Result};

type Receiving = Pin<Box<dyn Future<Output = (Box<AsyncRecvHalf>, Result<Vec<u8>>)> + Send>>;
type Sending = Pin<Box<dyn Future<Output = (Box<AsyncSendHalf>, Result<()>)> + Send>>;

/// The messages of an [`AsyncRecvHalf`] as a [`Stream`]: one item per
/// message; the stream ends when the peer closes the link, and after the
/// first error (which it yields).
///
/// ```no_run
/// # async fn demo() -> ipcx::Result<()> {
/// use futures_core::Stream;
/// use std::pin::Pin;
///
/// let link = ipcx::tokio::AsyncLink::connect("unix:@demo").await?;
/// let (rx, _tx) = link.split();
/// let mut messages = rx.into_stream();
/// while let Some(msg) =
///     std::future::poll_fn(|cx| Pin::new(&mut messages).poll_next(cx)).await
/// {
///     println!("{} bytes", msg?.len());
/// }
/// # Ok(()) }
/// ```
pub struct RecvStream {
    state: RecvState,
}

/// The half is boxed while idle too, so that it moves into and out of
/// the future without copying its decoder state.
enum RecvState {
    Idle(Box<AsyncRecvHalf>),
    Receiving(Receiving),
    Ended,
}

impl AsyncRecvHalf {
    /// This half as a [`Stream`] of messages.
    pub fn into_stream(self) -> RecvStream {
        RecvStream {
            state: RecvState::Idle(Box::new(self)),
        }
    }
}

impl Stream for RecvStream {
    type Item = Result<Vec<u8>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match std::mem::replace(&mut self.state, RecvState::Ended) {
                RecvState::Idle(mut half) => {
                    self.state = RecvState::Receiving(Box::pin(async move {
                        let msg = half.recv().await;
                        (half, msg)
                    }));
                }
                RecvState::Receiving(mut receiving) => {
                    let Poll::Ready((half, msg)) = receiving.as_mut().poll(cx) else {
                        self.state = RecvState::Receiving(receiving);
                        return Poll::Pending;
                    };
                    return Poll::Ready(match msg {
                        Ok(msg) => {
                            self.state = RecvState::Idle(half);
                            Some(Ok(msg))
                        }
                        Err(e) if e.is_closed() => None,
                        Err(e) => Some(Err(e)),
                    });
                }
                RecvState::Ended => return Poll::Ready(None),
            }
        }
    }
}

/// An [`AsyncSendHalf`] as a [`Sink`] of messages: `start_send` begins
/// sending one, `poll_ready` and `poll_flush` finish it (a message is
/// sent whole before the next begins), `poll_close` finishes it and ends
/// this direction of the link. After an error, every call returns
/// `Closed`.
pub struct SendSink<M> {
    state: SendState,
    _message: std::marker::PhantomData<fn(M)>,
}

enum SendState {
    Idle(Box<AsyncSendHalf>),
    Sending(Sending),
    Closed,
}

impl AsyncSendHalf {
    /// This half as a [`Sink`] of messages of any type that lends its
    /// bytes (`Vec<u8>`, `&'static [u8]`, `String`, ...).
    pub fn into_sink<M: AsRef<[u8]> + Send + 'static>(self) -> SendSink<M> {
        SendSink {
            state: SendState::Idle(Box::new(self)),
            _message: std::marker::PhantomData,
        }
    }
}

impl<M> SendSink<M> {
    /// Drives the message in flight, if any, to its end.
    fn poll_sent(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match &mut self.state {
            SendState::Idle(_) => Poll::Ready(Ok(())),
            SendState::Closed => Poll::Ready(Err(Error::new(ErrorKind::Closed, "send"))),
            SendState::Sending(sending) => {
                let (half, sent) = ready!(sending.as_mut().poll(cx));
                self.state = match sent {
                    Ok(()) => SendState::Idle(half),
                    Err(_) => SendState::Closed,
                };
                Poll::Ready(sent)
            }
        }
    }
}

impl<M: AsRef<[u8]> + Send + 'static> Sink<M> for SendSink<M> {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.poll_sent(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, msg: M) -> Result<()> {
        match std::mem::replace(&mut self.state, SendState::Closed) {
            SendState::Idle(mut half) => {
                self.state = SendState::Sending(Box::pin(async move {
                    let sent = half.send(msg.as_ref()).await;
                    (half, sent)
                }));
                Ok(())
            }
            SendState::Sending(_) => Err(Error::new(
                ErrorKind::InvalidArgument(
                    "start_send before poll_ready finished the last message".into(),
                ),
                "send",
            )),
            SendState::Closed => Err(Error::new(ErrorKind::Closed, "send")),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.poll_sent(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if matches!(self.state, SendState::Closed) {
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_sent(cx))?;
        if let SendState::Idle(half) = std::mem::replace(&mut self.state, SendState::Closed) {
            half.close();
        }
        Poll::Ready(Ok(()))
    }
}

impl fmt::Debug for RecvStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvStream").finish_non_exhaustive()
    }
}

impl<M> fmt::Debug for SendSink<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendSink").finish_non_exhaustive()
    }
}
