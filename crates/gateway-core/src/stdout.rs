//! What the tool subcommands print. A reader that goes away (`decode … |
//! head -1`) ends the process quietly, as it ends `cat`, with the status a
//! shell gives a process SIGPIPE ended (141); `println!` panicked there
//! ("failed printing to stdout: Broken pipe", status 101). The gateway
//! keeps SIGPIPE ignored (its sockets must see EPIPE as an error), so this
//! is done here rather than by restoring the signal.

use std::fmt;
use std::io::{self, Write};

/// The status of a process that a closed pipe ended.
pub const BROKEN_PIPE_STATUS: i32 = 141;

/// Writes `args` to stdout as it is.
pub fn text(args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    finish(out.write_fmt(args).and_then(|()| out.flush()));
}

/// Writes `args` and a newline to stdout.
pub fn line(args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    finish(
        out.write_fmt(args)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush()),
    );
}

fn finish(written: io::Result<()>) {
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(BROKEN_PIPE_STATUS),
        // A full disk under a redirect: said once, the tool goes on.
        Err(e) => eprintln!("cannot write to standard output: {e}"),
    }
}

/// `println!` for tools: see the module.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::stdout::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::stdout::line(format_args!($($arg)*))
    };
}

/// `print!` for tools: see the module.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout::text(format_args!($($arg)*))
    };
}
