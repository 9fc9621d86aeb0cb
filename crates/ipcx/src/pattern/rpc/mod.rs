//! Request/reply: a [`Client`] makes calls over one link, many in flight
//! at once from any number of threads, each matched to its reply by a
//! correlation id; a [`Server`] answers them with a handler.
//!
//! Every message on the link is an envelope: a kind byte (request,
//! reply, error reply), the call's id (u64, little-endian), the body.
//! Each end first trades its schema (as typed links do): bytes for
//! [`Client`] and [`Server::serve`], the request and response types for
//! [`TypedClient`] and [`Server::serve_typed`].
//!
//! No thread waits on the client's behalf: a caller whose reply has not
//! come reads the link itself if no other caller is reading, handing the
//! replies it meets to their callers; a lone caller reads its own reply
//! with no hand-off. A call has a timeout (and gives up its reply when
//! it passes); an error the handler returned is [`ErrorKind::Remote`](crate::ErrorKind::Remote), a
//! failure of the link any other kind. A reply nobody waits for (its call
//! timed out, or its id is unknown) is dropped and counted
//! ([`Client::unmatched`]).
//!
//! The server serves each connection on a thread of its own and runs the
//! handler there, without a hand-off ([`Server::serve`]), or on a pool of
//! threads ([`Server::serve_pool`]); on tokio (feature `async`),
//! `AsyncServer` runs each call's handler as a task, and `AsyncClient`
//! calls from tasks. A handler that panics answers its
//! call with an error and the server goes on; a peer that breaks the
//! envelope is dropped and the others are served.
//!
//! ```
//! # fn main() -> ipcx::Result<()> {
//! # let dir = std::env::temp_dir().join(format!("ipcx-doc-rpc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let url = format!("unix:{}/calc.sock", dir.display());
//! use ipcx::pattern::{Server, TypedClient};
//!
//! let server = Server::bind(&url)?;
//! std::thread::spawn(move || server.serve_typed(|(a, b): (u64, u64)| Ok::<u64, String>(a + b)));
//! let calc = TypedClient::<(u64, u64), u64>::connect(&url)?;
//! assert_eq!(calc.call(&(2, 3))?, 5);
//! # // The server serves on: its record goes with this process's.
//! # ipcx::registry::Registry::open()?.release_own()?;
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

use std::time::Duration;

use super::typed::{Message, Way};

mod client;
#[cfg(feature = "async")]
mod on_tokio;
mod server;

pub use client::{Client, TypedClient};
#[cfg(feature = "async")]
pub use on_tokio::{AsyncClient, AsyncServer, AsyncTypedClient};
pub use server::{Responder, Server, serve_link};

const REQUEST: u8 = 1;
const REPLY: u8 = 2;
const ERROR_REPLY: u8 = 3;
/// Kind byte and id.
const HEAD: usize = 9;

/// How long a pool thread waits for a client to take a reply.
const REPLY_WAIT: Duration = Duration::from_secs(5);

/// How long a call waits for its reply unless told otherwise.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The envelope of a message: kind, id, body.
fn envelope(kind: u8, id: u64, body: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(HEAD + body.len());
    out.push(kind);
    out.extend_from_slice(&id.to_le_bytes());
    crate::copy::extend(out, body);
}

/// Kind, id and body of an envelope; `None` if it is too short.
fn open(msg: &[u8]) -> Option<(u8, u64, &[u8])> {
    let (&kind, rest) = msg.split_first()?;
    let (id, body) = rest.split_first_chunk::<8>()?;
    Some((kind, u64::from_le_bytes(*id), body))
}

/// The schema ways of an RPC end: what it sends and receives, marked as
/// call envelopes (a typed link of the same types is not a peer).
fn rpc_ways(client: bool, request: (String, u32), response: (String, u32)) -> [Way; 2] {
    let way = |sends, (name, v): (String, u32)| Way::named(sends, format!("rpc {name}"), v);
    [way(client, request), way(!client, response)]
}

fn bytes_ways(client: bool) -> [Way; 2] {
    rpc_ways(client, ("bytes".into(), 1), ("bytes".into(), 1))
}

/// The ways of an end of a typed service.
fn typed_ways<Req: Message, Resp: Message>(client: bool) -> [Way; 2] {
    rpc_ways(
        client,
        (Req::name().into_owned(), Req::VERSION),
        (Resp::name().into_owned(), Resp::VERSION),
    )
}

use crate::pattern::lock;

/// What a handler returns: the response, or an error text the caller
/// gets as [`ErrorKind::Remote`](crate::ErrorKind::Remote).
pub type Reply = std::result::Result<Vec<u8>, String>;

/// The error reply for a handler that panicked with `p`.
fn panicked(p: &(dyn std::any::Any + Send)) -> String {
    let what = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    format!("the handler panicked: {what}")
}
