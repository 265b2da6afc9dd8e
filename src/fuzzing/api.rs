//! The `api` target: the sidecar's parsers of outside input (the Host and
//! Origin guard, the `/pairs` query string, the JSON string writer).

use std::net::IpAddr;

/// Every parser of outside input over arbitrary bytes, for the fuzz target
/// `api` and the corpus replay in `cargo test`: the first line is a `Host`
/// value, the second an `Origin`, the third a `/pairs` query string, the
/// rest a JSON string.
pub fn api(data: &[u8]) {
    let mut parts = data.splitn(4, |&b| b == b'\n');
    let host = parts.next().unwrap_or_default();
    let origin = parts.next().unwrap_or_default();
    let query = parts.next().unwrap_or_default();
    let rest = parts.next().unwrap_or_default();
    let ours = [IpAddr::from([192, 0, 2, 2])];
    let origins: &[&[u8]] = if origin.is_empty() { &[] } else { &[origin] };
    let _ = crate::api::guard::check(&[host], None, origins, &ours);
    let _ = crate::api::guard::check(&[host], std::str::from_utf8(origin).ok(), &[], &ours);
    if let Ok(q) = std::str::from_utf8(query) {
        if let Ok(p) = crate::api::query::pairs(Some(q)) {
            assert!(p.port > 0, "port 0 accepted");
            if let crate::api::query::Target::Name(n) = &p.target {
                let mut wire = Vec::new();
                assert!(
                    crate::dns::wire::write_name(n, &mut wire).is_some(),
                    "a name the query accepted cannot be asked: {n:?}"
                );
            }
        }
        let _ = crate::api::query::target(q);
    }
    let mut out = String::new();
    crate::api::json::string(&mut out, &String::from_utf8_lossy(rest));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_anything() {
        for data in [
            &b""[..],
            b"\n\n\n",
            b"localhost\nhttp://localhost\nhost=a.b&port=1\n\x01",
            b"[::1\nnull\nhost=%ff\n",
            b"\xff\xfe\n\xff\nhost=fe80::1%25\xff",
        ] {
            api(data);
        }
    }
}
