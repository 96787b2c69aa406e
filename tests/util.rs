//! Helpers shared by the integration tests: start real processes, read the
//! `listening on` line, capture stderr, run clients with a deadline.
//!
//! Every wait here is bounded and waits for an event (a line, an exit), never
//! for a fixed time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to print its `listening on` line.
const STARTUP: Duration = Duration::from_secs(30);

/// How long a client command may run before the test fails.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(30);

/// How long to wait for an expected log line.
const LOG_WAIT: Duration = Duration::from_secs(10);

/// The switchboard binary under test.
pub fn switchboard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
}

/// A file under the repository root.
pub fn repo_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A command for a third-party program the tests need, failing loudly (with
/// the fix) when it is not installed.
pub fn tool(program: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        found,
        "{program} is not installed: run scripts/setup.sh to install the test tools"
    );
    Command::new(program)
}

/// Lines a child wrote to stderr, shared with the thread that reads them.
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
}

/// A server process, killed when dropped.
pub struct Server {
    child: Child,
    /// The address from the `listening on ADDR:PORT` line, as printed.
    pub addr: String,
    /// The port from that line.
    pub port: u16,
    log: Arc<Log>,
}

impl Server {
    /// Starts `switchboard ARGS --port 0` and waits for its `listening on`
    /// line. A chat hub (`serve`) that names no `--data` nor `--memory` keeps
    /// its history in a fresh directory of its own, so tests running side by
    /// side never share one.
    pub fn start(args: &[&str]) -> Self {
        let mut command = switchboard();
        command.args(args).args(["--port", "0"]);
        let chooses_store = args.iter().any(|arg| {
            *arg == "--memory" || arg.starts_with("--data") || arg.starts_with("--redis")
        });
        if args.first() == Some(&"serve") && !chooses_store {
            command.arg("--data").arg(fresh_data_dir());
        }
        Self::spawn(command)
    }

    /// Starts any server command that prints `listening on ADDR:PORT` first.
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("server command starts");
        let log = Arc::new(Log::default());
        collect_lines(child.stderr.take().expect("stderr piped"), Arc::clone(&log));
        let stdout = child.stdout.take().expect("stdout piped");
        let (first_line, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = first_line.send(lines.next());
            lines.for_each(drop);
        });
        let line = match rx.recv_timeout(STARTUP) {
            Ok(Some(Ok(line))) => line,
            other => {
                let _ = child.kill();
                let stderr = log.lines.lock().unwrap().join("\n");
                panic!("server printed no listening line ({other:?}); stderr:\n{stderr}");
            }
        };
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first stdout line is not `listening on …`: {line:?}"))
            .to_string();
        let port = addr
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Self {
            child,
            addr,
            port,
            log,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `127.0.0.1:PORT`, for clients.
    pub fn local(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT{path}`, for curl.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.local())
    }

    /// A TCP connection to the server over IPv4 loopback, with read and write
    /// timeouts so a broken server fails the test instead of hanging it.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connects");
        stream
            .set_read_timeout(Some(COMMAND_DEADLINE))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(COMMAND_DEADLINE))
            .expect("write timeout");
        stream
    }

    /// Whether a stderr line so far contains `needle`.
    pub fn has_logged(&self, needle: &str) -> bool {
        let lines = self.log.lines.lock().unwrap();
        lines.iter().any(|line| line.contains(needle))
    }

    /// Waits until a stderr line contains `needle` and returns that line.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + LOG_WAIT;
        let mut lines = self.log.lines.lock().unwrap();
        loop {
            if let Some(line) = lines.iter().find(|line| line.contains(needle)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no log line with {needle:?}; stderr so far:\n{}",
                lines.join("\n")
            );
            lines = self.log.grew.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit.
    pub fn terminate(mut self) -> ExitStatus {
        signal(self.pid(), libc::SIGTERM);
        wait_with_deadline(&mut self.child, COMMAND_DEADLINE)
    }

    /// The server's resident memory in KiB, from `/proc/PID/status`.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("server is running");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.split_whitespace().next()?.parse().ok())
            .expect("VmRSS in /proc status")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `stream` line by line into `log`, waking waiters on every line.
fn collect_lines(stream: impl Read + Send + 'static, log: Arc<Log>) {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            log.lines.lock().unwrap().push(line);
            log.grew.notify_all();
        }
    });
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: i32) {
    let pid = i32::try_from(pid).expect("pid fits");
    // SAFETY: kill(2) has no memory-safety preconditions.
    let result = unsafe { libc::kill(pid, signal) };
    assert_eq!(result, 0, "kill({pid}, {signal}) failed");
}

/// Waits for `child` to exit, killing it and failing the test after `deadline`.
pub fn wait_with_deadline(child: &mut Child, deadline: Duration) -> ExitStatus {
    let pid = child.id();
    let (done, rx) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        if rx.recv_timeout(deadline).is_err() {
            signal(pid, libc::SIGKILL);
            return true;
        }
        false
    });
    let status = child.wait().expect("wait for child");
    let _ = done.send(());
    assert!(
        !watchdog.join().unwrap(),
        "process {pid} did not exit within {deadline:?}"
    );
    status
}

/// Runs `command` with `stdin` as its input and returns its output, failing
/// the test if it runs longer than [`COMMAND_DEADLINE`].
pub fn run(mut command: Command, stdin: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("command starts");
    let mut input = child.stdin.take().expect("stdin piped");
    let stdin = stdin.to_vec();
    let writer = thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let mut stdout = child.stdout.take().expect("stdout piped");
    let mut stderr = child.stderr.take().expect("stderr piped");
    let out_reader = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err_reader = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });
    let status = wait_with_deadline(&mut child, COMMAND_DEADLINE);
    writer.join().unwrap();
    Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

/// Runs `switchboard ARGS` with `stdin` and returns its output.
pub fn run_switchboard(args: &[&str], stdin: &[u8]) -> Output {
    let mut command = switchboard();
    command.args(args);
    run(command, stdin)
}

/// Stdout as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the command failed with exactly one `error: …` line on stderr that
/// contains `expected`.
pub fn assert_one_line_error(output: &Output, expected: &str) {
    let stderr = stderr(output);
    assert!(!output.status.success(), "expected failure, got {output:?}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line, got:\n{stderr}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(expected),
        "expected `error: …{expected}…`, got {:?}",
        lines[0]
    );
}

/// Reads from `stream` until `expected.len()` bytes have arrived.
pub fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut reply = vec![0; len];
    stream.read_exact(&mut reply).expect("reply arrives");
    reply
}

/// A port nothing listens on (bound once, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A line-protocol chat client, as `nc` would be: it writes lines and reads
/// the server's lines one at a time (each read bounded by a timeout).
pub struct LineClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// The nick the server gave (or the client took).
    pub nick: String,
}

impl LineClient {
    /// Connects and reads the welcome: a client that has said nothing yet,
    /// so it is in no room and nobody sees it (docs/PROTOCOL.md 5).
    pub fn greeted(server: &Server) -> Self {
        let mut client = Self::connected(server);
        client.read_greeting();
        client
    }

    /// Connects and reads nothing yet.
    pub fn connected(server: &Server) -> Self {
        Self::over(server.connect())
    }

    /// A client on a connection made already; reads nothing yet.
    pub fn over(stream: TcpStream) -> Self {
        let writer = stream.try_clone().expect("clone stream");
        Self {
            reader: BufReader::new(stream),
            writer,
            nick: String::new(),
        }
    }

    /// Reads the welcome and learns the nick.
    pub fn read_greeting(&mut self) {
        let welcome = self.line();
        let nick = welcome
            .strip_prefix("* welcome ")
            .and_then(|rest| rest.split_once(" (fd "))
            .map(|(nick, rest)| {
                let (fd, tail) = rest.split_once(')').expect("fd closes");
                assert!(fd.parse::<u32>().is_ok(), "fd is a number in {welcome:?}");
                assert_eq!(tail, " - type /help", "{welcome:?}");
                nick.to_string()
            })
            .unwrap_or_else(|| panic!("not a welcome line: {welcome:?}"));
        self.nick = nick;
    }

    /// Says `line` as the client's first line and reads what that brings
    /// first: its own join of `#lobby`, which everyone there sees.
    pub fn first_line(&mut self, line: &str) {
        self.send(line);
        self.expect(&format!("* {} joined #lobby", self.nick));
    }

    /// Greets, then takes `nick` with its first line (joining `#lobby`).
    pub fn named(server: &Server, nick: &str) -> Self {
        let mut client = Self::greeted(server);
        client.first_line(&format!("/nick {nick}"));
        client.expect(&format!("* you are now known as {nick}"));
        client.nick = nick.to_string();
        client
    }

    /// Sends one line.
    pub fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\n").as_bytes());
    }

    /// Sends raw bytes.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send to server");
    }

    /// The next line from the server, without its newline.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        let read = self
            .reader
            .read_line(&mut line)
            .expect("a line from the server");
        assert!(read > 0, "server closed the connection");
        line.truncate(line.trim_end_matches('\n').len());
        line
    }

    /// Asserts the next line is `expected`.
    pub fn expect(&mut self, expected: &str) {
        assert_eq!(self.line(), expected, "{}'s next line", self.nick);
    }

    /// Asserts the next line that is not a `* …` notice is `expected`.
    pub fn expect_past_notices(&mut self, expected: &str) {
        let mut line = self.line();
        while line.starts_with("* ") {
            line = self.line();
        }
        assert_eq!(line, expected, "{}'s next line after notices", self.nick);
    }

    /// Reads until the server closes; returns the lines that came before.
    pub fn until_closed(&mut self) -> Vec<String> {
        let mut rest = String::new();
        self.reader.read_to_string(&mut rest).expect("read to end");
        rest.lines().map(String::from).collect()
    }

    /// The underlying socket, for socket options.
    pub fn socket(&self) -> &TcpStream {
        &self.writer
    }
}

/// Runs curl (silent, the status code on a last line of its own); returns
/// the status code and the body.
pub fn curl(args: &[&str]) -> (u16, String) {
    let mut command = tool("curl");
    command.args(["-s", "-w", "\n%{http_code}"]).args(args);
    let output = run(command, b"");
    let text = stdout(&output);
    let (body, status) = text.rsplit_once('\n').expect("status line");
    (status.parse().expect("numeric status"), body.to_string())
}

/// A tokio runtime for a test that drives async clients (tokio-tungstenite, …).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A new, empty path under `target/` for a hub's data directory (the hub
/// makes it).
pub fn fresh_data_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = repo_file(&format!("target/test-data/{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A fresh directory under `target/` for one test's files.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = repo_file(&format!("target/test-tls/{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Makes a certificate for 127.0.0.1 and localhost and its key with openssl;
/// returns their paths. It is self-signed and, as openssl makes it by
/// default, marked as a CA; `extra` openssl arguments come last and change
/// that (`-CA FILE -CAkey FILE` to have a CA sign it, `-addext …`, `-subj …`).
pub fn make_certificate(dir: &Path, name: &str, extra: &[&str]) -> (String, String) {
    let cert = dir.join(format!("{name}.pem")).display().to_string();
    let key = dir.join(format!("{name}-key.pem")).display().to_string();
    let mut openssl = tool("openssl");
    openssl.args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-keyout",
        &key,
        "-out",
        &cert,
    ]);
    openssl.args(extra);
    let made = run(openssl, b"");
    assert!(made.status.success(), "{made:?}");
    (cert, key)
}

/// A `redis-server` of the test's own on a free loopback port, killed when
/// dropped.
pub struct Redis {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Where it keeps its append-only file, when it persists.
    dir: Option<PathBuf>,
}

impl Redis {
    /// Starts one that keeps nothing on disk.
    pub fn start() -> Self {
        Self::launch(closed_port(), None)
    }

    /// Starts one that writes every command to an append-only file in `dir`
    /// (`appendfsync always`), so a restart in `dir` keeps everything.
    pub fn persistent(dir: &Path) -> Self {
        Self::launch(closed_port(), Some(dir.to_path_buf()))
    }

    /// Kills it (`SIGKILL`) and starts it again on the same port, with the
    /// same persistence.
    pub fn restart(mut self) -> Self {
        let _ = self.child.kill();
        let _ = self.child.wait();
        Self::launch(self.port, self.dir.take())
    }

    /// Kills it and returns its port, for a later [`Redis::start_on`].
    pub fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }

    /// Starts one (without persistence) on `port`.
    pub fn start_on(port: u16) -> Self {
        Self::launch(port, None)
    }

    /// Starts `redis-server` and waits for it to accept connections.
    fn launch(port: u16, dir: Option<PathBuf>) -> Self {
        let mut command = tool("redis-server");
        command
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        match &dir {
            Some(dir) => {
                command.args(["--appendonly", "yes", "--appendfsync", "always", "--dir"]);
                command.arg(dir);
            }
            None => {
                command.args(["--appendonly", "no"]);
            }
        }
        let mut child = command.spawn().expect("redis-server starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let (ready, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            let _ = ready.send(lines.any(|line| line.contains("Ready to accept connections")));
            lines.for_each(drop);
        });
        assert_eq!(
            rx.recv_timeout(STARTUP),
            Ok(true),
            "redis-server on port {port} did not start"
        );
        Self { child, port, dir }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
