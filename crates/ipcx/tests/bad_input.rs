//! Hostile peers: a server in this process, and a second process that
//! connects with a raw socket (not ipcx) and sends bytes that break the
//! wire format.
//!
//! Before the handshake, `accept` must drop such a peer by itself and go on
//! accepting; after it, `recv` must return a typed error. Either way the
//! offending link is closed, and the listener then serves a well-behaved
//! ipcx client (a real round trip proves it).

mod common;

use std::io::{ErrorKind as IoErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::Duration;

use common::{ChildProcess, Test, param, set_param};
use ipcx::endpoint::Address;
use ipcx::wire::{FLAG_CRC, FLAG_MORE, HEADER_LEN, Header, Hello, KIND_DATA, KIND_HELLO, VERSION};
use ipcx::{ErrorKind, FrameError, Link, Listener};

/// The server's message limit in these tests.
const LIMIT: u64 = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Unix,
    Tcp,
}

impl Transport {
    fn bind(self, dir: &common::Scratch, query: &str) -> Listener {
        let base = match self {
            Transport::Unix => dir.url("unix", "s.sock"),
            Transport::Tcp => "tcp://127.0.0.1:0".to_string(),
        };
        let mut url = common::with_option(&base, &format!("max_msg={LIMIT}"));
        if !query.is_empty() {
            url = common::with_option(&url, query);
        }
        Listener::bind(&url).unwrap_or_else(|e| panic!("bind {url}: {e}"))
    }
}

/// How the hostile peer leaves after its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Keeps the socket open: the server must close it.
    Stay,
    /// Shuts down its side of the socket.
    Close,
    /// Is killed (SIGKILL) while the socket is open.
    Vanish,
}

/// What the server must see from one hostile connection.
type Expect = Box<dyn Fn(&ErrorKind) -> bool>;

/// One kind of hostile peer.
struct Case {
    /// Options of the server and of the good client.
    query: &'static str,
    /// `Some(crc)`: a valid hello (with that CRC setting) goes first, so the
    /// bytes reach `recv`; `None`: they reach the handshake in `accept`.
    hello: Option<bool>,
    /// The hostile bytes, one connection each.
    sessions: Vec<Vec<u8>>,
    end: End,
    /// After a hello: what `recv` must fail with, per connection.
    expect: Vec<Expect>,
}

fn is(kind: ErrorKind) -> Expect {
    Box::new(move |k| *k == kind)
}

fn frame_error(e: FrameError) -> Expect {
    is(ErrorKind::Frame(e))
}

/// A header of a data frame of `len` bytes.
fn header(kind: u8, flags: u8, nfds: u8, len: u64) -> [u8; HEADER_LEN] {
    Header {
        kind,
        flags,
        nfds,
        len,
        crc: 0,
    }
    .encode()
}

/// A hello frame carrying `hello`.
fn hello_frame(hello: Hello) -> Vec<u8> {
    let mut f = header(KIND_HELLO, 0, 0, Hello::LEN as u64).to_vec();
    f.extend_from_slice(&hello.encode());
    f
}

/// A valid data frame of `payload`.
fn data_frame(payload: &[u8], crc: bool) -> Vec<u8> {
    let mut f = Vec::new();
    ipcx::wire::encode_message(payload, crc, &mut f);
    f
}

/// A data frame of "hello" with one header byte changed.
fn patched(at: usize, value: u8) -> Vec<u8> {
    let mut f = data_frame(b"hello", false);
    f[at] = value;
    f
}

fn case(name: &str) -> Case {
    let after_hello = |bytes: Vec<u8>, end: End, expect: Expect| Case {
        query: "",
        hello: Some(false),
        sessions: vec![bytes],
        end,
        expect: vec![expect],
    };
    let before_hello = |bytes: Vec<u8>, end: End| Case {
        query: "",
        hello: None,
        sessions: vec![bytes],
        end,
        expect: Vec::new(),
    };
    match name {
        "bad_magic" => after_hello(
            patched(0, b'X'),
            End::Stay,
            frame_error(FrameError::BadMagic { found: *b"XPCX" }),
        ),
        "wrong_version" => after_hello(
            patched(4, VERSION + 1),
            End::Stay,
            frame_error(FrameError::Version { found: VERSION + 1 }),
        ),
        "unknown_kind" => after_hello(
            patched(5, 9),
            End::Stay,
            frame_error(FrameError::UnknownKind(9)),
        ),
        "unknown_flags" => after_hello(
            patched(6, 0x80),
            End::Stay,
            frame_error(FrameError::UnknownFlags(0x80)),
        ),
        "too_long" => {
            let lens = [LIMIT + 1, 1 << 32, 1 << 63, u64::MAX - 1, u64::MAX];
            Case {
                query: "",
                hello: Some(false),
                sessions: lens
                    .iter()
                    .map(|&len| header(KIND_DATA, 0, 0, len).to_vec())
                    .collect(),
                end: End::Stay,
                expect: lens
                    .iter()
                    .map(|&len| frame_error(FrameError::TooLong { len, max: LIMIT }))
                    .collect(),
            }
        }
        "chunks_too_long" => {
            // Each chunk fits; together they do not.
            let chunk = 40 << 10;
            let mut bytes = header(KIND_DATA, FLAG_MORE, 0, chunk).to_vec();
            bytes.resize(bytes.len() + chunk as usize, 1);
            bytes.extend_from_slice(&header(KIND_DATA, 0, 0, chunk));
            after_hello(
                bytes,
                End::Stay,
                frame_error(FrameError::TooLong {
                    len: 2 * chunk,
                    max: LIMIT,
                }),
            )
        }
        "truncated_header" => after_hello(
            data_frame(b"hello", false)[..7].to_vec(),
            End::Close,
            frame_error(FrameError::Truncated {
                part: "header",
                got: 7,
                expected: HEADER_LEN as u64,
            }),
        ),
        "truncated_payload" => {
            let mut bytes = header(KIND_DATA, 0, 0, 100).to_vec();
            bytes.extend_from_slice(b"12345");
            after_hello(
                bytes,
                End::Close,
                frame_error(FrameError::Truncated {
                    part: "payload",
                    got: 5,
                    expected: 100,
                }),
            )
        }
        "vanishes_mid_frame" => {
            let mut bytes = header(KIND_DATA, 0, 0, 1000).to_vec();
            bytes.extend_from_slice(&[7; 10]);
            after_hello(
                bytes,
                End::Vanish,
                frame_error(FrameError::Truncated {
                    part: "payload",
                    got: 10,
                    expected: 1000,
                }),
            )
        }
        "crc_mismatch" => {
            let mut bytes = data_frame(b"hello", true);
            let actual = u32::from_le_bytes(bytes[16..20].try_into().unwrap());
            bytes[16] ^= 0xff;
            let expected = u32::from_le_bytes(bytes[16..20].try_into().unwrap());
            assert_ne!(bytes[6] & FLAG_CRC, 0);
            Case {
                query: "crc=true",
                hello: Some(true),
                ..after_hello(
                    bytes,
                    End::Stay,
                    frame_error(FrameError::Crc { expected, actual }),
                )
            }
        }
        // A peer that agreed to crc=true in its hello, then sends a frame
        // without one: refused, not taken unchecked.
        "missing_crc" => Case {
            query: "crc=true",
            hello: Some(true),
            ..after_hello(
                data_frame(b"hello", false),
                End::Stay,
                frame_error(FrameError::MissingCrc),
            )
        },
        "second_hello" => after_hello(
            hello_frame(Hello::new(false, 16 << 20)),
            End::Stay,
            frame_error(FrameError::Unexpected("second hello")),
        ),
        "fds_announced_not_sent" => {
            let mut bytes = data_frame(b"x", false);
            bytes[7] = 3;
            after_hello(
                bytes,
                End::Stay,
                Box::new(|k| matches!(k, ErrorKind::Frame(FrameError::Fds(_)))),
            )
        }
        "handshake_not_ipcx" => {
            before_hello(b"GET / HTTP/1.1\r\nHost: ipcx\r\n\r\n".to_vec(), End::Stay)
        }
        "handshake_wrong_version" => {
            let mut bytes = hello_frame(Hello::new(false, 16 << 20));
            bytes[4] = VERSION + 1;
            before_hello(bytes, End::Stay)
        }
        "handshake_huge_length" => {
            before_hello(header(KIND_HELLO, 0, 0, u64::MAX).to_vec(), End::Stay)
        }
        "handshake_data_first" => before_hello(data_frame(b"hi", false), End::Stay),
        "handshake_unknown_auth" => {
            let mut hello = Hello::new(false, 16 << 20);
            hello.auth = 7;
            before_hello(hello_frame(hello), End::Stay)
        }
        "handshake_truncated" => {
            let bytes = hello_frame(Hello::new(false, 16 << 20))[..10].to_vec();
            before_hello(bytes, End::Close)
        }
        other => panic!("no case named {other}"),
    }
}

// ---------------------------------------------------------------------------
// The server (this process)

fn run(transport: Transport, name: &str) {
    let t = Test::start();
    let case = case(name);
    if let Some(role) = t.child_role() {
        if role == "hostile" {
            hostile(&case);
        }
        return good_client();
    }
    let dir = t.scratch();
    let mut listener = transport.bind(&dir, case.query);
    let spawn = |role: &str, listener: &Listener| {
        t.spawn(role, |c| {
            set_param(c, "URL", listener.endpoint().url());
            set_param(c, "ADDR", &raw_address(listener)).stdin(Stdio::piped())
        })
    };
    let mut child = spawn("hostile", &listener);
    if case.hello.is_some() {
        let mut go = child.take_stdin().expect("the child's stdin");
        for (i, expect) in case.expect.iter().enumerate() {
            let mut bad = common::accept(&mut listener, &mut child);
            // The handshake is over: now the peer may misbehave.
            go.write_all(b"g").expect("tell the peer to go on");
            if case.end == End::Vanish {
                child.wait_ready();
                child.kill();
            }
            let err = bad
                .recv_timeout(common::PATIENCE)
                .expect_err("recv of hostile bytes");
            assert!(expect(err.kind()), "{name}, connection {i}: got `{err}`");
            let again = bad
                .recv_timeout(common::PATIENCE)
                .expect_err("recv after the error");
            assert_eq!(again.kind(), err.kind(), "the link stays failed");
        }
    }
    if case.end == End::Vanish {
        child = spawn("good", &listener);
    }
    // Before the handshake, the hostile peer was dropped inside `accept`:
    // what it returns now is the good client.
    serve_good(&mut common::accept(&mut listener, &mut child));
    child.finish();
}

/// The server half of the good client's round trip.
fn serve_good(link: &mut Link) {
    assert_eq!(
        link.recv_timeout(common::PATIENCE)
            .expect("recv from the good client"),
        b"ping"
    );
    link.send(b"pong").expect("send to the good client");
}

/// How the raw peer reaches the listener: `unix:/path` or `tcp:host:port`.
fn raw_address(listener: &Listener) -> String {
    match listener.endpoint().address() {
        Address::Path(p) => format!("unix:{}", p.display()),
        Address::HostPort { host, port } => format!("tcp:{host}:{port}"),
        other => panic!("no raw socket for {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The peers (the child process)

/// A well-behaved ipcx client: one round trip.
fn good_client() {
    let mut link = common::connect(&param("URL"));
    link.send(b"ping").expect("send ping");
    assert_eq!(
        link.recv_timeout(common::PATIENCE).expect("recv pong"),
        b"pong"
    );
}

/// Sends the case's bytes over raw sockets, one connection per session.
fn hostile(case: &Case) {
    for bytes in &case.sessions {
        let mut raw = Raw::connect(&param("ADDR"));
        if let Some(crc) = case.hello {
            raw.write_all(&hello_frame(Hello::new(crc, 16 << 20)))
                .expect("send hello");
            // The server answers once it read ours (a peer that never says
            // hello gets nothing back).
            raw.read_server_hello();
            // Wait until the server's `accept` has returned this link, so
            // that the bytes reach `recv`, not the handshake.
            let mut go = [0u8];
            std::io::stdin()
                .read_exact(&mut go)
                .expect("wait for the server to accept");
        }
        raw.write_all(bytes).expect("send the hostile bytes");
        match case.end {
            End::Stay => raw.expect_closed(),
            End::Close => {
                raw.shutdown_write();
                raw.expect_closed();
            }
            End::Vanish => {
                common::ready("mid-frame");
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
        }
    }
}

/// A socket that knows nothing of ipcx.
enum Raw {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Raw {
    fn connect(addr: &str) -> Raw {
        let raw = match addr.split_once(':') {
            Some(("unix", path)) => Raw::Unix(UnixStream::connect(path).expect("connect unix")),
            Some(("tcp", hp)) => Raw::Tcp(TcpStream::connect(hp).expect("connect tcp")),
            _ => panic!("bad raw address {addr}"),
        };
        // A hang guard only: the server answers at once.
        let timeout = Some(Duration::from_secs(30));
        match &raw {
            Raw::Unix(s) => s.set_read_timeout(timeout),
            Raw::Tcp(s) => s.set_read_timeout(timeout),
        }
        .expect("set a read timeout");
        raw
    }

    /// Reads the server's hello, which it sends once ours checked out. (A
    /// TCP peer that closes with unread bytes resets the connection, which
    /// would turn the end of its stream into an error on the server.)
    fn read_server_hello(&mut self) {
        let mut buf = [0u8; HEADER_LEN + Hello::LEN];
        self.read_exact(&mut buf).expect("read the server's hello");
        let h = Header::decode(buf[..HEADER_LEN].try_into().unwrap()).expect("hello header");
        assert_eq!(h.kind, KIND_HELLO);
        Hello::decode(&buf[HEADER_LEN..]).expect("hello payload");
    }

    fn shutdown_write(&self) {
        match self {
            Raw::Unix(s) => s.shutdown(Shutdown::Write),
            Raw::Tcp(s) => s.shutdown(Shutdown::Write),
        }
        .expect("shutdown the write side");
    }

    /// Waits until the server closes the connection.
    fn expect_closed(&mut self) {
        let mut buf = [0u8; 64];
        match self.read(&mut buf) {
            Ok(0) => {}
            // The server closed with our bytes unread.
            Err(e) if e.kind() == IoErrorKind::ConnectionReset => {}
            Ok(n) => panic!("the server sent {n} unexpected bytes: {:?}", &buf[..n]),
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
    }
}

impl Read for Raw {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Raw::Unix(s) => s.read(buf),
            Raw::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Raw {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Raw::Unix(s) => s.write(buf),
            Raw::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// A peer that says nothing

/// A peer that connects and stays silent times out alone: meanwhile a good
/// client is accepted and served, and after the timeout the listener drops
/// the silent one and serves another.
fn silent_peer(transport: Transport) {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut silent = Raw::connect(&param("ADDR"));
        good_client();
        // A peer that never says hello is never answered, only closed.
        silent.expect_closed();
        return good_client();
    }
    let dir = t.scratch();
    let mut listener = transport.bind(&dir, "handshake_timeout=500ms");
    let mut child: ChildProcess = t.spawn("silent", |c| {
        set_param(c, "URL", listener.endpoint().url());
        set_param(c, "ADDR", &raw_address(&listener))
    });
    serve_good(&mut common::accept(&mut listener, &mut child));
    // This accept outlives the silent peer's deadline: it drops it, and
    // only then does the child connect its second good client.
    serve_good(&mut common::accept(&mut listener, &mut child));
    child.finish();
}

/// A valid hello and a bad frame in one write: the server may meet the bad
/// frame in the handshake (and drop the peer inside `accept`) or in `recv`
/// (an error on the accepted link); either way the peer is never served
/// and the good client that follows is.
fn hello_and_garbage_together(transport: Transport) {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut raw = Raw::connect(&param("ADDR"));
        let mut bytes = hello_frame(Hello::new(false, 16 << 20));
        bytes.extend_from_slice(&patched(0, b'X'));
        raw.write_all(&bytes).expect("send hello and garbage");
        // Answered (the hello was good), then closed (the rest was not).
        raw.read_server_hello();
        raw.expect_closed();
        return good_client();
    }
    let dir = t.scratch();
    let mut listener = transport.bind(&dir, "");
    let mut child = t.spawn("hostile", |c| {
        set_param(c, "URL", listener.endpoint().url());
        set_param(c, "ADDR", &raw_address(&listener))
    });
    let mut first = common::accept(&mut listener, &mut child);
    match first.recv_timeout(common::PATIENCE) {
        // Dropped in the handshake: this is the good client.
        Ok(msg) => {
            assert_eq!(msg, b"ping");
            first.send(b"pong").expect("send to the good client");
        }
        Err(e) => {
            let bad_magic = FrameError::BadMagic { found: *b"XPCX" };
            assert_eq!(*e.kind(), ErrorKind::Frame(bad_magic), "{e}");
            drop(first);
            serve_good(&mut common::accept(&mut listener, &mut child));
        }
    }
    child.finish();
}

macro_rules! bad_input {
    ($($module:ident => $transport:expr),* $(,)?) => {$(
        mod $module {
            use super::*;

            bad_input!(@cases $transport;
                bad_magic, wrong_version, unknown_kind, unknown_flags, too_long,
                chunks_too_long, truncated_header, truncated_payload,
                vanishes_mid_frame, crc_mismatch, second_hello, fds_announced_not_sent,
                handshake_not_ipcx, handshake_wrong_version, handshake_huge_length,
                handshake_data_first, handshake_unknown_auth, handshake_truncated,
                missing_crc);

            #[test]
            fn silent_peer() {
                super::silent_peer($transport);
            }

            #[test]
            fn hello_and_garbage_together() {
                super::hello_and_garbage_together($transport);
            }
        }
    )*};
    (@cases $transport:expr; $($case:ident),*) => {$(
        #[test]
        fn $case() {
            run($transport, stringify!($case));
        }
    )*};
}

bad_input! {
    unix => Transport::Unix,
    tcp => Transport::Tcp,
}
