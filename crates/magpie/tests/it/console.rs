//! The web console in real headless Chromium (Debian `chromium` + `chromium-driver`, driven over
//! WebDriver): send the GuestReboot template and see three flow runs on its trace; type an invalid
//! pattern and see the path of the error; edit a flow, see the draft differ from live, publish it
//! and see the next event use it; switch the language; log in with a token. Screenshots of each
//! page go to `target/console-screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::harness::*;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first of `names` found on `PATH`, as an absolute path (chromedriver wants one).
fn on_path(names: &[&str]) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path).map(|d| d.join(n)).find(|p| p.is_file()).map(|p| p.to_string_lossy().into_owned())
    })
}

fn tools() -> Option<(String, String)> {
    let found = |names: &[&str]| on_path(names);
    Some((found(&["chromedriver"])?, found(&["chromium", "chromium-browser", "google-chrome"])?))
}

fn shots() -> PathBuf {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/console-screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(shots().join(format!("{name}.png")), png).expect("writing the screenshot");
}

/// Waits until `f` returns Some (polling every 200 ms), or panics after `secs`.
async fn until<T, F: std::future::Future<Output = Option<T>>>(secs: u64, what: &str, mut f: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn text(c: &Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

async fn browser(driver_port: u16, chromium: &str) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": chromium, "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                            "--window-size=1280,1100", "--lang=en-US"]}),
    );
    // chromedriver is plain HTTP on loopback: no TLS connector.
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a WebDriver session with chromedriver")
}

/// Sends a template from the templates page and waits on its trace page until every run ended;
/// returns the runs' previews, by flow.
async fn send_guest_reboot(c: &Client, url: &str) -> Vec<(String, String)> {
    c.goto(&format!("{url}/console/templates")).await.unwrap();
    c.find(Locator::Css("#send-cvm-GuestReboot")).await.expect("the GuestReboot send button").click().await.unwrap();
    until(10, "the trace page", || async {
        c.current_url().await.ok().filter(|u| u.path().starts_with("/console/events/"))
    })
    .await;
    until(20, "three settled flow runs", || async {
        let settled = c.find(Locator::Css("#runs")).await.ok()?.attr("data-settled").await.ok()??;
        let runs = c.find_all(Locator::Css(".run")).await.ok()?;
        (settled == "true" && runs.len() == 3).then_some(())
    })
    .await;
    let mut out = Vec::new();
    for run in c.find_all(Locator::Css(".run")).await.unwrap() {
        let flow = run.attr("data-flow").await.unwrap().unwrap_or_default();
        let preview = match run.find(Locator::Css(".preview")).await {
            Ok(p) => p.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        out.push((flow, preview));
    }
    out
}

#[test]
fn the_console_sends_traces_edits_publishes_and_logs_in_in_chromium() {
    let Some((chromedriver, chromium)) = tools() else {
        if std::env::var("MAGPIE_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("chromium and chromedriver are required (MAGPIE_REQUIRE_SERVICES=1) but not installed");
        }
        eprintln!("SKIPPED: chromium / chromedriver are not installed (apt-get install chromium chromium-driver)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let robots = format!("127.0.0.1:{}", free_port());
    let server = serve_with(dir.path(), None, "server", &["--demo", "--robots-listen", &robots]);
    let url = server.url();
    let guarded_dir = dir.path().join("guarded");
    std::fs::create_dir_all(&guarded_dir).unwrap();
    let guarded = serve_with(&guarded_dir, None, "guarded", &["--token", "console-secret"]);
    let guarded_url = guarded.url();
    let driver_port = free_port();
    let log = std::fs::File::create(dir.path().join("chromedriver.log")).unwrap();
    let _driver = Driver(
        Command::new(&chromedriver)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting chromedriver"),
    );
    eventually(10, "chromedriver to listen", || std::net::TcpStream::connect(("127.0.0.1", driver_port)).ok());

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = browser(driver_port, &chromium).await;

        // 发送事件 > 默认模板: three flow runs on the trace, each with the robot's message.
        let runs = send_guest_reboot(&c, &url).await;
        let mut flows: Vec<&str> = runs.iter().map(|(f, _)| f.as_str()).collect();
        flows.sort();
        assert_eq!(flows, ["eb-dingtalk", "eb-feishu", "eb-wecom"]);
        let wecom = &runs.iter().find(|(f, _)| f == "eb-wecom").unwrap().1;
        assert!(wecom.contains("收到告警信息") && wecom.contains("ins-"), "{wecom}");
        let coloured = c.find(Locator::Css(".run[data-flow='eb-wecom'] .preview span")).await.expect("a coloured span");
        assert_eq!(coloured.attr("style").await.unwrap().as_deref(), Some("color:#d29922"), "WeCom's warning colour");
        shot(&c, "trace").await;

        // The pattern editor validates as you type: the error names its path.
        c.goto(&format!("{url}/console/buses")).await.unwrap();
        // Create a bus; a bad name is refused with the reason.
        c.find(Locator::Css("#bus-name")).await.unwrap().send_keys("ops-bus").await.unwrap();
        c.find(Locator::Css("#bus-description")).await.unwrap().send_keys("运维事件").await.unwrap();
        c.find(Locator::Css("#save-bus")).await.unwrap().click().await.unwrap();
        until(5, "the new bus", || async {
            c.source().await.ok().filter(|s| s.contains("ops-bus") && s.contains("运维事件"))
        })
        .await;
        c.find(Locator::Css("#bus-name")).await.unwrap().send_keys("bad name!").await.unwrap();
        c.find(Locator::Css("#save-bus")).await.unwrap().click().await.unwrap();
        let refused = until(5, "the refusal", || async { text(&c, "#buses-error").await }).await;
        assert!(refused.contains("name"), "{refused}");
        // Disable and enable the rule.
        c.find(Locator::Css(".toggle-rule")).await.unwrap().click().await.unwrap();
        until(5, "the rule disabled", || async { c.source().await.ok().filter(|s| s.contains("<td>false</td>")) })
            .await;
        c.find(Locator::Css(".toggle-rule")).await.unwrap().click().await.unwrap();
        until(5, "the rule enabled", || async { c.source().await.ok().filter(|s| s.contains("<td>true</td>")) }).await;
        shot(&c, "buses").await;
        c.find(Locator::Css("a.edit-rule")).await.unwrap().click().await.unwrap();
        let editor = c.wait().for_element(Locator::Css("#pattern")).await.unwrap();
        until(5, "the first check", || async { text(&c, "#pattern-ok").await }).await;
        editor.clear().await.unwrap();
        editor
            .send_keys(r#"{"source": ["cvm.cloud.tencent"], "detail": {"cpu": [{"numeric": [">", "x"]}]}}"#)
            .await
            .unwrap();
        let error = until(5, "the pattern's error", || async { text(&c, "#pattern-error").await }).await;
        assert!(error.starts_with("detail.cpu"), "the error names its path: {error}");
        shot(&c, "rule-pattern-error").await;
        // A valid pattern tested against a template.
        editor.clear().await.unwrap();
        editor.send_keys(r#"{"type": ["cvm:ErrorEvent:GuestReboot"]}"#).await.unwrap();
        until(5, "the pattern to be valid", || async { text(&c, "#pattern-ok").await }).await;
        c.find(Locator::Css("#template option[value='cvm:GuestReboot']")).await.unwrap().click().await.unwrap();
        let matched = until(5, "the template test", || async { text(&c, "#pattern-match").await }).await;
        assert!(
            matched.contains("cvm:GuestReboot") && matched.contains("matched") && !matched.contains("not"),
            "{matched}"
        );
        // Or against a pasted event.
        c.find(Locator::Css("#event"))
            .await
            .unwrap()
            .send_keys(r#"{"type": "cvm:ErrorEvent:GuestOom"}"#)
            .await
            .unwrap();
        until(5, "the pasted event's test", || async {
            text(&c, "#pattern-match").await.filter(|m| m.contains("not matched"))
        })
        .await;

        // Edit a flow: the draft differs from live until published; the next event uses it.
        c.goto(&format!("{url}/console/flows/eb-wecom")).await.unwrap();
        assert_eq!(text(&c, "#live-version").await.as_deref(), Some("v1"));
        let yaml = c.find(Locator::Css("#flow-yaml")).await.unwrap().prop("value").await.unwrap().unwrap_or_default();
        assert!(yaml.contains("收到告警信息"), "{yaml}");
        let edited = yaml.replace("收到告警信息", "收到告警信息 (console v2)");
        c.execute("document.getElementById('flow-yaml').value = arguments[0];", vec![json!(edited)]).await.unwrap();
        c.find(Locator::Css("#save-draft")).await.unwrap().click().await.unwrap();
        let diff = until(10, "the draft's diff", || async { text(&c, "#draft-diff").await }).await;
        assert!(diff.lines().any(|l| l.starts_with('+') && l.contains("console v2")), "{diff}");
        assert!(diff.lines().any(|l| l.starts_with('-') && l.contains("收到告警信息") && !l.contains("v2")), "{diff}");
        assert_eq!(text(&c, "#draft-version").await.as_deref(), Some("v2"));
        assert_eq!(text(&c, "#live-version").await.as_deref(), Some("v1"));
        shot(&c, "flow-draft").await;
        c.find(Locator::Css("#publish")).await.unwrap().click().await.unwrap();
        until(10, "v2 live", || async { (text(&c, "#live-version").await? == "v2").then_some(()) }).await;
        assert!(c.find(Locator::Css("#no-draft")).await.is_ok(), "no draft after publishing");
        shot(&c, "flow-published").await;
        // A dry run previews the message as the robot will show it, sending nothing.
        let sent_before = reqwest::get(format!("http://{robots}/_sim/messages")).await.unwrap().text().await.unwrap();
        c.find(Locator::Css("#dry-template option[value='cvm:GuestReboot']")).await.unwrap().click().await.unwrap();
        c.find(Locator::Css("#dry-run")).await.unwrap().click().await.unwrap();
        let outcome = until(10, "the dry run", || async { text(&c, "#dry-outcome").await }).await;
        assert_eq!(outcome, "done");
        let shown = text(&c, ".dry-preview .preview").await.unwrap_or_default();
        assert!(shown.contains("收到告警信息 (console v2)") && shown.contains("ins-"), "{shown}");
        shot(&c, "flow-dry-run").await;
        let sent_after = reqwest::get(format!("http://{robots}/_sim/messages")).await.unwrap().text().await.unwrap();
        assert_eq!(sent_before, sent_after, "a dry run sends nothing");

        let runs = send_guest_reboot(&c, &url).await;
        let wecom = &runs.iter().find(|(f, _)| f == "eb-wecom").unwrap().1;
        assert!(wecom.contains("收到告警信息 (console v2)"), "the next event used the published flow: {wecom}");

        // A connection's test message reaches the (simulated) robot; DingTalk's keyword is added.
        c.goto(&format!("{url}/console/connections")).await.unwrap();
        c.find(Locator::Css(".test-connection[data-connection='dingtalk-ops']")).await.unwrap().click().await.unwrap();
        let ok = until(10, "the test's answer", || async { text(&c, "#test-ok").await }).await;
        assert!(ok.contains("HTTP 200") && ok.contains("\"errcode\":0"), "{ok}");
        let sim = reqwest::get(format!("http://{robots}/_sim/messages")).await.unwrap().text().await.unwrap();
        assert!(sim.contains("Magpie 测试消息"), "{sim}");
        shot(&c, "connection-test").await;

        // Every page renders; the language switch turns it into Chinese.
        for page in ["events", "flows", "connections", "dead-letters", "alerts", "silences", "templates"] {
            c.goto(&format!("{url}/console/{page}")).await.unwrap();
            let src = c.source().await.unwrap();
            assert!(src.contains("<main>"), "{page}: {src}");
            assert!(!src.contains("693a91f6-7b2c"), "{page} shows no secret");
            shot(&c, page).await;
        }
        c.goto(&format!("{url}/console/events")).await.unwrap();
        c.find(Locator::Css("#lang-switch")).await.unwrap().click().await.unwrap();
        until(5, "the Chinese page", || async {
            c.source().await.ok().filter(|s| s.contains("lang=\"zh\"") && s.contains("事件规则"))
        })
        .await;
        shot(&c, "events-zh").await;

        // With --token, the console asks for it once.
        c.goto(&format!("{guarded_url}/console/buses")).await.unwrap();
        until(5, "the login page", || async { c.current_url().await.ok().filter(|u| u.path() == "/console/login") })
            .await;
        shot(&c, "login").await;
        c.find(Locator::Css("#token")).await.unwrap().send_keys("wrong").await.unwrap();
        c.find(Locator::Css("#login")).await.unwrap().click().await.unwrap();
        let refused = until(5, "the refusal", || async { text(&c, "#login-error").await }).await;
        assert!(!refused.is_empty());
        c.find(Locator::Css("#token")).await.unwrap().send_keys("console-secret").await.unwrap();
        c.find(Locator::Css("#login")).await.unwrap().click().await.unwrap();
        until(5, "the buses page after login", || async {
            c.current_url().await.ok().filter(|u| u.path() == "/console/buses")
        })
        .await;
        assert!(c.source().await.unwrap().contains("EBqw1") || c.source().await.unwrap().contains("default"));
        shot(&c, "after-login").await;
        // Logging out ends the session: the console asks again.
        c.find(Locator::Css("header form button")).await.unwrap().click().await.unwrap();
        until(5, "the login page after logout", || async {
            c.current_url().await.ok().filter(|u| u.path() == "/console/login")
        })
        .await;
        c.goto(&format!("{guarded_url}/console/buses")).await.unwrap();
        until(5, "the login page again", || async {
            c.current_url().await.ok().filter(|u| u.path() == "/console/login")
        })
        .await;
        c.close().await.unwrap();
    });
    drop(guarded);
}
