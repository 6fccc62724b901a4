//! Short one-line excerpts of model output and response bodies, for reasons and reports.

/// `text` with runs of whitespace folded to one space, cut to `limit` characters (with `…`).
pub fn excerpt(text: &str, limit: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(limit) {
        Some((index, _)) => format!("{}…", &flat[..index]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_whitespace_and_cuts_on_characters() {
        assert_eq!(excerpt("a\n  b\tc", 10), "a b c");
        assert_eq!(excerpt("抑制する通知する", 4), "抑制する…");
        assert_eq!(excerpt("", 3), "");
    }
}
