//! STUN Binding (RFC 8489): the request we send and the one answer we read.
//!
//! Pure and total: [`binding_request`] builds a datagram, [`parse_response`]
//! reads any bytes without panicking and yields the server-reflexive address
//! (what a NAT in front of us turned our source into). No authentication is
//! used: a Binding request needs none (RFC 8489 §9), and MESSAGE-INTEGRITY in
//! a response is ignored. FINGERPRINT, when present, is verified.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// RFC 8489 §5: the fixed value in bytes 4..8 of every message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;

/// RFC 8489 §5: 96 bits chosen at random by the client, echoed by the server.
pub type TransactionId = [u8; 12];

const HEADER_LEN: usize = 20;
/// RFC 8489 §5 and §6: method Binding (0x001) in class request / success response.
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
// RFC 8489 §18.3 attribute registry.
const MAPPED_ADDRESS: u16 = 0x0001;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
const FINGERPRINT: u16 = 0x8028;
/// RFC 8489 §14.7: the CRC-32 is XOR'ed with "STUN" in ASCII.
const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// Why a datagram is not the Binding success response we wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("not a STUN message (short, bad length, top bits or magic cookie)")]
    NotStun,
    #[error("STUN message type {0:#06x} is not a Binding success response")]
    NotBindingSuccess(u16),
    #[error("STUN transaction id does not match the request")]
    OtherTransaction,
    #[error("STUN attribute runs past the end of the message")]
    Truncated,
    #[error("STUN FINGERPRINT does not match the message")]
    BadFingerprint,
    #[error("STUN response carries no usable (XOR-)MAPPED-ADDRESS")]
    NoAddress,
}

/// A Binding request (RFC 8489 §6.1) with a FINGERPRINT (§14.7), 28 bytes.
pub fn binding_request(id: &TransactionId) -> [u8; 28] {
    let mut m = [0u8; 28];
    m[0..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    // §5: the length counts the attributes only: the 8-byte FINGERPRINT.
    m[2..4].copy_from_slice(&8u16.to_be_bytes());
    m[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    m[8..20].copy_from_slice(id);
    m[20..22].copy_from_slice(&FINGERPRINT.to_be_bytes());
    m[22..24].copy_from_slice(&4u16.to_be_bytes());
    let fp = crc32(&m[..20]) ^ FINGERPRINT_XOR;
    m[24..28].copy_from_slice(&fp.to_be_bytes());
    m
}

/// Reads a Binding success response to the request `id` and returns the
/// mapped address: XOR-MAPPED-ADDRESS (§14.2) when present, else the
/// RFC 3489-era MAPPED-ADDRESS (§14.1). Never panics.
pub fn parse_response(msg: &[u8], id: &TransactionId) -> Result<SocketAddr, Error> {
    // §5 header: two zero bits, type, length (a multiple of 4 that covers
    // the whole datagram), magic cookie, transaction id.
    let header = msg.get(..HEADER_LEN).ok_or(Error::NotStun)?;
    let msg_type = u16::from_be_bytes([header[0], header[1]]);
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if msg_type & 0xC000 != 0
        || len % 4 != 0
        || msg.len() != HEADER_LEN + len
        || header[4..8] != MAGIC_COOKIE.to_be_bytes()
    {
        return Err(Error::NotStun);
    }
    if msg_type != BINDING_SUCCESS {
        return Err(Error::NotBindingSuccess(msg_type));
    }
    // §6.3: a response is matched to its request by the transaction id.
    if header[8..20] != id[..] {
        return Err(Error::OtherTransaction);
    }

    let (mut xor_mapped, mut mapped) = (None, None);
    let mut integrity_seen = false;
    let mut at = HEADER_LEN;
    while at < msg.len() {
        let head = msg.get(at..at + 4).ok_or(Error::Truncated)?;
        let kind = u16::from_be_bytes([head[0], head[1]]);
        let vlen = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let value = msg.get(at + 4..at + 4 + vlen).ok_or(Error::Truncated)?;
        match kind {
            FINGERPRINT => {
                // §14.7: CRC-32 over the message up to the attribute, whose
                // length field already counts the FINGERPRINT; it is last,
                // anything after it is ignored.
                let want = crc32(&msg[..at]) ^ FINGERPRINT_XOR;
                if value != want.to_be_bytes() {
                    return Err(Error::BadFingerprint);
                }
                break;
            }
            // §14.5/§14.6: only FINGERPRINT may follow MESSAGE-INTEGRITY;
            // we hold no key, so we ignore it and what it would cover.
            MESSAGE_INTEGRITY | MESSAGE_INTEGRITY_SHA256 => integrity_seen = true,
            XOR_MAPPED_ADDRESS if !integrity_seen => xor_mapped = address(value, Some(id)),
            MAPPED_ADDRESS if !integrity_seen => mapped = address(value, None),
            _ => {}
        }
        // §14: values are padded to a multiple of 4 bytes.
        at += 4 + vlen.next_multiple_of(4);
    }
    xor_mapped.or(mapped).ok_or(Error::NoAddress)
}

/// An address attribute value (§14.1): reserved byte, family, port, address.
/// With `xor` the port and address are XOR'ed with the magic cookie and,
/// for IPv6, the transaction id (§14.2).
fn address(value: &[u8], xor: Option<&TransactionId>) -> Option<SocketAddr> {
    let mut pad = [0u8; 16];
    if let Some(id) = xor {
        pad[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        pad[4..].copy_from_slice(id);
    }
    let port =
        u16::from_be_bytes([*value.get(2)?, *value.get(3)?]) ^ u16::from_be_bytes([pad[0], pad[1]]);
    let ip = match (value.get(1)?, value.len()) {
        (0x01, 8) => {
            let mut a = [0u8; 4];
            a.iter_mut()
                .zip(&value[4..])
                .zip(&pad)
                .for_each(|((o, v), p)| *o = v ^ p);
            IpAddr::V4(Ipv4Addr::from(a))
        }
        (0x02, 20) => {
            let mut a = [0u8; 16];
            a.iter_mut()
                .zip(&value[4..])
                .zip(&pad)
                .for_each(|((o, v), p)| *o = v ^ p);
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// CRC-32 (ISO-HDLC: reflected polynomial 0xEDB88320, as in ITU-T V.42,
/// which §14.7 names), bit by bit: the messages are tens of bytes.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // RFC 5769 test vectors. All three share this transaction id.
    const ID: TransactionId = [
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ];

    /// RFC 5769 §2.1: sample request (SOFTWARE, PRIORITY, ICE-CONTROLLED,
    /// USERNAME, MESSAGE-INTEGRITY, FINGERPRINT).
    const REQUEST: [u8; 108] = [
        0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74,
        0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e,
        0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36,
        0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20,
        0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e,
        0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5,
        0x7a, 0x3b, 0xcf,
    ];

    /// RFC 5769 §2.2: sample IPv4 response, mapped 192.0.2.1:32853.
    const RESPONSE4: [u8; 80] = [
        0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76,
        0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1,
        0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3,
        0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00,
        0x04, 0xc0, 0x7d, 0x4c, 0x96,
    ];

    /// RFC 5769 §2.3: sample IPv6 response, mapped
    /// [2001:db8:1234:5678:11:2233:4455:6677]:32853.
    const RESPONSE6: [u8; 92] = [
        0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76,
        0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01,
        0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
        0x00, 0x08, 0x00, 0x14, 0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9,
        0x7c, 0x82, 0x92, 0xc2, 0x75, 0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb,
        0x0b, 0x4c,
    ];

    #[test]
    fn rfc5769_ipv4_response() {
        let want: SocketAddr = "192.0.2.1:32853".parse().unwrap();
        assert_eq!(parse_response(&RESPONSE4, &ID), Ok(want));
    }

    #[test]
    fn rfc5769_ipv6_response() {
        let want: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse()
            .unwrap();
        assert_eq!(parse_response(&RESPONSE6, &ID), Ok(want));
    }

    #[test]
    fn rfc5769_fingerprints_match_our_crc32() {
        // The standard CRC-32 check value, then each vector's FINGERPRINT.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        for v in [&REQUEST[..], &RESPONSE4, &RESPONSE6] {
            let (body, fp) = v.split_at(v.len() - 4);
            assert_eq!(
                crc32(&body[..body.len() - 4]) ^ FINGERPRINT_XOR,
                u32::from_be_bytes(fp.try_into().unwrap())
            );
        }
    }

    #[test]
    fn rfc5769_request_is_not_a_response() {
        assert_eq!(
            parse_response(&REQUEST, &ID),
            Err(Error::NotBindingSuccess(0x0001))
        );
    }

    #[test]
    fn our_request_matches_the_rfc5769_header_and_has_a_valid_fingerprint() {
        let req = binding_request(&ID);
        assert_eq!(req[..2], REQUEST[..2]);
        assert_eq!(req[4..20], REQUEST[4..20]);
        assert_eq!(&req[2..4], &[0, 8]);
        assert_eq!(
            crc32(&req[..20]) ^ FINGERPRINT_XOR,
            u32::from_be_bytes(req[24..].try_into().unwrap())
        );
        // Our own parser sees a request (and verifies nothing else).
        assert_eq!(parse_response(&req, &ID), Err(Error::NotBindingSuccess(1)));
    }

    #[test]
    fn rejects_other_transaction_bad_fingerprint_and_damage() {
        let mut other = ID;
        other[11] ^= 1;
        assert_eq!(
            parse_response(&RESPONSE4, &other),
            Err(Error::OtherTransaction)
        );

        let mut bad_fp = RESPONSE4;
        bad_fp[79] ^= 1;
        assert_eq!(parse_response(&bad_fp, &ID), Err(Error::BadFingerprint));

        // A changed byte under the FINGERPRINT is caught by it.
        let mut flipped = RESPONSE4;
        flipped[45] ^= 1;
        assert_eq!(parse_response(&flipped, &ID), Err(Error::BadFingerprint));

        assert_eq!(parse_response(&RESPONSE4[..79], &ID), Err(Error::NotStun));
        let mut cookie = RESPONSE4;
        cookie[4] = 0;
        assert_eq!(parse_response(&cookie, &ID), Err(Error::NotStun));
        let mut error_response = RESPONSE4;
        error_response[1] = 0x11;
        assert_eq!(
            parse_response(&error_response, &ID),
            Err(Error::NotBindingSuccess(0x0111))
        );
    }

    /// A bare response holding the given attributes, no FINGERPRINT.
    fn response(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut m = vec![0x01, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42];
        m.extend_from_slice(&ID);
        for (kind, value) in attrs {
            m.extend_from_slice(&kind.to_be_bytes());
            m.extend_from_slice(&(value.len() as u16).to_be_bytes());
            m.extend_from_slice(value);
            m.resize(m.len().next_multiple_of(4), 0);
        }
        let len = (m.len() - HEADER_LEN) as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
        m
    }

    #[test]
    fn mapped_address_fallback_and_xor_preference() {
        // MAPPED-ADDRESS: 203.0.113.7:4242 in the clear.
        let plain: &[u8] = &[0, 1, 0x10, 0x92, 203, 0, 113, 7];
        let got = parse_response(&response(&[(MAPPED_ADDRESS, plain)]), &ID);
        assert_eq!(got, Ok("203.0.113.7:4242".parse().unwrap()));
        // Both present: XOR-MAPPED-ADDRESS wins, whatever the order.
        let xor = &RESPONSE4[40..48];
        let got = parse_response(
            &response(&[(MAPPED_ADDRESS, plain), (XOR_MAPPED_ADDRESS, xor)]),
            &ID,
        );
        assert_eq!(got, Ok("192.0.2.1:32853".parse().unwrap()));
        // After MESSAGE-INTEGRITY nothing but FINGERPRINT counts.
        let got = parse_response(
            &response(&[(MESSAGE_INTEGRITY, &[0; 20]), (XOR_MAPPED_ADDRESS, xor)]),
            &ID,
        );
        assert_eq!(got, Err(Error::NoAddress));
        // Wrong family/length pairs and unknown attributes give no address.
        let got = parse_response(
            &response(&[
                (XOR_MAPPED_ADDRESS, &[0, 2, 0, 0, 1, 2, 3, 4]),
                (0x8022, b"x"),
            ]),
            &ID,
        );
        assert_eq!(got, Err(Error::NoAddress));
        // An attribute longer than the message.
        let mut m = response(&[(XOR_MAPPED_ADDRESS, xor)]);
        m[23] = 200;
        assert_eq!(parse_response(&m, &ID), Err(Error::Truncated));
    }

    proptest! {
        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_response(&bytes, &ID);
        }

        /// Past the header checks: a valid header over random attributes.
        #[test]
        fn never_panics_on_random_attributes(body in proptest::collection::vec(any::<u8>(), 0..50)) {
            let mut m = response(&[]);
            m.extend_from_slice(&body);
            m.resize(m.len().next_multiple_of(4), 0);
            let len = (m.len() - HEADER_LEN) as u16;
            m[2..4].copy_from_slice(&len.to_be_bytes());
            let _ = parse_response(&m, &ID);
        }

        #[test]
        fn xor_mapped_round_trips(ip in any::<std::net::IpAddr>(), port in any::<u16>()) {
            let mut v = vec![0, if ip.is_ipv4() { 1 } else { 2 }];
            v.extend_from_slice(&(port ^ 0x2112).to_be_bytes());
            let mut pad = MAGIC_COOKIE.to_be_bytes().to_vec();
            pad.extend_from_slice(&ID);
            let raw = match ip { IpAddr::V4(a) => a.octets().to_vec(), IpAddr::V6(a) => a.octets().to_vec() };
            v.extend(raw.iter().zip(&pad).map(|(a, p)| a ^ p));
            prop_assert_eq!(parse_response(&response(&[(XOR_MAPPED_ADDRESS, &v)]), &ID), Ok(SocketAddr::new(ip, port)));
        }
    }
}
