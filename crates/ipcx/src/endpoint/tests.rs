use super::*;

#[test]
fn every_scheme_parses() {
    for url in [
        "pipe:",
        "pipe:fd=3,4",
        "fifo:/tmp/f",
        "unix:/run/app.sock",
        "unix:@name",
        "unixseq:/tmp/s",
        "tcp://127.0.0.1:80",
        "tcp://[::1]:80",
        "tls://example.com:443",
        "shm:prices",
        "mq:/jobs",
        "sysvmq:0x1234",
        "journal:/var/q",
        "nats://localhost:4222/orders.new",
    ] {
        Endpoint::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}

#[test]
fn bad_urls_name_the_problem() {
    for (url, needle) in [
        ("nope:/x", "unknown scheme"),
        ("tcp://host", "port"),
        ("tcp://h:99999", "port"),
        ("unix:/a/../b", ".."),
        ("unix:@", "abstract"),
        ("sysvmq:zz", "SysV key"),
        ("pipe:fd=x,1", "read fd"),
        ("noscheme", "missing scheme"),
    ] {
        let e = Endpoint::parse(url).unwrap_err().to_string();
        assert!(e.contains(needle), "{url}: {e}");
    }
}

/// Inputs that used to be accepted and then fail later (or silently do
/// something else) are refused when parsed, saying what to do.
#[test]
fn inputs_that_would_fail_later_are_refused_when_parsed() {
    let long = format!("unix:/tmp/{}", "x".repeat(120));
    for (url, option, needle) in [
        ("unix:/tmp/a?max_msg=0", "max_msg", "at least 1 byte"),
        ("unix:/tmp/a?mode=0600&mode=0666", "mode", "given twice"),
        ("unix:@name?mode=0600", "mode", "abstract socket"),
        ("tcp://h:1?heartbeat=100000s", "heartbeat", "32767"),
    ] {
        let e = Endpoint::parse(url).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::InvalidOption { option: o, .. } if o == option),
            "{url}: {e}"
        );
        assert!(e.to_string().contains(needle), "{url}: {e}");
    }
    let e = Endpoint::parse(&long).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::InvalidEndpoint(_)), "{e}");
    assert!(e.to_string().contains("sun_path"), "{e}");
    // 107 bytes is the most a client can connect to, and is accepted.
    let fits = format!("unix:/tmp/{}", "x".repeat(107 - 5));
    Endpoint::parse(&fits).expect("a 107-byte path");
    // The size parser's range is what its message says.
    assert_eq!(
        Endpoint::parse("shm:a?size=1TiB").unwrap().options().size,
        1 << 40
    );
}

/// Options set in code go through the URL parser and into the URL.
#[test]
fn with_options_validates_and_rewrites_the_url() {
    let ep = Endpoint::parse("unix:/tmp/a?crc=true")
        .unwrap()
        .with_options(|o| {
            o.max_msg = 4096;
            o.timeout = std::time::Duration::from_secs(2);
        })
        .unwrap();
    assert_eq!(ep.url(), "unix:/tmp/a?max_msg=4096&timeout=2s&crc=true");
    assert_eq!(ep.to_string(), ep.url());
    assert_eq!(Endpoint::parse(ep.url()).unwrap(), ep);
    let e = Endpoint::parse("shm:a")
        .unwrap()
        .with_options(|o| o.slots = 0)
        .unwrap_err();
    assert!(e.to_string().contains("slots"), "{e}");
    let forever = Endpoint::parse("unix:/tmp/a")
        .unwrap()
        .with_options(|o| o.timeout = std::time::Duration::MAX)
        .unwrap();
    assert_eq!(forever.options().timeout, std::time::Duration::MAX);
}
