//! What std users expect of a link: `Read` and `Write` (a byte-stream view,
//! as `UnixStream` has), and iterators over accepted links and received
//! messages.

use std::io;

use super::{Link, Listener, RecvHalf, SendHalf};
use crate::error::Result;

/// Bytes of the messages received, in order; a message larger than `buf`
/// is read in pieces, and the end of the link is `Ok(0)`. Meant for
/// `?codec=raw` links talking to tools, and for code built on `Read`.
impl io::Read for RecvHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.unread.1 >= self.unread.0.len() {
            let mut msg = std::mem::take(&mut self.unread.0);
            match self.recv_into(&mut msg) {
                Ok(()) => self.unread = (msg, 0),
                Err(e) if e.is_closed() => return Ok(0),
                Err(e) => return Err(e.into()),
            }
        }
        let (msg, at) = &mut self.unread;
        let n = buf.len().min(msg.len() - *at);
        buf[..n].copy_from_slice(&msg[*at..*at + n]);
        *at += n;
        Ok(n)
    }
}

/// Each `write` sends the whole buffer as one message.
impl io::Write for SendHalf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf)?;
        Ok(buf.len())
    }

    /// Finishes a message [`SendHalf::try_send`] or
    /// [`SendHalf::send_timeout`] left partly sent.
    fn flush(&mut self) -> io::Result<()> {
        Ok(SendHalf::flush(self)?)
    }
}

/// See [`RecvHalf`]'s `Read`.
impl io::Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_half().read(buf)
    }
}

/// See [`SendHalf`]'s `Write`.
impl io::Write for Link {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send_half().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(self.send_half().flush()?)
    }
}

/// The links a listener accepts, one per `next`: see [`Listener::incoming`].
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a Listener,
}

impl Iterator for Incoming<'_> {
    type Item = Result<Link>;

    fn next(&mut self) -> Option<Result<Link>> {
        Some(self.listener.accept())
    }
}

/// The messages of a link until its peer closes it: see [`Link::iter`].
#[derive(Debug)]
pub struct Messages<'a> {
    link: &'a mut Link,
    done: bool,
}

impl Iterator for Messages<'_> {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Result<Vec<u8>>> {
        if self.done {
            return None;
        }
        match self.link.recv() {
            Ok(m) => Some(Ok(m)),
            Err(e) if e.is_closed() => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl Listener {
    /// Accepted links, one per iteration, as `TcpListener::incoming`:
    ///
    /// ```no_run
    /// # fn main() -> ipcx::Result<()> {
    /// let listener = ipcx::Listener::bind("unix:/tmp/app.sock")?;
    /// for link in listener.incoming() {
    ///     let mut link = link?;
    ///     std::thread::spawn(move || {
    ///         for msg in link.iter() {
    ///             let Ok(msg) = msg else { break };
    ///             println!("{} bytes", msg.len());
    ///         }
    ///     });
    /// }
    /// # Ok(()) }
    /// ```
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }
}

impl Link {
    /// The messages received, until the peer closes the link (the end is
    /// not an error; any other error is the last item).
    pub fn iter(&mut self) -> Messages<'_> {
        Messages {
            link: self,
            done: false,
        }
    }
}
