//! The `stun` target: the STUN Binding response parser.

use crate::probe::stun;

/// Parses any bytes as a reply, both to the
/// transaction id they carry (so valid headers reach the attributes) and to
/// another one (which must be refused).
pub fn stun(data: &[u8]) {
    let mut id: stun::TransactionId = [0; 12];
    if let Some(carried) = data.get(8..20) {
        id.copy_from_slice(carried);
    }
    let _ = stun::parse_response(data, &id);
    let mut other = id;
    other[0] ^= 0xff;
    assert!(
        stun::parse_response(data, &other).is_err(),
        "a reply to another transaction was accepted"
    );
}
