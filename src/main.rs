//! The `switchboard` binary: parse arguments, set up logging, run the command,
//! print any failure as one `error: …` line and exit non-zero.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: tokio allocates every connection's task
/// and I/O registration cache-line aligned, and glibc serves aligned requests by
/// splitting chunks, leaving holes that cost ~40 % more memory per idle
/// connection (measured with `bench idle`, see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for a command line that does not parse.
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    disable_huge_pages();
    let (cli, matches) = match cli::parse() {
        Ok(parsed) => parsed,
        Err(err) => return usage_error(&err),
    };
    init_logging(cli.verbose);
    // The load generator runs on one thread, so its cost is one visible core.
    let runtime = if matches!(cli.command, cli::args::Command::Bench(_)) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Runtime::new()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(cli::run(cli, &matches));
    // A blocked stdin read must not keep the process alive once the work is done.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Keeps this process on 4 KiB pages. mimalloc asks for transparent huge
/// pages, so the heap grows in 2 MiB steps that idle connections only partly
/// use: measured with `bench idle` on 10,000 idle WebSockets, 2,590 bytes a
/// connection with them, 2,210 without.
fn disable_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE only sets a flag on this process; the
    // unused arguments are zero as prctl(2) asks. Failing (an old kernel) is
    // harmless: the process then uses huge pages as before.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

/// Reports a clap error: help and version go to stdout in full, and a real
/// mistake is one `error: …` line on stderr.
fn usage_error(err: &clap::Error) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            ExitCode::from(USAGE_ERROR)
        }
        _ => {
            eprintln!("{} (see --help)", one_line(&err.to_string()));
            ExitCode::from(USAGE_ERROR)
        }
    }
}

/// clap's error as one line: its first line, and when that ends in `:` (as
/// in "the following required arguments were not provided:") the indented
/// lines it introduces, so the line names what is missing.
fn one_line(rendered: &str) -> String {
    let mut lines = rendered.lines();
    let first = lines.next().unwrap_or("error: invalid arguments");
    if !first.ends_with(':') {
        return first.to_string();
    }
    let listed: Vec<&str> = lines
        .take_while(|line| line.starts_with("  "))
        .map(str::trim)
        .collect();
    format!("{first} {}", listed.join(", "))
}

/// Logs to stderr at info level, more with `-v`, or as `RUST_LOG` says.
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
