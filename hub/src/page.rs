//! Lists travel in pages so that a reply always fits in one NATS message, whatever the fleet's
//! size: at most a page of items after the caller's `after` key, and the key to continue from.

/// Items per page when the caller does not say (a cluster is a few hundred bytes).
pub const DEFAULT_LIMIT: usize = 500;
/// The most a caller may ask for at once.
pub const MAX_LIMIT: usize = 1000;

/// The page size for a requested `limit` (0 or negative: the default).
pub fn limit(requested: i32) -> usize {
    match usize::try_from(requested) {
        Ok(0) | Err(_) => DEFAULT_LIMIT,
        Ok(n) => n.min(MAX_LIMIT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(limit(0), DEFAULT_LIMIT);
        assert_eq!(limit(-1), DEFAULT_LIMIT);
        assert_eq!(limit(7), 7);
        assert_eq!(limit(5000), MAX_LIMIT);
    }
}
