//! The directory of the config file being read, for keys that name files
//! relative to it (`codec = "js:codecs/em300-th.js"`). Sections are
//! parsed from the merged table alone, so the reader sets it around the
//! parse; it is per thread, as the parse is.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

thread_local! {
    static DIR: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// Runs `f` with `dir` as the config's directory.
pub fn with<R>(dir: &Path, f: impl FnOnce() -> R) -> R {
    let before = DIR.with(|d| d.replace(Some(dir.to_path_buf())));
    let out = f();
    DIR.with(|d| *d.borrow_mut() = before);
    out
}

/// The directory of the config being parsed on this thread, if any.
pub fn get() -> Option<PathBuf> {
    DIR.with(|d| d.borrow().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_only_inside_and_nested_calls_restore_the_outer_one() {
        assert_eq!(get(), None);
        with(Path::new("/etc/edge-gateway"), || {
            assert_eq!(get().as_deref(), Some(Path::new("/etc/edge-gateway")));
            with(Path::new("/tmp"), || {
                assert_eq!(get().as_deref(), Some(Path::new("/tmp")));
            });
            assert_eq!(get().as_deref(), Some(Path::new("/etc/edge-gateway")));
        });
        assert_eq!(get(), None);
    }
}
