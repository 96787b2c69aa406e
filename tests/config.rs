//! `serve --config FILE`, `SWITCHBOARD_*` variables and `--print-config`
//! (docs/PROTOCOL.md 5.5, Configuration): the real binary, real files,
//! clients on loopback.

use std::io::Read;
use std::path::Path;
use std::process::Output;

use crate::util::{
    LineClient, Server, assert_one_line_error, run, scratch_dir, stdout, switchboard,
};

/// Writes `text` to `dir/name` and returns the path.
fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the file");
    path.display().to_string()
}

/// `switchboard serve ARGS --print-config` with the variables `env`.
fn print_config(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = switchboard();
    command.arg("serve").args(args).arg("--print-config");
    command.envs(env.iter().copied());
    run(command, b"")
}

/// The value of `key` in printed TOML, as printed.
fn printed<'a>(toml: &'a str, key: &str) -> Option<&'a str> {
    toml.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(" = "))
}

#[test]
fn a_file_sets_the_address_and_a_limit() {
    let dir = scratch_dir("config-file");
    let file = write(
        &dir,
        "switchboard.toml",
        "listen = \"127.0.0.1:0\"\nmax-connections = 1\nmemory = true\n",
    );
    let mut command = switchboard();
    command.args(["serve", "--config", &file]);
    let server = Server::spawn(command);
    assert!(server.addr.starts_with("127.0.0.1:"), "{}", server.addr);
    let _first = LineClient::greeted(&server);
    let mut refusal = String::new();
    server.connect().read_to_string(&mut refusal).unwrap();
    assert_eq!(refusal, "! server full (1 connections): try later\n");
}

#[test]
fn variables_override_the_file_and_flags_override_both() {
    let dir = scratch_dir("config-layers");
    let file = write(&dir, "layers.toml", "max-line = 100\nrate = 5\n");
    let from_file = print_config(&["--config", &file], &[]);
    assert!(from_file.status.success(), "{from_file:?}");
    let text = stdout(&from_file);
    assert_eq!(printed(&text, "max-line"), Some("100"), "{text}");
    assert_eq!(printed(&text, "rate"), Some("5.0"), "{text}");

    let variable = [("SWITCHBOARD_MAX_LINE", "300")];
    let text = stdout(&print_config(&["--config", &file], &variable));
    assert_eq!(printed(&text, "max-line"), Some("300"), "{text}");
    assert_eq!(printed(&text, "rate"), Some("5.0"), "{text}");

    let flag = ["--config", file.as_str(), "--max-line", "200"];
    let text = stdout(&print_config(&flag, &variable));
    assert_eq!(printed(&text, "max-line"), Some("200"), "{text}");

    let file_by_variable = [("SWITCHBOARD_CONFIG", file.as_str())];
    let text = stdout(&print_config(&[], &file_by_variable));
    assert_eq!(printed(&text, "max-line"), Some("100"), "{text}");
}

#[test]
fn print_config_reads_back_unchanged_and_binds_nothing() {
    let busy = Server::start(&["serve", "--memory"]);
    let taken = busy.local();
    let flags = [
        "--listen",
        taken.as_str(),
        "--memory",
        "--rate",
        "2.5",
        "--keep-days",
        "7.5",
        "--sync",
        "full",
        "--token",
        "s3cret",
        "--tls-self-signed",
    ];
    let first = print_config(&flags, &[]);
    assert!(first.status.success(), "{first:?}");
    let first = stdout(&first);
    assert_eq!(printed(&first, "keep-days"), Some("7.5"), "{first}");
    assert_eq!(printed(&first, "sync"), Some("\"full\""), "{first}");
    assert_eq!(printed(&first, "memory"), Some("true"), "{first}");

    let dir = scratch_dir("config-round-trip");
    let file = write(&dir, "printed.toml", &first);
    let second = print_config(&["--config", &file], &[]);
    assert!(second.status.success(), "{second:?}");
    assert_eq!(stdout(&second), first);
}

#[test]
fn bad_files_are_one_line_errors_naming_the_file_and_the_key() {
    let dir = scratch_dir("config-errors");
    let unknown = write(&dir, "unknown.toml", "rate = 5\ncolour = \"blue\"\n");
    let bad_value = write(&dir, "bad.toml", "max-connections = \"lots\"\n");
    let bad_kind = write(&dir, "kind.toml", "memory = 1\n");
    let not_toml = write(&dir, "broken.toml", "rate = \n");
    let memory = write(&dir, "memory.toml", "memory = true\n");
    let missing = dir.join("missing.toml").display().to_string();
    let cases = [
        (
            &unknown,
            vec![],
            format!("{unknown}: line 2: unknown key `colour`"),
        ),
        (
            &bad_value,
            vec![],
            format!("{bad_value}: line 1: max-connections: invalid value 'lots'"),
        ),
        (
            &bad_kind,
            vec![],
            format!("{bad_kind}: line 1: memory: give true or false"),
        ),
        (&not_toml, vec![], format!("{not_toml}: line 1:")),
        (
            &missing,
            vec![],
            format!("cannot read config {missing}: no such file or directory"),
        ),
        (
            &memory,
            vec!["--data", "elsewhere"],
            "cannot be used with".into(),
        ),
    ];
    for (file, extra, expected) in cases {
        let mut args = vec!["serve", "--config", file.as_str()];
        args.extend(extra);
        let mut command = switchboard();
        command.args(&args);
        assert_one_line_error(&run(command, b""), &expected);
    }
}
