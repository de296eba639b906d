//! A codec's own texts (what it threw, its `errors` and `warnings`, the
//! names in its result) as a log line or a command's result shows them:
//! bounded, whatever the codec made.

/// Bytes of a codec's own text (what it threw, its `errors` together)
/// kept for a log line or a refused command's result.
pub const MAX_TEXT: usize = 512;

/// `text` cut to [`MAX_TEXT`] bytes (at a character's end), its size said:
/// a codec's message was written whole into each log line, and into a
/// refused command's result upstream, a megabyte if it threw one.
pub fn clipped(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_TEXT {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}… ({} bytes)", &text[..end], text.len()))
}

/// Bytes of a value's name from a codec's result kept where the name is
/// shown or remembered (a log line, the text fields seen): a metric name
/// is at most 64, and a key can be as long as the heap allows.
pub const MAX_KEY: usize = 80;

/// `key` cut to [`MAX_KEY`] bytes (at a character's end), with `…` when cut.
pub fn clipped_key(key: &str) -> std::borrow::Cow<'_, str> {
    if key.len() <= MAX_KEY {
        return std::borrow::Cow::Borrowed(key);
    }
    let mut end = MAX_KEY;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", &key[..end]))
}

/// A codec's list of texts (`errors`, `warnings`) for a log line: its
/// first ones up to [`MAX_TEXT`] bytes, each clipped, then how many more.
pub fn clipped_list(items: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut used = 0;
    for item in items {
        if used >= MAX_TEXT {
            break;
        }
        let shown = clipped(item).into_owned();
        used += shown.len();
        out.push(shown);
    }
    if out.len() < items.len() {
        out.push(format!("and {} more", items.len() - out.len()));
    }
    out
}
