//! Bearer keys: the token service's `TOKEN_API_KEY` and the admin routes' `ADMIN_API_KEY`.

use crate::error::Error;
use crate::wire::signature::constant_time_eq;

/// The key in an `Authorization: Bearer <key>` header (the scheme in either case), or "".
pub fn bearer_key(header: Option<&str>) -> &str {
    let given = header.unwrap_or("");
    given
        .strip_prefix("Bearer ")
        .or_else(|| given.strip_prefix("bearer "))
        .unwrap_or("")
        .trim()
}

/// Checks the header against the expected key in constant time; 401 unless they match.
pub fn check(header: Option<&str>, expected: &str) -> Result<(), Error> {
    let key = bearer_key(header);
    if expected.is_empty() || !constant_time_eq(key.as_bytes(), expected.as_bytes()) {
        return Err(Error::Unauthorized);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_key_passes() {
        assert_eq!(check(Some("Bearer k3y"), "k3y"), Ok(()));
        assert_eq!(check(Some("bearer  k3y "), "k3y"), Ok(()));
        for bad in [
            None,
            Some(""),
            Some("k3y"),
            Some("Basic k3y"),
            Some("Bearer k3"),
            Some("Bearer k3yy"),
            Some("Bearer "),
        ] {
            assert_eq!(check(bad, "k3y"), Err(Error::Unauthorized), "{bad:?}");
        }
        assert_eq!(check(Some("Bearer "), ""), Err(Error::Unauthorized));
    }
}
