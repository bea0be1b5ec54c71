//! Runs the real `magpie` binary: a server, a robot simulator, and CLI commands.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_magpie");

/// A free port on loopback (bound and released; the race with other tests is negligible).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A running `magpie` process, killed when dropped.
pub struct Proc {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Proc {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait: a graceful stop.
    pub fn stop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn spawn(args: &[&str], log: &Path, port: u16) -> Proc {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    let child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawning magpie");
    let p = Proc { child, port, log: log.to_path_buf() };
    wait_healthy(&p);
    p
}

fn wait_healthy(p: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if http_get(&format!("{}/healthz", p.url())).is_ok_and(|r| r.0 == 200) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("magpie on port {} did not become healthy; log:\n{}", p.port, p.log_text());
}

/// Starts `magpie serve` with a config file and data dir.
pub fn serve(dir: &Path, config: Option<&Path>, name: &str) -> Proc {
    serve_with(dir, config, name, &[])
}

/// [`serve`] with more arguments.
pub fn serve_with(dir: &Path, config: Option<&Path>, name: &str, extra: &[&str]) -> Proc {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let data = dir.join("data");
    // The robot simulator and test receivers listen on loopback: the outbound policy must allow it.
    let mut args = vec![
        "serve",
        "--listen",
        &listen,
        "--data-dir",
        data.to_str().unwrap_or_default(),
        "--outbound-allow",
        "127.0.0.1",
    ];
    let cfg;
    if let Some(c) = config {
        cfg = c.to_string_lossy().into_owned();
        args.extend(["--config", &cfg]);
    }
    args.extend(extra);
    spawn(&args, &dir.join(format!("{name}.log")), port)
}

/// The resident memory of a process, in bytes (Linux), or None.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// Starts `magpie robots` with the robots of a config file.
pub fn robots(dir: &Path, config: &Path, port: u16) -> Proc {
    let listen = format!("127.0.0.1:{port}");
    spawn(
        &["robots", "--listen", &listen, "--config", config.to_str().unwrap_or_default()],
        &dir.join("robots.log"),
        port,
    )
}

/// Runs a CLI command against `server`.
pub fn cli(server: &str, args: &[&str]) -> Output {
    Command::new(BIN).arg("--server").arg(server).args(args).output().expect("running magpie")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().expect("client")
}

fn answer(r: reqwest::blocking::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub fn http_get(url: &str) -> Result<(u16, Value), reqwest::Error> {
    client().get(url).send().map(answer)
}

pub fn http_send(method: &str, url: &str, content_type: &str, body: impl Into<Vec<u8>>) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    answer(client().request(m, url).header("content-type", content_type).body(body.into()).send().expect("request"))
}

pub fn get(url: &str) -> Value {
    let (status, v) = http_get(url).expect("GET");
    assert_eq!(status, 200, "GET {url}: {v}");
    v
}

/// Polls `f` every 50 ms until it returns Some, or panics after `secs` seconds.
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Messages the simulator accepted.
pub fn sim_messages(sim: &Proc) -> Vec<Value> {
    get(&format!("{}/_sim/messages", sim.url())).as_array().cloned().unwrap_or_default()
}

/// The demo configuration with its robots moved to the simulator on `port`.
pub fn demo_config(port: u16) -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/demo/magpie.yaml"))
        .expect("demo config");
    text.replace("127.0.0.1:7481", &format!("127.0.0.1:{port}"))
}

/// A one-flow configuration: WeCom robot in try, logger ERROR `ebtest` in catch ANY.
pub fn wecom_config(sim_port: u16, key: &str, attempts: u32) -> String {
    wecom_config_with(sim_port, key, attempts, "")
}

/// [`wecom_config`] with more settings for the connection (YAML lines, indented by 4).
pub fn wecom_config_with(sim_port: u16, key: &str, attempts: u32, connection_extra: &str) -> String {
    format!(
        r#"
connections:
  - name: wecom-test
    platform: wecom
    webhook: http://127.0.0.1:{sim_port}/cgi-bin/webhook/send?key={key}
    timeout: 2s
{connection_extra}
flows:
  - name: to-wecom
    steps:
      - set-variable:
          name: body
          value: |
            def dw_process(msg):
                return msg.payload
      - try:
          steps:
            - robot:
                connection: wecom-test
                content: "<font color=\"warning\">{{{{ vars.body.type }}}}</font> {{{{ vars.body.subject }}}}"
                retry: {{attempts: {attempts}, backoff: 50ms, max_backoff: 300ms}}
          catch:
            - errors: [ANY]
              steps:
                - logger:
                    level: ERROR
                    category: ebtest
                    message: "{{{{ error.code }}}}: {{{{ error.desc }}}}"
rules:
  - name: all-cvm
    pattern: {{"source": "cvm.cloud.tencent"}}
    targets: [{{flow: to-wecom}}]
"#
    )
}

/// Sends a template through the CLI and returns the event id.
pub fn send_template(server: &str, name: &str) -> String {
    let o = cli(server, &["events", "send-template", name]);
    assert!(o.status.success(), "send-template {name}: {}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    out.lines()
        .find_map(|l| l.strip_prefix("accepted "))
        .map(|id| id.trim().to_string())
        .unwrap_or_else(|| panic!("no id in: {out}"))
}

/// The JSON trace of an event.
pub fn trace(server: &str, id: &str) -> Value {
    get(&format!("{server}/v1/events/{id}/trace"))
}

/// Waits until every flow run of the event has ended (done or failed) and returns the trace.
pub fn settled_trace(server: &str, id: &str, runs: usize) -> Value {
    eventually(20, &format!("flow runs of {id} to end"), || {
        let t = trace(server, id);
        let r = t["runs"].as_array()?;
        let ended = |r: &Value| r["status"] == "done" || r["status"] == "failed" || r["status"] == "delivery_failed";
        (r.len() == runs && r.iter().all(ended)).then_some(t)
    })
}

/// Registers (or replaces) a robot in the simulator: `{"platform", "token", "limits"?, …}`.
pub fn sim_robot(sim: &Proc, robot: Value) {
    let (status, body) =
        http_send("POST", &format!("{}/_sim/robots", sim.url()), "application/json", robot.to_string());
    assert_eq!(status, 201, "{body}");
}

/// Scripts the next answers of a simulated WeCom robot.
pub fn sim_script(sim: &Proc, key: &str, answers: Value) {
    let (status, body) = http_send(
        "POST",
        &format!("{}/_sim/faults", sim.url()),
        "application/json",
        serde_json::json!({"platform": "wecom", "token": key, "answers": answers}).to_string(),
    );
    assert_eq!(status, 204, "{body}");
}

/// Every answer the simulator gave.
pub fn sim_answers(sim: &Proc) -> Vec<Value> {
    get(&format!("{}/_sim/answers", sim.url())).as_array().cloned().unwrap_or_default()
}

/// The server's metrics, parsed from the Prometheus text format: `(name, labels, value)`.
pub fn metrics(server: &str) -> Vec<(String, std::collections::BTreeMap<String, String>, f64)> {
    let text = client().get(format!("{server}/metrics")).send().and_then(|r| r.text()).expect("GET /metrics");
    parse_exposition(&text)
}

/// Parses the Prometheus text exposition format (enough of it to check series and values).
pub fn parse_exposition(text: &str) -> Vec<(String, std::collections::BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), Default::default()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                let mut labels = std::collections::BTreeMap::new();
                for pair in body.split("\",").map(|p| p.trim_start_matches(',')).filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("bad label in {line:?}"));
                    labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                }
                (name.to_string(), labels)
            }
        };
        out.push((name, labels, value));
    }
    out
}

/// The sum of a metric's series whose labels include `labels`.
pub fn metric_sum(
    all: &[(String, std::collections::BTreeMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    all.iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, _, v)| v)
        .sum()
}

/// A TCP proxy on a free port to `upstream_port` that delays each new connection by `delay` (a
/// distant platform's connection and TLS set-up); kept-alive connections pass at once.
pub fn slow_proxy(upstream_port: u16, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let Ok(upstream) = std::net::TcpStream::connect(("127.0.0.1", upstream_port)) else { return };
                let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), upstream.try_clone()) else { return };
                let (mut c, mut u) = (client, upstream);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut u2);
                    let _ = u2.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut u, &mut c);
                let _ = c.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}
