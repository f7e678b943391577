//! Characters that must never pass for text: one table for the whole service.
//!
//! The webhook envelope refuses them in ids and types, the read and audit APIs refuse them in
//! ids, and the CLI escapes them in text output. They render as nothing (zero-width spaces and
//! joiners, fillers, variation selectors, tags) or reorder what follows (bidirectional
//! embeddings, overrides and isolates), so two different ids could look the same to a person
//! reading a log, a report or a terminal.

/// Unicode format characters (general category Cf, Unicode 15.1; U+180E, Cf before Unicode 6.3,
/// too) and the other characters that render as nothing: the combining grapheme joiner, Hangul
/// fillers, Khmer inherent vowels, variation selectors and the whole tag block. Rust's standard
/// library has no general-category lookup, and the set changes rarely.
const INVISIBLE: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),   // soft hyphen
    (0x034F, 0x034F),   // combining grapheme joiner
    (0x0600, 0x0605),   // Arabic number signs
    (0x061C, 0x061C),   // Arabic letter mark
    (0x06DD, 0x06DD),   // Arabic end of ayah
    (0x070F, 0x070F),   // Syriac abbreviation mark
    (0x0890, 0x0891),   // Arabic pound and piastre marks above
    (0x08E2, 0x08E2),   // Arabic disputed end of ayah
    (0x115F, 0x1160),   // Hangul choseong and jungseong fillers
    (0x17B4, 0x17B5),   // Khmer inherent vowels
    (0x180B, 0x180F),   // Mongolian variation selectors and vowel separator
    (0x200B, 0x200F),   // zero-width space, joiners, direction marks
    (0x202A, 0x202E),   // bidirectional embeddings and overrides
    (0x2060, 0x2064),   // word joiner, invisible operators
    (0x2066, 0x206F),   // bidirectional isolates, deprecated format characters
    (0x3164, 0x3164),   // Hangul filler
    (0xFE00, 0xFE0F),   // variation selectors
    (0xFEFF, 0xFEFF),   // zero-width no-break space (BOM)
    (0xFFA0, 0xFFA0),   // halfwidth Hangul filler
    (0xFFF9, 0xFFFB),   // interlinear annotation
    (0x110BD, 0x110BD), // Kaithi number sign
    (0x110CD, 0x110CD), // Kaithi number sign above
    (0x13430, 0x1343F), // Egyptian hieroglyph format controls
    (0x1BCA0, 0x1BCA3), // shorthand format controls
    (0x1D173, 0x1D17A), // musical symbol format controls
    (0xE0000, 0xE0FFF), // tags and variation selectors supplement
];

/// Whether `c` is invisible or reorders text (see [`INVISIBLE`]). Controls are not included:
/// callers check `char::is_control` themselves, since some of them allow a newline.
pub fn is_invisible(c: char) -> bool {
    let c = c as u32;
    INVISIBLE.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_width_bidi_and_tag_characters_are_invisible_and_letters_are_not() {
        for c in [
            '\u{200B}',
            '\u{200D}',
            '\u{202E}',
            '\u{2066}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{180E}',
            '\u{E0041}',
            '\u{FE0F}',
            '\u{3164}',
        ] {
            assert!(is_invisible(c), "U+{:04X}", c as u32);
        }
        for c in ['a', 'é', '_', '.', ' ', '中', '\u{1F600}', '\n'] {
            assert!(!is_invisible(c), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn the_table_is_sorted_and_its_ranges_do_not_overlap() {
        for pair in INVISIBLE.windows(2) {
            assert!(pair[0].0 <= pair[0].1 && pair[0].1 < pair[1].0, "{pair:?}");
        }
    }
}
