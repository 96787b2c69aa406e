//! `serve --config FILE`, `SWITCHBOARD_*` variables and `--print-config`
//! (docs/PROTOCOL.md 5.5, Configuration).
//!
//! clap does the layering. Every `serve` flag gets a variable named after
//! it, and clap records where each value came from. The file's settings
//! become arguments in front of the flags the command line and the
//! variables set, leaving out those the higher layers set, and the whole is
//! parsed again: a value from the file is checked, and a conflict with
//! another setting refused, exactly as if it were a flag.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use anyhow::anyhow;
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};
use switchboard::error::describe_io;
use toml::{Spanned, Value};

use super::args::ServeArgs;

/// Flags that are no setting, so neither a key of the file nor a variable.
const NOT_SETTINGS: [&str; 3] = ["config", "print-config", "help"];

/// Gives every flag of `serve` without a variable of its own the variable
/// `SWITCHBOARD_` and the flag's name in capitals (`--max-connections`:
/// `SWITCHBOARD_MAX_CONNECTIONS`).
pub fn with_variables(serve: Command) -> Command {
    serve.mut_args(|arg| {
        let name = match (arg.get_long(), arg.get_env()) {
            (Some(long), None) if !NOT_SETTINGS.contains(&long) => variable(long),
            _ => return arg,
        };
        arg.env(name)
    })
}

/// The variable of the flag `--long`.
fn variable(long: &str) -> String {
    format!("SWITCHBOARD_{}", long.replace('-', "_").to_uppercase())
}

/// `serve` as clap parses it: its flags and their variables.
fn serve_command() -> Command {
    let mut command = with_variables(ServeArgs::augment_args(Command::new("serve")));
    command.build();
    command
}

/// The settings in effect: the built-in defaults, under the file
/// `--config` names (if any), under the variables, under the command line,
/// which `matches` holds as clap parsed it.
///
/// # Errors
/// A file that cannot be read or parsed, an unknown key, a bad value, or
/// settings that conflict.
pub fn load(matches: &ArgMatches) -> anyhow::Result<ServeArgs> {
    let given = ServeArgs::from_arg_matches(matches)?;
    let Some(path) = &given.config else {
        return Ok(given);
    };
    let command = serve_command();
    let mut argv: Vec<OsString> = vec!["serve".into()];
    let text = read(path)?;
    for (key, value) in parse(path, &text)? {
        let line = format!(
            "{}: line {}",
            path.display(),
            line_number(&text, value.span().start)
        );
        let arg = command
            .get_arguments()
            .find(|arg| {
                arg.get_long() == Some(key.as_str()) && !NOT_SETTINGS.contains(&key.as_str())
            })
            .ok_or_else(|| anyhow!("{line}: unknown key `{key}`"))?;
        let arguments = arguments(arg, &key, value.get_ref())
            .and_then(|arguments| check(&command, &arguments).map(|()| arguments))
            .map_err(|reason| anyhow!("{line}: {key}: {reason}"))?;
        if !set_above(matches, arg) && !is_default(arg, value.get_ref()) {
            argv.extend(arguments);
        }
    }
    argv.extend(given_arguments(&command, matches));
    let effective = command
        .try_get_matches_from(argv)
        .map_err(|err| anyhow!("{}: {}", path.display(), reason(&err)))?;
    Ok(ServeArgs::from_arg_matches(&effective)?)
}

/// The settings as TOML that `--config` reads back.
///
/// # Errors
/// A value TOML cannot hold (a number past 2^63).
pub fn to_toml(args: &ServeArgs) -> anyhow::Result<String> {
    Ok(toml::to_string(&table(args)?)?)
}

/// The settings as a TOML table, key by key.
///
/// # Errors
/// A value TOML cannot hold.
pub fn table(args: &ServeArgs) -> anyhow::Result<toml::Table> {
    Ok(toml::Table::try_from(args)?)
}

/// The text of the file at `path`.
fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|err| {
        anyhow!(
            "cannot read config {}: {}",
            path.display(),
            describe_io(&err)
        )
    })
}

/// The keys of `text`, the file at `path`, each with its value and where it is.
fn parse(path: &Path, text: &str) -> anyhow::Result<BTreeMap<String, Spanned<Value>>> {
    toml::from_str(text).map_err(|err| {
        let at = err
            .span()
            .map(|span| format!(" line {}:", line_number(text, span.start)))
            .unwrap_or_default();
        let message = err.message().trim_end();
        anyhow!("{}:{at} {message}", path.display())
    })
}

/// The line (from 1) of byte `offset` in `text`.
fn line_number(text: &str, offset: usize) -> usize {
    let before = text.get(..offset).unwrap_or(text);
    before.matches('\n').count() + 1
}

/// The arguments that say what the file's `key = value` says: `--key=VALUE`
/// (once per element of an array), a flag for `true`, nothing for `false`.
///
/// # Errors
/// A value of a kind the flag cannot take.
fn arguments(arg: &Arg, key: &str, value: &Value) -> Result<Vec<OsString>, String> {
    if !arg.get_action().takes_values() {
        return match value {
            Value::Boolean(true) => Ok(vec![format!("--{key}").into()]),
            Value::Boolean(false) => Ok(Vec::new()),
            other => Err(format!("give true or false, not {}", other.type_str())),
        };
    }
    let values = match value {
        Value::Array(values) => values.iter().collect(),
        value => vec![value],
    };
    values
        .into_iter()
        .map(|value| Ok(format!("--{key}={}", scalar(value)?).into()))
        .collect()
}

/// A value as the text of a flag.
fn scalar(value: &Value) -> Result<String, String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Integer(number) => Ok(number.to_string()),
        Value::Float(number) => Ok(number.to_string()),
        other => Err(format!(
            "give a string or a number, not {}",
            other.type_str()
        )),
    }
}

/// Whether clap takes `arguments` as values of their flag; other complaints
/// (a flag that needs another) are left to the parse of everything.
fn check(command: &Command, arguments: &[OsString]) -> Result<(), String> {
    let argv = std::iter::once(OsString::from("serve")).chain(arguments.iter().cloned());
    match command.clone().try_get_matches_from(argv) {
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::InvalidValue | ErrorKind::ValueValidation
            ) =>
        {
            Err(reason(&err))
        }
        _ => Ok(()),
    }
}

/// Whether the command line or a variable set `arg`, which the file then
/// does not.
fn set_above(matches: &ArgMatches, arg: &Arg) -> bool {
    matches!(
        matches.value_source(arg.get_id().as_str()),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// Whether `value` is `arg`'s built-in default. Such a key is left out, as
/// clap leaves defaults out of conflicts: the `data` that `--print-config`
/// prints beside `memory = true` is read back without a conflict.
fn is_default(arg: &Arg, value: &Value) -> bool {
    match (arg.get_default_values(), scalar(value)) {
        ([default], Ok(text)) => default == text.as_str(),
        _ => false,
    }
}

/// The arguments that give again what the command line and the variables
/// set, as `--flag=VALUE` (a flag alone when it takes no value).
fn given_arguments(command: &Command, matches: &ArgMatches) -> Vec<OsString> {
    let mut argv = Vec::new();
    for arg in command
        .get_arguments()
        .filter(|arg| set_above(matches, arg))
    {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        if !arg.get_action().takes_values() {
            if matches.get_flag(id) {
                argv.push(format!("--{long}").into());
            }
            continue;
        }
        for value in matches.get_raw(id).into_iter().flatten() {
            let mut argument = OsString::from(format!("--{long}="));
            argument.push(value);
            argv.push(argument);
        }
    }
    argv
}

/// The first line of clap's message, without its `error: `.
fn reason(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_has_a_variable_named_after_it() {
        let command = serve_command();
        let env = |id: &str| {
            command
                .get_arguments()
                .find(|arg| arg.get_id().as_str() == id)
                .and_then(|arg| arg.get_env().map(|env| env.to_string_lossy().into_owned()))
        };
        assert_eq!(
            env("max_connections").as_deref(),
            Some("SWITCHBOARD_MAX_CONNECTIONS")
        );
        assert_eq!(env("token").as_deref(), Some("SWITCHBOARD_TOKEN"));
        assert_eq!(env("config").as_deref(), Some("SWITCHBOARD_CONFIG"));
        assert_eq!(env("print_config"), None);
    }

    #[test]
    fn file_values_become_flags() {
        let command = serve_command();
        let arg = |id: &str| {
            command
                .get_arguments()
                .find(|arg| arg.get_id().as_str() == id)
                .expect("a serve flag")
        };
        let as_flags = |id: &str, key: &str, value: Value| {
            arguments(arg(id), key, &value).map(|argv| {
                argv.into_iter()
                    .map(|arg| arg.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            as_flags("rate", "rate", Value::Float(2.5)),
            Ok(vec!["--rate=2.5".into()])
        );
        assert_eq!(
            as_flags("memory", "memory", Value::Boolean(true)),
            Ok(vec!["--memory".into()])
        );
        assert_eq!(
            as_flags("memory", "memory", Value::Boolean(false)),
            Ok(vec![])
        );
        assert!(as_flags("memory", "memory", Value::Integer(1)).is_err());
        assert!(check(&command, &["--max-line=lots".into()]).is_err());
        assert!(check(&command, &["--tls-cert=a.pem".into()]).is_ok());
    }

    #[test]
    fn lines_count_from_one() {
        assert_eq!(line_number("a = 1\nb = 2\n", 0), 1);
        assert_eq!(line_number("a = 1\nb = 2\n", 6), 2);
    }
}
