use super::*;
use crate::wire::encode_message;

fn decode_all(bytes: &[u8], limit: usize) -> (Vec<Vec<u8>>, Option<Error>) {
    let mut d = Decoder::new(Codec::Framed, limit, false);
    let mut src = bytes;
    let mut out = Vec::new();
    loop {
        match d.poll(&mut src) {
            Ok(Some(Decoded::Message { .. })) => {
                let mut m = Vec::new();
                d.take_message(&mut m);
                out.push(m);
            }
            Ok(Some(Decoded::Hello(_))) => {}
            Ok(None) => unreachable!("a slice never blocks"),
            Err(e) if e.is_closed() => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}

#[test]
fn a_message_in_several_frames_reassembles() {
    let msg: Vec<u8> = (0..(3 * super::super::FRAME_MAX + 7))
        .map(|i| i as u8)
        .collect();
    let mut bytes = Vec::new();
    encode_message(&msg, true, &mut bytes);
    encode_message(b"", false, &mut bytes);
    let (got, err) = decode_all(&bytes, 16 << 20);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, vec![msg, vec![]]);
}

#[test]
fn length_near_u64_max_is_refused_before_allocating() {
    let h = Header {
        kind: super::super::KIND_DATA,
        flags: 0,
        nfds: 0,
        len: u64::MAX - 3,
        crc: 0,
    };
    let (_, err) = decode_all(&h.encode(), 1 << 20);
    let err = err.expect("error");
    assert!(
        matches!(err.kind(), ErrorKind::Frame(FrameError::TooLong { .. })),
        "{err}"
    );
}

#[test]
fn truncation_and_crc_are_named() {
    let mut bytes = Vec::new();
    encode_message(b"hello world", true, &mut bytes);
    let (_, err) = decode_all(&bytes[..25], 1 << 20);
    assert!(matches!(
        err.unwrap().kind(),
        ErrorKind::Frame(FrameError::Truncated {
            part: "payload",
            ..
        })
    ));
    let (_, err) = decode_all(&bytes[..7], 1 << 20);
    assert!(matches!(
        err.unwrap().kind(),
        ErrorKind::Frame(FrameError::Truncated { part: "header", .. })
    ));
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let (_, err) = decode_all(&bytes, 1 << 20);
    assert!(matches!(
        err.unwrap().kind(),
        ErrorKind::Frame(FrameError::Crc { .. })
    ));
}

#[test]
fn a_crc_link_refuses_frames_without_crc() {
    let mut bytes = Vec::new();
    encode_message(b"no crc here", false, &mut bytes);
    let mut d = Decoder::new(Codec::Framed, 1 << 20, false).require_crc(true);
    let err = d.poll(&mut &bytes[..]).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Frame(FrameError::MissingCrc)),
        "{err}"
    );
}

#[test]
fn lines_split_and_keep_a_last_unterminated_line() {
    let mut d = Decoder::new(Codec::Lines, 100, false);
    let mut src: &[u8] = b"a\nbc\n\nlast";
    let mut lines = Vec::new();
    while let Ok(Some(_)) = d.poll(&mut src) {
        let mut m = Vec::new();
        d.take_message(&mut m);
        lines.push(String::from_utf8(m).unwrap());
    }
    assert_eq!(lines, ["a", "bc", "", "last"]);
}
