//! What a server on a shared network must withstand, through the real binary: secrets never in
//! clear in the database file, the outbound policy (hosts, private addresses, a name resolving
//! to loopback, redirects), loops, slow and oversized clients, and TLS.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

fn put_connection(url: &str, name: &str, body: Value) -> (u16, Value) {
    http_send("PUT", &format!("{url}/v1/connections/{name}"), "application/json", body.to_string())
}

#[test]
fn no_secret_is_in_clear_in_the_database_file_or_anything_the_server_shows() {
    let dir = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let key = "5ec7e7-wecom-robot-key-0001";
    let (ding_token, ding_secret) = ("d1n9a11c0de5ec7e7", "SECd1n9s3cr3tv4lu3");
    let cfg = dir.path().join("magpie.yaml");
    let text = wecom_config(sim_port, key, 1).replace(
        "flows:\n",
        &format!(
            "  - name: ding\n    platform: dingtalk\n    webhook: http://127.0.0.1:{sim_port}/robot/send?access_token={ding_token}\n    secret: {ding_secret}\nflows:\n"
        ),
    );
    std::fs::write(&cfg, &text).unwrap();
    let sim = robots(dir.path(), &cfg, sim_port);
    let server = serve(dir.path(), Some(&cfg), "server");
    let url = server.url();
    // A DingTalk flow too, so its signed request is made and traced.
    let flow = json!({"steps": [{"robot": {"connection": "ding", "content": "告警 {{ payload.subject }}"}}]});
    assert_eq!(
        http_send("PUT", &format!("{url}/v1/flows/to-ding?publish=true"), "application/json", flow.to_string()).0,
        200
    );
    let rule = json!({"pattern": {"source": ["cvm.cloud.tencent"]}, "targets": [{"flow": "to-ding"}]});
    assert_eq!(
        http_send("PUT", &format!("{url}/v1/buses/default/rules/to-ding"), "application/json", rule.to_string()).0,
        200
    );
    let id = send_template(&url, "cvm:GuestReboot");
    let trace = settled_trace(&url, &id, 2);
    eventually(10, "both robots to get their message", || (sim_messages(&sim).len() >= 2).then_some(()));
    let shown = [
        trace.to_string(),
        get(&format!("{url}/v1/config")).to_string(),
        get(&format!("{url}/v1/connections")).to_string(),
        http_get(&format!("{url}/metrics")).unwrap().1.to_string(),
        get(&format!("{url}/v1/events?limit=100")).to_string(),
        server.log_text(),
    ];
    drop(server); // the WAL is checkpointed into the file, or stays beside it: both are read
    let mut bytes = Vec::new();
    for f in std::fs::read_dir(dir.path().join("data")).unwrap().flatten() {
        if f.file_name().to_string_lossy().starts_with("magpie.db") {
            bytes.extend(std::fs::read(f.path()).unwrap());
        }
    }
    assert!(bytes.len() > 10_000, "the database was read");
    for secret in [key, ding_token, ding_secret] {
        let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(!found, "{secret:?} is in clear in the database file");
        for (i, s) in shown.iter().enumerate() {
            assert!(!s.contains(secret), "{secret:?} is shown ({i})");
        }
    }
    let sealed = b"sealed:v1:";
    assert!(bytes.windows(sealed.len()).any(|w| w == sealed), "connections are stored sealed");
    // The same key opens them after a restart; a rotation re-seals them and they still send.
    let o = std::process::Command::new(BIN)
        .args(["secrets", "rotate", "--data-dir", dir.path().join("data").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let server = serve(dir.path(), Some(&cfg), "server2");
    let id = send_template(&server.url(), "cvm:GuestReboot");
    let t = settled_trace(&server.url(), &id, 2);
    assert!(t["runs"].as_array().unwrap().iter().all(|r| r["status"] == "done"), "{t}");
    // A wrong key is refused at start with a clear error.
    drop(server);
    let o = std::process::Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--data-dir"])
        .arg(dir.path().join("data"))
        .env("MAGPIE_SECRET_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not the key in use"), "{}", stderr(&o));
}

/// A receiver that answers every request with `answer` and records what came.
fn receiver(answer: &'static str) -> (u16, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for mut c in listener.incoming().flatten() {
            let mut buf = [0u8; 8192];
            let n = c.read(&mut buf).unwrap_or(0);
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
            let _ = c.write_all(answer.as_bytes());
        }
    });
    (port, rx)
}

#[test]
fn connections_reach_only_allowed_hosts_resolved_addresses_are_checked_and_redirects_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    // No --outbound-allow 127.0.0.1 here: loopback is not allowed, the name `localhost` is.
    let cfg = dir.path().join("magpie.yaml");
    let (redirect_port, seen) = receiver(
        "HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/?key=stolen\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    );
    std::fs::write(
        &cfg,
        format!("outbound:\n  allow: [localhost, hooks.example.com, 127.0.0.2/32, \"127.0.0.1:{redirect_port}\"]\n"),
    )
    .unwrap();
    // An address with a port is not an allowance: refused at start, naming the entry.
    let o = std::process::Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir", data.to_str().unwrap(), "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("outbound.allow[3]"), "{}", stderr(&o));
    std::fs::write(&cfg, "outbound:\n  allow: [localhost, hooks.example.com, 127.0.0.2/32]\n").unwrap();
    let server = serve_bare(&data, &cfg, port, dir.path());
    let url = server.url();
    let wecom =
        |host: &str| json!({"platform": "wecom", "webhook": format!("http://{host}/cgi-bin/webhook/send?key=k1")});
    for (host, why) in [
        ("evil.example", "is not a robot platform's"),
        ("10.1.2.3", "private"),
        ("192.168.1.10:8080", "private"),
        ("169.254.169.254", "link-local"),
        ("127.0.0.1:9", "loopback"),
        ("[::1]:9", "loopback"),
    ] {
        let (status, v) = put_connection(&url, "conn", wecom(host));
        assert_eq!(status, 400, "{host}: {v}");
        assert_eq!(v["error"]["path"], "webhook", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("outbound policy") && msg.contains(why), "{host}: {msg}");
    }
    assert_eq!(put_connection(&url, "ok", wecom("hooks.example.com")).0, 200, "an allowed host");
    assert_eq!(
        put_connection(
            &url,
            "plat",
            json!({"platform": "wecom", "webhook": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"})
        )
        .0,
        200
    );
    // `localhost` is an allowed name, but it resolves to 127.0.0.1, which is not allowed: refused
    // when connecting, nothing sent.
    let (sim_port, hits) = receiver("HTTP/1.1 200 OK\r\ncontent-length: 27\r\n\r\n{\"errcode\":0,\"errmsg\":\"ok\"}");
    assert_eq!(put_connection(&url, "rebound", wecom(&format!("localhost:{sim_port}"))).0, 200);
    let flow =
        |conn: &str| json!({"steps": [{"robot": {"connection": conn, "content": "x", "retry": {"attempts": 1}}}]});
    let (status, v) = http_send(
        "PUT",
        &format!("{url}/v1/flows/to-rebound?publish=true"),
        "application/json",
        flow("rebound").to_string(),
    );
    assert_eq!(status, 200, "{v}");
    let rule = json!({"pattern": {"source": ["cvm.cloud.tencent"]}, "targets": [{"flow": "to-rebound"}]});
    assert_eq!(
        http_send("PUT", &format!("{url}/v1/buses/default/rules/rr"), "application/json", rule.to_string()).0,
        200
    );
    let id = send_template(&url, "cvm:GuestReboot");
    let t = settled_trace(&url, &id, 1);
    let err = t.to_string();
    assert!(err.contains("outbound policy") && err.contains("127.0.0.1 is a loopback address"), "{t}");
    assert!(hits.try_recv().is_err(), "nothing reached the receiver");
    drop(server);

    // A redirect is not followed: the receiver allowed, its Location not.
    std::fs::write(&cfg, "outbound:\n  allow: [127.0.0.1]\n").unwrap();
    let server = serve_bare(&data, &cfg, port, dir.path());
    let url = server.url();
    assert_eq!(put_connection(&url, "redir", wecom(&format!("127.0.0.1:{redirect_port}"))).0, 200);
    let f = json!({"steps": [{"robot": {"connection": "redir", "content": "x", "retry": {"attempts": 1}}}]});
    assert_eq!(
        http_send("PUT", &format!("{url}/v1/flows/to-redir?publish=true"), "application/json", f.to_string()).0,
        200
    );
    let rule = json!({"pattern": {"source": ["cvm.cloud.tencent"]}, "targets": [{"flow": "to-redir"}]});
    assert_eq!(
        http_send("PUT", &format!("{url}/v1/buses/default/rules/rr"), "application/json", rule.to_string()).0,
        200
    );
    let id = send_template(&url, "cvm:GuestReboot");
    let t = settled_trace(&url, &id, 1);
    let text = t.to_string();
    assert!(text.contains("redirect") && text.contains("follows no redirects"), "{t}");
    assert!(!text.contains("stolen"), "the Location's key is masked: {t}");
    assert_eq!(seen.try_iter().count(), 1, "one request, to the receiver only");
}

fn serve_bare(data: &std::path::Path, cfg: &std::path::Path, port: u16, dir: &std::path::Path) -> Proc {
    spawn_serve(&["--data-dir", data.to_str().unwrap(), "--config", cfg.to_str().unwrap()], port, dir)
}

fn spawn_serve(extra: &[&str], port: u16, dir: &std::path::Path) -> Proc {
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["serve", "--listen", &listen];
    args.extend(extra);
    spawn(&args, &dir.join(format!("serve-{port}-{}.log", Instant::now().elapsed().as_nanos())), port)
}

#[test]
fn a_connection_to_this_server_is_refused_and_a_loop_stops_after_a_few_hops() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let back = json!({"platform": "wecom", "webhook": format!("http://127.0.0.1:{port}/hooks/loop?key=k")});
    let cfg = dir.path().join("magpie.yaml");
    std::fs::write(&cfg, "outbound:\n  allow: [127.0.0.1]\n").unwrap();
    let server = serve_bare(&data, &cfg, port, dir.path());
    let (status, v) = put_connection(&server.url(), "back", back.clone());
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("own address"), "{v}");
    let (status, v) = put_connection(
        &server.url(),
        "back2",
        json!({"platform": "wecom", "webhook": format!("http://localhost:{port}/hooks/loop?key=k")}),
    );
    assert_eq!(status, 400, "by name too: {v}");
    drop(server);

    // Allowed on purpose: the hop count stops the loop.
    std::fs::write(&cfg, "outbound:\n  allow: [127.0.0.1]\n  allow_self: true\n").unwrap();
    let server = serve_bare(&data, &cfg, port, dir.path());
    let url = server.url();
    assert_eq!(put_connection(&url, "back", back).0, 200);
    let flow = json!({"trigger": {"type": "eventbridge", "path": "loop"},
                      "steps": [{"robot": {"connection": "back", "content": "again", "retry": {"attempts": 1}}}]});
    assert_eq!(
        http_send("PUT", &format!("{url}/v1/flows/looper?publish=true"), "application/json", flow.to_string()).0,
        200
    );
    let (status, _) = http_send("POST", &format!("{url}/hooks/loop"), "application/json", "{}");
    assert_eq!(status, 202);
    std::thread::sleep(Duration::from_secs(3));
    let accepted = metric_sum(&metrics(&url), "magpie_events_accepted_total", &[("bus", "_hooks")]);
    assert_eq!(accepted, 3.0, "the first request and two hops, then refused");
    let letters = get(&format!("{url}/v1/dead-letters"));
    let text = letters.to_string();
    assert!(text.contains("508") || text.contains("loop"), "the refused hop is a dead letter: {letters}");
    // A sender claiming too many hops is refused outright.
    let r = reqwest::blocking::Client::new()
        .post(format!("{url}/v1/buses/default/events"))
        .header("magpie-hops", "7")
        .header("content-type", "application/json")
        .body(r#"{"source": "x", "type": "t"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 508);
}

#[test]
fn slow_and_oversized_clients_are_cut_off_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = dir.path().join("data");
    let server = spawn_serve(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--header-timeout",
            "1s",
            "--body-timeout",
            "1s",
            "--max-requests",
            "2",
        ],
        port,
        dir.path(),
    );
    let url = server.url();
    // Slow headers: cut off after the header timeout; others are served meanwhile.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"POST /v1/buses/default/events HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(http_get(&format!("{url}/healthz")).unwrap().0, 200);
    }
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "cut off after {took:?}");
    // A declared body over the limit: refused before it is read.
    let mut big = TcpStream::connect(("127.0.0.1", port)).unwrap();
    big.write_all(b"POST /v1/buses/default/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{").unwrap();
    big.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = [0u8; 64];
    let n = big.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 413"), "{}", String::from_utf8_lossy(&head[..n]));
    // A stalled body: the request fails after the body timeout, and while two stall, a third
    // request is answered 503 with Retry-After.
    let stall = || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"POST /v1/buses/default/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":").unwrap();
        s
    };
    let (a, b) = (stall(), stall());
    std::thread::sleep(Duration::from_millis(200));
    let r = reqwest::blocking::Client::new().get(format!("{url}/v1/buses")).send().unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    for mut s in [a, b] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 4") || text.is_empty(), "{text}");
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(http_get(&format!("{url}/v1/buses")).unwrap().0, 200, "served again");
}

#[test]
fn tls_serves_https_with_the_given_certificate() {
    if std::process::Command::new("openssl").arg("version").output().is_err() {
        assert!(std::env::var("MAGPIE_REQUIRE_SERVICES").is_err(), "openssl is required");
        eprintln!("skipping: openssl not found (it makes the test certificate)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(p("ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for args in [
        vec![
            "req",
            "-x509",
            "-days",
            "1",
            "-subj",
            "/CN=magpie test CA",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.pem"),
        ],
        vec!["req", "-subj", "/CN=localhost", "-keyout", &p("key.pem"), "-out", &p("leaf.csr")],
        vec![
            "x509",
            "-req",
            "-in",
            &p("leaf.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &p("ext"),
            "-out",
            &p("cert.pem"),
        ],
    ] {
        let mut cmd = std::process::Command::new("openssl");
        cmd.args(&args[..1]);
        if args[0] == "req" {
            cmd.args(ec);
        }
        let o = cmd.args(&args[1..]).output().unwrap();
        assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    let port = free_port();
    let data = dir.path().join("data");
    let args = [
        "--data-dir",
        data.to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    // The harness's health check speaks plain HTTP: wait for the port, then talk TLS.
    let log = std::fs::File::create(dir.path().join("tls.log")).unwrap();
    let child = std::process::Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .stderr(log)
        .spawn()
        .unwrap();
    let mut child = Proc { child, port, log: dir.path().join("tls.log") };
    let ca = reqwest::Certificate::from_pem(&std::fs::read(p("ca.pem")).unwrap()).unwrap();
    let client = reqwest::blocking::Client::builder().add_root_certificate(ca).build().unwrap();
    let ok = eventually(20, "https to answer", || client.get(format!("https://localhost:{port}/healthz")).send().ok());
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().unwrap(), "ok");
    let plain = reqwest::blocking::Client::new().get(format!("http://127.0.0.1:{port}/healthz")).send();
    assert!(plain.is_err() || plain.unwrap().status() != 200, "no plain HTTP on the TLS port");
    child.kill();
    // A key that does not go with the certificate is refused at start.
    let other = dir.path().join("other.pem");
    std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out"])
        .arg(&other)
        .output()
        .unwrap();
    let o = std::process::Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--data-dir"])
        .arg(dir.path().join("data2"))
        .args(["--tls-cert", cert.to_str().unwrap(), "--tls-key", other.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not go with the certificate"), "{}", stderr(&o));
}
