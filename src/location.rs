//! Where in a file a problem is: 1-based line and column from a byte offset or a parser's error,
//! formatted the way every error message of promptgate names them.

/// Format a 1-based line and column for a byte offset into `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// The location string for a TOML error (" at line L, column C"), from its span in `text`.
pub fn toml_location(text: &str, err: &toml::de::Error) -> String {
    err.span()
        .map(|span| {
            let (line, column) = line_column(text, span.start);
            format!(" at line {line}, column {column}")
        })
        .unwrap_or_default()
}

/// The location string for a serde_json error (which already knows line and column).
pub fn json_location(err: &serde_json::Error) -> String {
    if err.line() == 0 {
        String::new()
    } else {
        format!(" at line {}, column {}", err.line(), err.column())
    }
}

/// The message of a serde_json error without its trailing " at line L column C".
pub fn json_message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(index) => text[..index].to_string(),
        None => text,
    }
}
