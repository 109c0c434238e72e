//! Lists travel in pages so that a reply always fits in one NATS message, whatever the fleet's
//! size: items sorted by key, at most `limit` after the key `after`, and the key to continue from.

/// Items per page when the caller does not say (a cluster is a few hundred bytes).
pub const DEFAULT_LIMIT: usize = 500;
/// The most a caller may ask for at once.
pub const MAX_LIMIT: usize = 1000;

/// One page of `items` (sorted by `key`): those after `after`, at most `limit`, and the key of the
/// last one when more follow.
pub fn page<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    after: &str,
    limit: i32,
) -> (Vec<T>, String) {
    let limit = match usize::try_from(limit) {
        Ok(0) | Err(_) => DEFAULT_LIMIT,
        Ok(n) => n.min(MAX_LIMIT),
    };
    let mut rest: Vec<T> = items
        .into_iter()
        .filter(|i| after.is_empty() || key(i).as_str() > after)
        .collect();
    let more = rest.len() > limit;
    rest.truncate(limit);
    let next = if more {
        rest.last().map(&key).unwrap_or_default()
    } else {
        String::new()
    };
    (rest, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_everything_once() {
        let items: Vec<String> = (0..1234).map(|i| format!("c{i:05}")).collect();
        let mut seen = Vec::new();
        let mut after = String::new();
        loop {
            let (page, next) = page(items.clone(), |s| s.clone(), &after, 0);
            assert!(page.len() <= DEFAULT_LIMIT);
            seen.extend(page);
            if next.is_empty() {
                break;
            }
            after = next;
        }
        assert_eq!(seen, items);
        assert_eq!(
            page(items.clone(), |s| s.clone(), "", 5000).0.len(),
            MAX_LIMIT
        );
        assert_eq!(page(items, |s| s.clone(), "", -1).0.len(), DEFAULT_LIMIT);
    }
}
