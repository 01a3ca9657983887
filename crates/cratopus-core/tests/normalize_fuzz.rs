//! Property tests of path normalization over arbitrary paths: it never panics, normalizing
//! twice changes nothing, and a normalized path has no dot segment, no empty segment and no
//! encoded unreserved character. (256 cases per property, as proptest's default, so that it
//! runs in every `cargo test`; `PROPTEST_CASES` raises it for a longer fuzzing run.)

use cratopus_config::{EscapedSlashes, PathNormalization};
use cratopus_core::normalize::normalize;
use proptest::prelude::*;

/// Paths made of the pieces that matter (slashes, dots, escapes of every kind and case,
/// backslashes, controls, UTF-8) more often than uniform strings would be.
fn path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_string()),
        Just("//".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e".to_string()),
        Just("%2E".to_string()),
        Just("%2f".to_string()),
        Just("%5C".to_string()),
        Just("\\".to_string()),
        Just("%".to_string()),
        Just("é".to_string()),
        "%[0-9a-fA-F]{2}",
        "[a-zA-Z0-9._~-]{1,4}",
        "[!$&'()*+,;=:@]{1,2}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| format!("/{}", v.concat()))
}

fn all_rules() -> impl Strategy<Value = PathNormalization> {
    (
        any::<bool>(),
        any::<bool>(),
        prop_oneof![
            Just(EscapedSlashes::Reject),
            Just(EscapedSlashes::Keep),
            Just(EscapedSlashes::UnescapeAndForward),
            Just(EscapedSlashes::UnescapeAndRedirect),
        ],
    )
        .prop_map(|(normalize, merge_slashes, escaped_slashes)| PathNormalization {
            normalize,
            merge_slashes,
            escaped_slashes,
        })
}

proptest! {
    #[test]
    fn normalizing_twice_changes_nothing(p in path(), rules in all_rules()) {
        if let Ok(once) = normalize(&p, &rules) {
            let twice = normalize(&once.path, &rules).expect("a normalized path normalizes");
            prop_assert_eq!(&twice.path, &once.path);
            prop_assert!(!twice.redirect);
        }
    }

    #[test]
    fn normalized_paths_are_clean(p in path()) {
        let Ok(n) = normalize(&p, &PathNormalization::default()) else {
            return Ok(());
        };
        let n = n.path;
        prop_assert!(n.starts_with('/'), "{n}");
        let segments: Vec<&str> = n[1..].split('/').collect();
        let inner = &segments[..segments.len() - 1];
        prop_assert!(!segments.iter().any(|s| *s == "." || *s == ".."), "dot segment in {n}");
        prop_assert!(!inner.iter().any(|s| s.is_empty()), "empty segment in {n}");
        prop_assert!(!n.contains('\\'), "backslash in {n}");
        let bytes = n.as_bytes();
        for (i, _) in n.match_indices('%') {
            let escape = bytes.get(i + 1..i + 3).expect("a whole escape");
            let value = u8::from_str_radix(std::str::from_utf8(escape).expect("hex"), 16).expect("hex");
            prop_assert!(
                !(value.is_ascii_alphanumeric() || b"-._~".contains(&value)),
                "encoded unreserved character in {n}"
            );
            prop_assert!(escape.iter().all(|b| !b.is_ascii_lowercase()), "lower-case escape in {n}");
            prop_assert!(value != b'/' && value != b'\\', "escaped slash in {n}");
        }
    }

    #[test]
    fn any_string_is_answered_without_panicking(s in ".*", rules in all_rules()) {
        let _ = normalize(&s, &rules);
        let _ = normalize(&format!("/{s}"), &rules);
    }
}
