//! Short one-line excerpts of model output and response bodies, for reasons and reports, and
//! texts cut to a length and made printable: what a provider or a model sends is as long as it
//! likes, and may hold the escape sequences a terminal acts on (a title, a cleared screen, a
//! bell, a line that looks like a verdict).

use std::borrow::Cow;

/// What a control character a terminal would act on is shown as.
const REPLACEMENT: char = '\u{fffd}';

/// `text` with runs of whitespace folded to one space, cut to `limit` characters (with `…`),
/// other control characters shown as `�`.
///
/// Reads only as far as it keeps: an answer of megabytes of short words costs `limit`
/// characters, not a list of every word.
pub fn excerpt(text: &str, limit: usize) -> String {
    let mut out = String::new();
    let mut kept = 0;
    for word in text.split_whitespace() {
        // A space before every word but the first, then the word.
        if kept > 0 {
            if kept == limit {
                out.push('…');
                return out;
            }
            out.push(' ');
            kept += 1;
        }
        // Most words are kept whole (an excerpt is made for every wrong answer of a run).
        let chars = word.chars().count();
        if kept + chars <= limit && !word.chars().any(char::is_control) {
            out.push_str(word);
            kept += chars;
            continue;
        }
        for c in word.chars() {
            if kept == limit {
                // More is left: this character, and maybe more words.
                out.push('…');
                return out;
            }
            out.push(if c.is_control() { REPLACEMENT } else { c });
            kept += 1;
        }
    }
    out
}

/// `text` on one line, as a terminal shows it without acting on it: line breaks and tabs as a
/// space, every other control character (escape, bell, C1) as `�`.
pub fn one_line(text: &str) -> Cow<'_, str> {
    printable(text, false)
}

/// [`one_line`] of an owned text: the same `String`, not a copy, when it is printable already
/// (a grade's reason nearly always is).
pub fn into_one_line(text: String) -> String {
    match text.chars().any(char::is_control) {
        true => one_line(&text).into_owned(),
        false => text,
    }
}

/// [`one_line`], but line breaks and tabs kept: for messages that are lists.
pub fn printable_lines(text: &str) -> Cow<'_, str> {
    printable(text, true)
}

fn printable(text: &str, lines: bool) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| match c {
            '\n' | '\t' if lines => c,
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() => REPLACEMENT,
            c => c,
        })
        .collect()
}

/// `text` cut to `limit` characters, with `…` when something was cut; whitespace kept.
pub fn cut(mut text: String, limit: usize) -> String {
    if let Some((index, _)) = text.char_indices().nth(limit) {
        text.truncate(index);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_whitespace_and_cuts_on_characters() {
        assert_eq!(excerpt("a\n  b\tc", 10), "a b c");
        assert_eq!(excerpt("抑制する通知する", 4), "抑制する…");
        assert_eq!(excerpt("", 3), "");
        // Exactly the limit: nothing cut; one more character or word: cut.
        assert_eq!(excerpt("  ab cd  ", 5), "ab cd");
        assert_eq!(excerpt("ab cd e", 5), "ab cd…");
        assert_eq!(excerpt("ab cde", 5), "ab cd…");
        assert_eq!(excerpt("ab cd", 2), "ab…");
        assert_eq!(excerpt("ab", 0), "…");
        assert_eq!(excerpt(&"a ".repeat(1 << 20), 7), "a a a a…");
    }

    #[test]
    fn control_characters_are_shown_not_acted_on() {
        let hostile = "a\u{1b}]0;title\u{7}\u{1b}[2J\r\nb\tc\u{9b}d";
        assert_eq!(one_line(hostile), "a\u{fffd}]0;title\u{fffd}\u{fffd}[2J  b c\u{fffd}d");
        assert_eq!(
            printable_lines(hostile),
            "a\u{fffd}]0;title\u{fffd}\u{fffd}[2J \nb\tc\u{fffd}d"
        );
        assert_eq!(
            excerpt(hostile, 100),
            "a\u{fffd}]0;title\u{fffd}\u{fffd}[2J b c\u{fffd}d"
        );
        assert!(matches!(one_line("plain, 抑制"), Cow::Borrowed(_)));
        assert_eq!(into_one_line(hostile.to_string()), one_line(hostile));
        let plain = String::from("plain, 抑制");
        let at = plain.as_ptr();
        let kept = into_one_line(plain);
        assert_eq!(kept.as_ptr(), at, "not copied");
    }

    #[test]
    fn cuts_on_characters_and_keeps_whitespace() {
        assert_eq!(cut("a\n b".into(), 10), "a\n b");
        assert_eq!(cut("抑制する通知する".into(), 4), "抑制する…");
        assert_eq!(cut("abc".into(), 3), "abc");
        assert_eq!(cut(String::new(), 0), "");
    }
}
