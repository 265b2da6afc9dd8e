//! A TLS ClientHello padded to a chosen size, for the path-MTU probe.
//!
//! The probe sends one full-size segment towards an ordinary TLS server and
//! waits for the server's first flight (several KB in full-size segments).
//! The hello is built here, pure: the caller supplies the random bytes. The
//! server's reply is only counted, never parsed.

/// Content type of a TLS handshake record (RFC 8446 §5.1).
pub const HANDSHAKE: u8 = 22;

/// The largest record body TLS allows (RFC 8446 §5.1): 2^14.
const MAX_RECORD: usize = 16_384;

/// Extension type of the padding extension (RFC 7685 §3).
const PADDING: u16 = 21;

/// Cipher suites offered: the TLS 1.3 ones, then common TLS 1.2 AEAD ones,
/// so that a server of either version answers with its first flight.
const SUITES: [u16; 9] = [
    0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8,
];

/// A ClientHello record of exactly `size` bytes (record header included)
/// when `size` is between its unpadded length and the largest record;
/// clamped into that range otherwise. `random` fills the hello's random
/// and session id, `key` is the X25519 key share (any 32 bytes are a valid
/// public key for a server to answer; the handshake is never finished).
pub fn client_hello(random: &[u8; 32], key: &[u8; 32], size: usize) -> Vec<u8> {
    let mut ext = Vec::new();
    // supported_groups: x25519, secp256r1.
    extension(&mut ext, 10, &list16(&[0x00, 0x1d, 0x00, 0x17]));
    // ec_point_formats: uncompressed.
    extension(&mut ext, 11, &[1, 0]);
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256,
    // rsa_pkcs1_sha256, ecdsa_secp384r1_sha384, rsa_pss_rsae_sha384,
    // rsa_pkcs1_sha384, rsa_pss_rsae_sha512, rsa_pkcs1_sha512.
    let sigs = [
        0x04, 0x03, 0x08, 0x04, 0x04, 0x01, 0x05, 0x03, 0x08, 0x05, 0x05, 0x01, 0x08, 0x06, 0x06,
        0x01,
    ];
    extension(&mut ext, 13, &list16(&sigs));
    // supported_versions: TLS 1.3, TLS 1.2.
    extension(&mut ext, 43, &[4, 0x03, 0x04, 0x03, 0x03]);
    // key_share: one x25519 share.
    let mut share = vec![0x00, 0x1d, 0x00, 0x20];
    share.extend_from_slice(key);
    extension(&mut ext, 51, &list16(&share));

    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(random);
    body.push(32);
    body.extend_from_slice(random);
    let suites: Vec<u8> = SUITES.iter().flat_map(|s| s.to_be_bytes()).collect();
    body.extend_from_slice(&list16(&suites));
    body.extend_from_slice(&[1, 0]);

    // Record header 5, handshake header 4, extensions length 2, padding
    // extension header 4.
    let unpadded = 5 + 4 + body.len() + 2 + ext.len();
    let target = size.clamp(unpadded + 4, MAX_RECORD + 5);
    let pad = target - unpadded - 4;
    extension(&mut ext, PADDING, &vec![0; pad]);
    body.extend_from_slice(&list16(&ext));

    let mut handshake = vec![1];
    handshake.extend_from_slice(&u24(body.len()));
    handshake.extend_from_slice(&body);
    let mut record = vec![HANDSHAKE, 0x03, 0x01];
    record.extend_from_slice(&len16(handshake.len()));
    record.extend_from_slice(&handshake);
    record
}

fn extension(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&list16(data));
}

/// `data` behind its 16-bit length.
fn list16(data: &[u8]) -> Vec<u8> {
    let mut v = len16(data.len()).to_vec();
    v.extend_from_slice(data);
    v
}

/// Lengths here are bounded by [`MAX_RECORD`], so they fit; saturate anyway.
fn len16(n: usize) -> [u8; 2] {
    u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes()
}

fn u24(n: usize) -> [u8; 3] {
    let [_, a, b, c] = u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
    [a, b, c]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A total reader of what the test needs: the record and handshake
    /// headers and the extension types, each length checked.
    fn parse(b: &[u8]) -> Option<(u8, u8, Vec<u16>, usize)> {
        let be16 = |b: &[u8], at: usize| -> Option<usize> {
            Some(usize::from(u16::from_be_bytes([
                *b.get(at)?,
                *b.get(at + 1)?,
            ])))
        };
        let (ctype, rlen) = (*b.first()?, be16(b, 3)?);
        let rec = b.get(5..)?;
        if rec.len() != rlen {
            return None;
        }
        let htype = *rec.first()?;
        let hlen = usize::from(*rec.get(1)?) << 16 | be16(rec, 2)?;
        let body = rec.get(4..)?;
        if body.len() != hlen {
            return None;
        }
        let mut at = 2 + 32;
        at += 1 + usize::from(*body.get(at)?);
        at += 2 + be16(body, at)?;
        at += 1 + usize::from(*body.get(at)?);
        let elen = be16(body, at)?;
        let mut exts = body.get(at + 2..)?;
        if exts.len() != elen {
            return None;
        }
        let mut kinds = Vec::new();
        let mut padding = 0;
        while !exts.is_empty() {
            let kind = u16::try_from(be16(exts, 0)?).ok()?;
            let len = be16(exts, 2)?;
            let data = exts.get(4..4 + len)?;
            if kind == PADDING {
                if data.iter().any(|&x| x != 0) {
                    return None;
                }
                padding = len;
            }
            kinds.push(kind);
            exts = exts.get(4 + len..)?;
        }
        Some((ctype, htype, kinds, padding))
    }

    #[test]
    fn the_hello_parses_as_a_handshake_record_of_the_requested_size() {
        for size in [600, 1400, 1500, 9000] {
            let hello = client_hello(&[7; 32], &[9; 32], size);
            assert_eq!(hello.len(), size);
            let (ctype, htype, kinds, padding) = parse(&hello).expect("parses");
            assert_eq!((ctype, htype), (HANDSHAKE, 1), "a ClientHello record");
            assert_eq!(kinds.last(), Some(&PADDING));
            assert!(kinds.contains(&43) && kinds.contains(&51));
            assert!(padding > 0);
        }
    }

    #[test]
    fn sizes_out_of_range_are_clamped() {
        let small = client_hello(&[0; 32], &[0; 32], 0);
        assert!(small.len() < 400 && parse(&small).is_some());
        let huge = client_hello(&[0; 32], &[0; 32], 1 << 20);
        assert_eq!(huge.len(), MAX_RECORD + 5);
        assert!(parse(&huge).is_some());
    }
}
